//! Command-line definitions. Doc comments on the fields are the `--help` text.
//!
//! Stage options can also come from `--config stage.toml` with the same keys (snake_case, e.g.
//! `lora_r = 16`); flags given on the command line win over the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use ladder_train::options::{DpoArgs, EvalArgs, GenerateArgs, LogprobsArgs, MergeArgs, PairsArgs, SftArgs};

/// Fine-tune small language models up a specialization ladder: SFT then DPO, on Burn.
///
/// Models are Hugging Face folders (config.json, model.safetensors, tokenizer.json) or
/// hf://ORG/NAME[@REVISION] from the Hugging Face cache (HF_HOME; HF_HUB_OFFLINE=1 stays
/// offline). LoRA adapters are read and written in PEFT's format.
///
/// Logs go to stderr; set RUST_LOG=debug for more.
///
/// Exit codes: 0 success; 1 error; 75 (EX_TEMPFAIL) a training run stopped by SIGTERM, SIGINT
/// or SIGUSR1 after saving a checkpoint at a step boundary, resumable with --resume OUT
/// (SIGUSR1 also runs `scontrol requeue $SLURM_JOB_ID` under Slurm, for
/// `sbatch --signal=USR1@120`); 130 a second Ctrl-C, which exits at once (the last complete
/// checkpoint stays intact).
#[derive(Debug, Parser)]
#[command(name = "ladder", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// CPU threads for the numerics [default: all cores].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Colour in logs: auto (only when stderr is a terminal and NO_COLOR is unset), always or
    /// never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether log lines carry ANSI colour codes: never into a file or a pipe unless asked.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new, randomly initialised model with its own tokenizer (Hugging Face format).
    ///
    /// Trains a byte-level BPE tokenizer (ChatML special tokens and chat template) on the text
    /// of --tokenizer-data, or copies --tokenizer; writes config.json, model.safetensors and
    /// the tokenizer files. Pre-train it with `ladder sft --full` on {"text"} rows.
    ///
    /// Example: ladder init --out models/tiny --tokenizer-data datasets/general/train.jsonl --hidden-size 256 --layers 4
    #[command(allow_negative_numbers = true)]
    Init(InitArgs),
    /// Supervised fine-tuning, full or LoRA.
    ///
    /// Data rows (JSONL or Parquet): {"prompt","completion"}, {"messages":[...]} rendered with
    /// the model's chat template, or {"text"}. The loss covers completion / assistant tokens
    /// only unless --train-on-prompt. Writes metrics.jsonl (one line per optimizer step) and,
    /// at the end, a PEFT adapter (LoRA) or a full Hugging Face checkpoint (--full) in --out.
    ///
    /// Example: ladder sft --model models/qwen --data train.jsonl --out runs/sft --lora-r 16
    #[command(allow_negative_numbers = true)]
    Sft(Box<SftArgs>),
    /// Direct preference optimisation on {"prompt","chosen","rejected"} rows, full or LoRA.
    ///
    /// Rows are strings, or the conversational form (prompt a message list, chosen/rejected
    /// assistant messages) rendered with the chat template. Chosen and rejected share one pass
    /// over the prompt. Losses and metrics match TRL's DPOTrainer (rewards/chosen,
    /// rewards/rejected, rewards/accuracies, rewards/margins, logps/*, logits/* in
    /// metrics.jsonl). Same training options as `ladder sft`.
    ///
    /// Example, the method's second half, continuing an SFT adapter:
    ///
    /// ladder dpo --model M --adapter runs/sft --data pairs.jsonl --out runs/dpo --reference frozen
    #[command(allow_negative_numbers = true)]
    Dpo(Box<DpoArgs>),
    /// Summed completion log-probabilities per row (TRL's tokenisation).
    ///
    /// Rows {"prompt","completion"} give {"index","logp","n_tokens"}; rows
    /// {"prompt","chosen","rejected"} give logp_chosen / logp_rejected and their token counts.
    Logprobs(LogprobsArgs),
    /// Fold a LoRA adapter into its base model and write a full checkpoint.
    Merge(MergeArgs),
    /// Preference pairs from a model's own degenerate outputs (the DPO data of the method).
    ///
    /// For each {"prompt","completion"} row, samples K generations; those the degeneration
    /// detector flags (no EOS and the last 15 characters repeated 4+ times, by default) become
    /// "rejected", the reference "chosen". Writes TRL-format rows with provenance ("source")
    /// and a summary (<stem>.summary.json). Deterministic for a --seed.
    ///
    /// Example: ladder pairs --model M --adapter runs/sft --data train.jsonl --out pairs.jsonl --samples 4 --max-new-tokens 512
    #[command(allow_negative_numbers = true)]
    Pairs(Box<PairsArgs>),
    /// Score predictions against references the way the structured-OCR benchmark does.
    ///
    /// Per row: the composite score (levenshtein_ratio + BLEU-4) / 2, CER, WER, chrF, whether
    /// the output degenerated (no EOS and its last 15 characters repeated 4+ times) and which
    /// rule fired; for JSON pages, whether the output parses with header/margin/footer/text and
    /// the score of its text field. Writes eval.json ({"rows", "aggregate"}) and prints a table.
    ///
    /// Example: ladder eval --predictions preds.jsonl --out eval.json --price-per-hour 2.5 --pages-per-s 1.8
    ///
    /// Example: ladder eval --model M --adapter runs/dpo --data test.jsonl --out runs/eval/eval.json --max-new-tokens 512
    #[command(allow_negative_numbers = true)]
    Eval(Box<EvalArgs>),
    /// Check a recipe without training: schema and unknown keys (with the closest valid key),
    /// types, files, stage references and cycles, LoRA/full consistency between chained stages,
    /// the DPO reference after an adapter, dataset columns, tokenizer/model compatibility.
    ///
    /// Example: ladder validate recipes/two-level.toml
    Validate(ValidateArgs),
    /// Print a recipe's stage graph per start, and what `ladder run` would run or skip.
    Plan(PlanArgs),
    /// Run a recipe: every start × stage into <output>/<recipe>/<start>/<stage>/ with a
    /// manifest.json. Up-to-date stages (same fingerprint of config and inputs) are skipped and
    /// interrupted ones resume from their latest checkpoint.
    ///
    /// Example: ladder run recipes/two-level.toml
    Run(RunArgs),
    /// Report each stage of a run folder from its manifests (and squeue/sacct for Slurm runs).
    Status(StatusArgs),
    /// Compare the starts of one or more runs side by side, with the spread over seeds; writes
    /// report.html (tables and charts), report.md, report.json and chart.svg, prints the table
    /// and the report's path.
    ///
    /// Example: ladder compare runs/demo runs/demo-lora --out runs/comparison
    Compare(CompareArgs),
    /// Training speed and peak memory of the real training loop on a standard model shape.
    ///
    /// Set up as shared/bench/torch_anchor.py sets up PyTorch + PEFT (random weights and tokens,
    /// batch 8 × 256, loss on the second half, LoRA r 16 on all linear layers, DPO on 4 pairs
    /// with the first half as prompt, 2 warm-up and 5 timed steps), so the two tokens/s compare
    /// directly. Prints one JSON line.
    ///
    /// Example: ladder bench --mode lora --threads 2
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Generate continuations of prompts, in batches, with a KV cache.
    ///
    /// Rows (JSONL): {"prompt": "text"}, {"prompt": [messages]} (rendered with the chat
    /// template and its generation prompt) or {"messages": [...]} (all but a final assistant
    /// turn). Other columns, e.g. "completion" or "reference", are copied to the output, which
    /// adds "generated", "n_tokens" and "finish_reason" (eos, stop or length). Greedy unless
    /// --temperature is above 0.
    ///
    /// Example: ladder generate --model models/qwen --adapter runs/sft --data prompts.jsonl --out generations.jsonl --max-new-tokens 256
    #[command(allow_negative_numbers = true)]
    Generate(GenerateArgs),
}

