//! Command-line definitions. Doc comments on the fields are the `--help` text.
//!
//! Stage options can also come from `--config stage.toml` with the same keys (snake_case, e.g.
//! `lora_r = 16`); flags given on the command line win over the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use ladder_train::options::{DpoArgs, SftArgs};

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
    Init(InitArgs),
    /// Supervised fine-tuning, full or LoRA.
    ///
    /// Data rows (JSONL or Parquet): {"prompt","completion"}, {"messages":[...]} rendered with
    /// the model's chat template, or {"text"}. The loss covers completion / assistant tokens
    /// only unless --train-on-prompt. Writes metrics.jsonl (one line per optimizer step) and,
    /// at the end, a PEFT adapter (LoRA) or a full Hugging Face checkpoint (--full) in --out.
    ///
    /// Example: ladder sft --model models/qwen --data train.jsonl --out runs/sft --lora-r 16
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
    /// local (in this process, one stage at a time) or slurm (one sbatch job per stage, then exit).
    #[arg(long, value_name = "KIND", default_value = "local")]
    pub executor: String,
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

/// `ladder logprobs` options.
#[derive(Debug, Args)]
pub struct LogprobsArgs {
    /// Model folder or hf://ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: String,
    /// A PEFT LoRA adapter to apply.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Rows to score (.jsonl or .parquet).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output JSONL, one record per row.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// cpu, cuda, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `ladder generate` options.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model folder or hf://ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: String,
    /// A PEFT LoRA adapter to apply.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Prompts (.jsonl).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output JSONL, one row per prompt, in input order (written only when every row is done).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// cpu, cuda, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Decoding options shared by `generate`, `pairs` and `eval --model`.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Most new tokens per row, the EOS token included.
    #[arg(long, value_name = "N", default_value_t = 128, help_heading = "Decoding")]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy search [default: 0, or 1 for `ladder pairs`].
    #[arg(long, value_name = "T", help_heading = "Decoding")]
    pub temperature: Option<f64>,
    /// Sample from the K most likely tokens only; 0 disables.
    #[arg(long, value_name = "K", default_value_t = 0, help_heading = "Decoding")]
    pub top_k: usize,
    /// Sample from the smallest set of tokens whose probability reaches P; 1 disables.
    #[arg(long, value_name = "P", default_value_t = 1.0, help_heading = "Decoding")]
    pub top_p: f64,
    /// Divide positive / multiply negative logits of tokens already seen (prompt included) by
    /// R, as transformers' repetition_penalty; 1 disables.
    #[arg(long, value_name = "R", default_value_t = 1.0, help_heading = "Decoding")]
    pub repetition_penalty: f64,
    /// Stop a row when its text contains STR (cut before it); repeat for several.
    #[arg(long = "stop", value_name = "STR", help_heading = "Decoding")]
    pub stop: Vec<String>,
    /// Sampling seed; each row gets its own stream, so batching does not change samples.
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Decoding")]
    pub seed: u64,
    /// Prompts decoded together.
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Decoding")]
    pub batch_size: usize,
    /// Recompute the whole sequence every step instead of using the KV cache (slow; for
    /// checks and benchmarks).
    #[arg(long, help_heading = "Decoding")]
    pub no_cache: bool,
}

impl SamplingArgs {
    /// The library's decoding options, with this command's default temperature.
    pub fn config(&self, default_temperature: f64) -> ladder_model::GenerateConfig {
        ladder_model::GenerateConfig {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature.unwrap_or(default_temperature),
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            stop: self.stop.clone(),
            seed: self.seed,
            use_cache: !self.no_cache,
        }
    }
}