/// `ladder validate` options.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The recipe TOML file.
    pub recipe: PathBuf,
}

/// `ladder plan` options.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The recipe TOML file.
    pub recipe: PathBuf,
    /// Output root instead of the recipe's `output`.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// `ladder run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe TOML file.
    pub recipe: PathBuf,
    /// Where the stages run.
    #[arg(long, value_enum, value_name = "KIND", default_value = "local")]
    pub executor: ladder_recipe::Executor,
    /// Re-run this stage (STAGE or START/STAGE) and its descendants even if up to date; repeatable.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Run only this stage (STAGE or START/STAGE) and its descendants; repeatable.
    #[arg(long, value_name = "STAGE")]
    pub from: Vec<String>,
    /// Run only this stage (STAGE or START/STAGE); its parents must be complete; repeatable.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Output root instead of the recipe's `output`.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Run every start × stage once per seed, seed N into <output>/<recipe>/seed-N/ (instead
    /// of the recipe's `seeds`).
    #[arg(long, value_name = "N,N,..", value_delimiter = ',', num_args = 1..)]
    pub seeds: Option<Vec<u64>>,
}

/// `ladder compare` options.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run folders (<output>/<recipe name>), e.g. two recipes over the same starts.
    #[arg(required = true, num_args = 1..)]
    pub run_dirs: Vec<PathBuf>,
    /// Where the report goes [default: the first run folder].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `ladder status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A run folder: <output>/<recipe name>.
    pub run_dir: PathBuf,
}

/// `ladder init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Output folder for the new model.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Train the tokenizer on the text of these .jsonl/.parquet files (repeat for several).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["tokenizer", "text_model"], help_heading = "Tokenizer")]
    pub tokenizer_data: Vec<PathBuf>,
    /// Vocabulary size of the trained tokenizer (the model's vocab_size follows it).
    #[arg(long, default_value_t = 4096, help_heading = "Tokenizer")]
    pub vocab_size: usize,
    /// Copy the tokenizer of this model folder instead of training one.
    #[arg(long, value_name = "DIR", conflicts_with = "tokenizer_data", help_heading = "Tokenizer")]
    pub tokenizer: Option<PathBuf>,
    /// qwen2 (q/k/v bias), llama, or qwen2_5_vl (Qwen2.5-VL: a Qwen2 language model of the
    /// shape below plus a vision tower of the --vision-* shape, Qwen2-VL's vision tokens added
    /// to the tokenizer and a preprocessor_config.json).
    #[arg(long, default_value = "qwen2", help_heading = "Architecture")]
    pub arch: String,
    #[arg(long, default_value_t = 256, help_heading = "Architecture")]
    pub hidden_size: usize,
    /// MLP width [default: 8/3 × hidden, rounded up to a multiple of 64].
    #[arg(long, help_heading = "Architecture")]
    pub intermediate_size: Option<usize>,
    #[arg(long, default_value_t = 4, help_heading = "Architecture")]
    pub layers: usize,
    #[arg(long, default_value_t = 4, help_heading = "Architecture")]
    pub heads: usize,
    /// Key/value heads (grouped-query attention) [default: --heads].
    #[arg(long, help_heading = "Architecture")]
    pub kv_heads: Option<usize>,
    #[arg(long, default_value_t = 2048, help_heading = "Architecture")]
    pub max_position_embeddings: usize,
    #[arg(long, default_value_t = 10000.0, help_heading = "Architecture")]
    pub rope_theta: f64,
    /// Give the model its own output head instead of tying it to the embeddings.
    #[arg(long, help_heading = "Architecture")]
    pub untie_embeddings: bool,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Standard deviation of the normal initialisation.
    #[arg(long, default_value_t = 0.02)]
    pub init_std: f64,
    /// Replace a model already in --out.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub vision: VisionInitArgs,
}