/// `ladder pairs` options.
#[derive(Debug, Args)]
pub struct PairsArgs {
    /// The model whose outputs become the rejected side (usually the SFT model).
    #[arg(long)]
    pub model: String,
    /// Its PEFT LoRA adapter.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Rows {"prompt","completion"}: the completion is the clean reference, the chosen side.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output JSONL of {"prompt","chosen","rejected","source"}; the summary goes to
    /// <stem>.summary.json beside it.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Samples drawn per prompt (K).
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub samples: usize,
    /// Also reject non-degenerate samples whose composite score against the reference is
    /// below X.
    #[arg(long, value_name = "X")]
    pub min_score: Option<f64>,
    /// For prompts with no rejected sample, build a repetition loop from the reference.
    #[arg(long)]
    pub synthetic_fallback: bool,
    /// At most N pairs per prompt; 0 keeps all distinct rejected samples.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_pairs_per_prompt: usize,
    /// Degeneration rule: the last C characters...
    #[arg(long, value_name = "C", default_value_t = 15, help_heading = "Detector")]
    pub suffix_chars: usize,
    /// ...occur at least N times in an output that ended without EOS.
    #[arg(long, value_name = "N", default_value_t = 4, help_heading = "Detector")]
    pub min_suffix_count: usize,
    /// cpu, cuda, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `ladder merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Base model folder or hf://ORG/NAME[@REVISION].
    #[arg(long)]
    pub model: String,
    /// The PEFT LoRA adapter to fold in.
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// Output folder for the merged checkpoint.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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
    /// full, lora or dpo.
    #[arg(long, default_value = "lora")]
    pub mode: String,
    /// bench-30m (the PyTorch anchor's shape), tiny, or qwen2-0.5b.
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
    pub device: String,
    /// Measure with gradient checkpointing, as `ladder sft --gradient-checkpointing`.
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

/// `ladder eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Score this file of rows {"prediction","reference"} with an optional "finish_reason"
    /// (eos|stop|length), from any system (an API, vLLM, `ladder generate`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "data"], required_unless_present = "model")]
    pub predictions: Option<PathBuf>,
    /// Or generate with this model (greedy unless --temperature), timed, and score that.
    #[arg(long, requires = "data")]
    pub model: Option<String>,
    /// Its PEFT LoRA adapter.
    #[arg(long, value_name = "DIR", requires = "model")]
    pub adapter: Option<PathBuf>,
    /// Test rows {"prompt","completion"} for --model: the completion is the reference.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub data: Option<PathBuf>,
    /// cpu, cuda, cuda:N or wgpu (with --model).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Where to write eval.json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Judge rows without a finish_reason as this one (eos, stop or length) instead of leaving
    /// them out of the degeneration rate.
    #[arg(long, value_name = "REASON")]
    pub assume_finish_reason: Option<String>,
    /// Measured throughput of the system that produced --predictions, in pages per second
    /// (with --model it is measured).
    #[arg(long, value_name = "X", conflicts_with = "model")]
    pub pages_per_s: Option<f64>,
    /// Hourly price of the hardware: gives the cost per million pages.
    #[arg(long, value_name = "USD")]
    pub price_per_hour: Option<f64>,
    /// Also print one line per row.
    #[arg(long)]
    pub rows: bool,
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
        assert_eq!((args.beta, args.loss.as_deref()), (Some(0.2), Some("ipo")));
    }

    #[test]
    fn generate_flags_parse() {
        let cli = Cli::try_parse_from(["ladder", "generate", "--model", "m", "--data", "p.jsonl", "--out", "o.jsonl", "--stop", "###", "--stop", "END", "--top-k", "5"]).unwrap();
        let Command::Generate(args) = cli.command else { panic!("generate") };
        assert_eq!(args.sampling.stop, vec!["###", "END"]);
        let c = args.sampling.config(0.0);
        assert_eq!((c.top_k, c.max_new_tokens, c.temperature, args.sampling.batch_size), (5, 128, 0.0, 8));
        let cli = Cli::try_parse_from(["ladder", "pairs", "--model", "m", "--data", "p.jsonl", "--out", "o.jsonl"]).unwrap();
        let Command::Pairs(args) = cli.command else { panic!("pairs") };
        assert_eq!((args.samples, args.sampling.config(1.0).temperature), (4, 1.0));
        assert!(Cli::try_parse_from(["ladder", "eval", "--out", "e.json"]).is_err(), "eval needs --predictions or --model");
    }
}