/// The vision tower and image processor of `ladder init --arch qwen2_5_vl`.
#[derive(Debug, Args)]
pub struct VisionInitArgs {
    /// Width of the vision blocks [default: 64].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "N")]
    pub vision_hidden_size: Option<usize>,
    /// Vision blocks (the last attends to the whole image, the others within windows)
    /// [default: 2].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "N")]
    pub vision_layers: Option<usize>,
    /// Attention heads of the vision blocks [default: 2].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "N")]
    pub vision_heads: Option<usize>,
    /// Vision MLP width [default: 2 × --vision-hidden-size].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "N")]
    pub vision_intermediate_size: Option<usize>,
    /// Patch edge in pixels; one image token covers (2 × patch)² pixels [default: 14].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "PIXELS")]
    pub patch_size: Option<usize>,
    /// Window-attention edge in pixels [default: 8 × --patch-size, Qwen2.5-VL's 112 for 14].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "PIXELS")]
    pub window_size: Option<usize>,
    /// Smallest resized image area of the image processor [default: 4 tokens' worth, 3136
    /// for patch 14].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "PIXELS")]
    pub min_pixels: Option<u64>,
    /// Take the language model (its shape, weights and tokenizer) from this Qwen2 model folder
    /// and add a random vision tower: a VLM whose language model is already trained.
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Vision (--arch qwen2_5_vl)",
        conflicts_with_all = ["tokenizer_data", "tokenizer", "vocab_size", "hidden_size", "intermediate_size", "layers", "heads", "kv_heads", "max_position_embeddings", "rope_theta", "untie_embeddings"]
    )]
    pub text_model: Option<PathBuf>,
    /// Largest resized image area: larger images are scaled down, so at most
    /// max_pixels / (2 × patch)² image tokens per image [default: 256 tokens' worth].
    #[arg(long, help_heading = "Vision (--arch qwen2_5_vl)", value_name = "PIXELS")]
    pub max_pixels: Option<u64>,
}

impl VisionInitArgs {
    /// The flags given, by name, for the error when they come without `--arch qwen2_5_vl`.
    pub fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--vision-hidden-size", self.vision_hidden_size.is_some()),
            ("--vision-layers", self.vision_layers.is_some()),
            ("--vision-heads", self.vision_heads.is_some()),
            ("--vision-intermediate-size", self.vision_intermediate_size.is_some()),
            ("--patch-size", self.patch_size.is_some()),
            ("--window-size", self.window_size.is_some()),
            ("--min-pixels", self.min_pixels.is_some()),
            ("--max-pixels", self.max_pixels.is_some()),
            ("--text-model", self.text_model.is_some()),
        ];
        flags.into_iter().filter(|f| f.1).map(|f| f.0).collect()
    }
}

/// `ladder bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to train.
    #[arg(long, value_enum, default_value = "lora")]
    pub mode: ladder_train::bench::BenchMode,
    /// A model shape, as `shared/bench/torch_anchor.py --shape` names them: bench-30m (Qwen2,
    /// 8 × 512, vocab 8192), smollm2-135m (Llama, 30 × 576, vocab 49152), qwen2.5-0.5b (Qwen2,
    /// 24 × 896, vocab 151936), or tiny.
    #[arg(long, default_value = "bench-30m")]
    pub shape: String,
    /// Tokens per row.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Rows per step (DPO: half as many pairs).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Timed optimizer steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// cpu, cuda, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: ladder_train::device::DeviceSpec,
    /// Compute dtype, as `ladder sft --precision` [default: bf16 on cuda, f32 elsewhere].
    #[arg(long, value_enum, value_name = "DTYPE")]
    pub precision: Option<ladder_train::precision::Precision>,
    /// Gradient checkpointing, as `ladder sft --gradient-checkpointing` [default: as training
    /// does: on for --mode full, off for LoRA].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub gradient_checkpointing: Option<bool>,
    /// The optimizer, as `ladder sft --optimizer` (adamw-8bit: 8-bit moments, a quarter of the
    /// optimizer's memory; the anchor runs torch.optim.AdamW).
    #[arg(long, value_enum, value_name = "KIND", default_value = "adamw")]
    pub optimizer: ladder_train::OptimizerKind,
    /// Also print where a step's time goes: each fused CPU kernel, each matrix product by
    /// shape with its GFLOP/s in the step and on its own, page faults, and the rest.
    #[arg(long)]
    pub profile: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_options() {
        let cli = Cli::try_parse_from(["ladder", "sft", "--model", "m", "--data", "a.jsonl", "--data", "b.parquet", "--full", "--no-shuffle"]).unwrap();
        let Command::Sft(args) = cli.command else { panic!("sft") };
        assert_eq!(args.train.full, Some(true));
        assert_eq!(args.train.no_shuffle, Some(true));
        assert_eq!(args.train.data.unwrap().len(), 2);
        assert_eq!(args.train.lora_r, None);
        let cli = Cli::try_parse_from(["ladder", "dpo", "--model", "m", "--data", "p.jsonl", "--beta", "0.2", "--loss", "ipo"]).unwrap();
        let Command::Dpo(args) = cli.command else { panic!("dpo") };
        assert_eq!((args.beta, args.loss), (Some(0.2), Some(ladder_train::dpo::DpoLoss::Ipo)));
        assert!(Cli::try_parse_from(["ladder", "dpo", "--loss", "ipoo"]).is_err(), "enums are checked by clap");
    }

    /// Negative numbers reach the range checks, which name the flag (clap took `-1` for a flag).
    #[test]
    fn negative_numbers_are_values() {
        let cli = Cli::try_parse_from(["ladder", "sft", "--model", "m", "--data", "a.jsonl", "--out", "o", "--lr", "-1"]).unwrap();
        let Command::Sft(args) = cli.command else { panic!("sft") };
        let err = ladder_train::options::resolve_sft(*args).unwrap_err().to_string();
        assert_eq!(err, "--lr: must be a non-negative number (0 is a sanity check: the starting model's numbers), got -1");
    }

    #[test]
    fn generate_flags_parse() {
        let cli = Cli::try_parse_from(["ladder", "generate", "--model", "m", "--data", "p.jsonl", "--out", "o.jsonl", "--stop", "###", "--stop", "END", "--top-k", "5"]).unwrap();
        let Command::Generate(args) = cli.command else { panic!("generate") };
        let job = ladder_train::options::resolve_generate(args).unwrap();
        assert_eq!(job.config.stop, vec!["###", "END"]);
        assert_eq!((job.config.top_k, job.config.max_new_tokens, job.config.temperature, job.batch_size), (5, 256, 0.0, 8));
        let cli = Cli::try_parse_from(["ladder", "pairs", "--model", "m", "--data", "p.jsonl", "--out", "o.jsonl"]).unwrap();
        let Command::Pairs(args) = cli.command else { panic!("pairs") };
        let job = ladder_train::options::resolve_pairs(*args).unwrap();
        assert_eq!((job.samples, job.generate.temperature, job.generate.max_new_tokens), (4, 1.0, 512));
        assert!(Cli::try_parse_from(["ladder", "eval", "--out", "e.json"]).is_err(), "eval needs --predictions or --model");
    }

    /// Every stage kind: the same settings given as flags and as a recipe stage resolve to the
    /// same job (the recipe fills in the model, adapter and output folder; the flags name them).
    #[test]
    fn flags_and_recipe_stages_resolve_alike() {
        use ladder_train::options;
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let model = format!("{fixtures}/qwen2-tiny");
        let (sft_data, dpo_data, refs) = (format!("{fixtures}/data/sft.jsonl"), format!("{fixtures}/data/dpo.jsonl"), format!("{fixtures}/data/references.jsonl"));
        let recipe = format!(
            "name = \"eq\"\n[[start]]\nname = \"a\"\nmodel = \"{model}\"\n\n\
             [[stage]]\nname = \"sft\"\nkind = \"sft\"\nfrom = \"start\"\ndata = [\"{sft_data}\"]\nlr = 1e-3\nlora_r = 4\nlora_alpha = 8\nbatch_size = 2\nmax_steps = 3\nseed = 7\ndevice = \"cpu\"\nlr_scheduler = \"linear\"\non_nonfinite = \"skip\"\nmax_grad_norm = 0.5\noptimizer = \"adamw-8bit\"\n\n\
             [[stage]]\nname = \"dpo\"\nkind = \"dpo\"\nfrom = \"sft\"\npairs = \"{dpo_data}\"\nbeta = 0.2\nloss = \"ipo\"\nreference = \"frozen\"\nseed = 7\nmax_steps = 2\n\n\
             [[stage]]\nname = \"gen\"\nkind = \"pairs\"\nfrom = \"sft\"\ndata = [\"{refs}\"]\nsamples = 2\nmax_new_tokens = 16\ntemperature = 0.7\ntop_k = 5\nseed = 7\nsynthetic_fallback = true\nmin_score = 0.3\nsuffix_chars = 10\n\n\
             [[stage]]\nname = \"ev\"\nkind = \"eval\"\nfrom = \"sft\"\ndata = [\"{refs}\"]\nmax_new_tokens = 32\nprice_per_hour = 2.5\nseed = 7\nbatch_size = 4\n\n\
             [[stage]]\nname = \"merged\"\nkind = \"merge\"\nfrom = \"sft\"\n"
        );
        let out = tempfile::tempdir().unwrap();
        let src = ladder_recipe::parse(std::path::Path::new("eq.toml"), &recipe).unwrap();
        let plan = ladder_recipe::plan(&src, Some(out.path())).unwrap();
        let stages = &plan.starts[0].stages;
        let dir = |stage: &str| plan.run_dir.join("a").join(stage).display().to_string();
        // The CLI reads a continued adapter's shape from its folder: the recipe's sft adapter.
        let lora = ladder_model::LoraSettings { r: 4, alpha: 8.0, dropout: 0.0, targets: ladder_model::peft::ALL_LINEAR.map(String::from).to_vec(), rslora: false };
        std::fs::create_dir_all(dir("sft")).unwrap();
        let config = ladder_model::AdapterConfig::new(&lora, &model);
        std::fs::write(format!("{}/adapter_config.json", dir("sft")), serde_json::to_string(&config).unwrap()).unwrap();
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command;
        let cache = plan.run_dir.join("reference-cache").display().to_string();
        let from_cli = |stage: &str| -> serde_json::Value {
            let adapter = dir("sft");
            let job = match stage {
                "sft" => parse(&["ladder", "sft", "--model", &model, "--data", &sft_data, "--out", &dir("sft"), "--lr", "1e-3", "--lora-r", "4", "--lora-alpha", "8", "--batch-size", "2", "--max-steps", "3", "--seed", "7", "--device", "cpu", "--lr-scheduler", "linear", "--on-nonfinite", "skip", "--max-grad-norm", "0.5", "--optimizer", "adamw-8bit"]),
                "dpo" => parse(&["ladder", "dpo", "--model", &model, "--adapter", &adapter, "--data", &dpo_data, "--out", &dir("dpo"), "--beta", "0.2", "--loss", "ipo", "--reference", "frozen", "--seed", "7", "--max-steps", "2", "--reference-cache", &cache]),
                "gen" => parse(&["ladder", "pairs", "--model", &model, "--adapter", &adapter, "--data", &refs, "--out", &format!("{}/pairs.jsonl", dir("gen")), "--samples", "2", "--max-new-tokens", "16", "--temperature", "0.7", "--top-k", "5", "--seed", "7", "--synthetic-fallback", "--min-score", "0.3", "--suffix-chars", "10"]),
                "ev" => parse(&["ladder", "eval", "--model", &model, "--adapter", &adapter, "--data", &refs, "--out", &format!("{}/eval.json", dir("ev")), "--max-new-tokens", "32", "--price-per-hour", "2.5", "--seed", "7", "--batch-size", "4"]),
                "merged" => parse(&["ladder", "merge", "--model", &model, "--adapter", &adapter, "--out", &dir("merged")]),
                _ => unreachable!(),
            };
            match job {
                Command::Sft(a) => serde_json::to_value(options::resolve_sft(*a).unwrap()),
                Command::Dpo(a) => serde_json::to_value(options::resolve_dpo(*a).unwrap()),
                Command::Pairs(a) => serde_json::to_value(options::resolve_pairs(*a).unwrap()),
                Command::Eval(a) => serde_json::to_value(options::resolve_eval(*a).unwrap()),
                Command::Merge(a) => serde_json::to_value(options::resolve_merge(a).unwrap()),
                _ => unreachable!(),
            }
            .unwrap()
        };
        let kinds: Vec<&str> = stages.iter().map(|s| s.kind().as_str()).collect();
        assert_eq!(kinds, ["sft", "dpo", "pairs", "eval", "merge"], "every stage kind is covered");
        for st in stages {
            assert_eq!(from_cli(&st.name), st.work.config(), "stage {}: the flags and the recipe resolve differently", st.name);
        }
    }
}
