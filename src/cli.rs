//! Command-line definitions. Doc comments on the fields are the `--help` text.
//!
//! Stage options can also come from `--config stage.toml` with the same keys (snake_case, e.g.
//! `lora_r = 16`); flags given on the command line win over the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    ///   ladder dpo --model M --adapter runs/sft --data pairs.jsonl --out runs/dpo --reference frozen
    Dpo(Box<DpoArgs>),
    /// Summed completion log-probabilities per row (TRL's tokenisation).
    ///
    /// Rows {"prompt","completion"} give {"index","logp","n_tokens"}; rows
    /// {"prompt","chosen","rejected"} give logp_chosen / logp_rejected and their token counts.
    Logprobs(LogprobsArgs),
    /// Fold a LoRA adapter into its base model and write a full checkpoint.
    Merge(MergeArgs),
    /// Score predictions against references the way the structured-OCR benchmark does.
    ///
    /// Per row: the composite score (levenshtein_ratio + BLEU-4) / 2, CER, WER, chrF, whether
    /// the output degenerated (no EOS and its last 15 characters repeated 4+ times) and which
    /// rule fired; for JSON pages, whether the output parses with header/margin/footer/text and
    /// the score of its text field. Writes eval.json ({"rows", "aggregate"}) and prints a table.
    ///
    /// Example: ladder eval --predictions preds.jsonl --out eval.json --price-per-hour 2.5 --pages-per-s 1.8
    Eval(EvalArgs),
}

/// Options every training stage shares (`ladder sft`, `ladder dpo`). Every option is also a key
/// of `--config`; unknown keys are rejected by `stage_args` (serde's `deny_unknown_fields` does
/// not work with the flattened stage structs).
#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct TrainArgs {
    /// A TOML file with any of these options (same names, snake_case); flags win over it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Base model: a Hugging Face folder or hf://ORG/NAME[@REVISION].
    #[arg(long, value_name = "MODEL", help_heading = "Inputs")]
    pub model: Option<String>,
    /// Continue training this PEFT LoRA adapter instead of creating a new one.
    #[arg(long, value_name = "DIR", help_heading = "Inputs")]
    pub adapter: Option<PathBuf>,
    /// Training data: .jsonl or .parquet files (repeat the flag for several).
    #[arg(long, value_name = "FILE", help_heading = "Inputs")]
    pub data: Option<Vec<PathBuf>>,
    /// Output folder (adapter or full checkpoint, metrics.jsonl, checkpoints/).
    #[arg(long, value_name = "DIR", help_heading = "Inputs")]
    pub out: Option<PathBuf>,
    /// Replace a finished model already in --out.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Inputs")]
    pub overwrite: Option<bool>,
    /// cpu, cuda, cuda:N or wgpu (GPU backends need a build with --features cuda / wgpu).
    #[arg(long, value_name = "DEVICE", help_heading = "Inputs")]
    pub device: Option<String>,

    /// Full fine-tuning: every weight trains (default: LoRA).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Method")]
    pub full: Option<bool>,
    /// LoRA rank [default: 16].
    #[arg(long, value_name = "R", help_heading = "Method")]
    pub lora_r: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha/r [default: 2·r].
    #[arg(long, value_name = "ALPHA", help_heading = "Method")]
    pub lora_alpha: Option<f64>,
    /// Dropout on the LoRA input [default: 0.0].
    #[arg(long, value_name = "P", help_heading = "Method")]
    pub lora_dropout: Option<f64>,
    /// Layers that get adapters: comma-separated q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,
    /// down_proj, or all-linear [default: all-linear].
    #[arg(long, value_name = "LIST", help_heading = "Method")]
    pub lora_targets: Option<String>,
    /// Rank-stabilised LoRA: scale by alpha/√r.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Method")]
    pub rslora: Option<bool>,

    /// Truncate examples to this many tokens (the count truncated is reported).
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub max_seq_len: Option<usize>,
    /// Skip malformed rows (counted and reported) instead of stopping at the first one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub skip_bad_rows: Option<bool>,

    /// Peak learning rate [default: 2e-4 for LoRA, 2e-5 for --full].
    #[arg(long, value_name = "LR", help_heading = "Optimisation")]
    pub lr: Option<f64>,
    /// Learning-rate decay after warmup: cosine, linear or constant [default: cosine].
    #[arg(long, value_name = "KIND", help_heading = "Optimisation")]
    pub lr_scheduler: Option<String>,
    /// Linear warmup steps from 0 to --lr [default: 0].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub warmup_steps: Option<usize>,
    /// Examples per micro-batch [default: 8].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step [default: 1].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub grad_accum: Option<usize>,
    /// Passes over the data [default: 1].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub max_steps: Option<usize>,
    /// AdamW decoupled weight decay; biases and norm weights are exempt [default: 0.0].
    #[arg(long, value_name = "WD", help_heading = "Optimisation")]
    pub weight_decay: Option<f64>,
    /// AdamW beta1 [default: 0.9].
    #[arg(long, value_name = "B1", help_heading = "Optimisation")]
    pub adam_beta1: Option<f64>,
    /// AdamW beta2 [default: 0.999].
    #[arg(long, value_name = "B2", help_heading = "Optimisation")]
    pub adam_beta2: Option<f64>,
    /// AdamW epsilon [default: 1e-8].
    #[arg(long, value_name = "EPS", help_heading = "Optimisation")]
    pub adam_eps: Option<f64>,
    /// Clip the global gradient norm to this value; 0 disables [default: 1.0].
    #[arg(long, value_name = "NORM", help_heading = "Optimisation")]
    pub max_grad_norm: Option<f64>,
    /// Random seed (adapter init, shuffling, dropout) [default: 42].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub seed: Option<u64>,
    /// Shuffle the data each epoch (seeded) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Optimisation")]
    pub shuffle: Option<bool>,
    /// Keep file order (same as --shuffle false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Optimisation")]
    pub no_shuffle: Option<bool>,

    /// Save a checkpoint every N optimizer steps under --out/checkpoints/step-N.
    #[arg(long, value_name = "N", help_heading = "Checkpoints")]
    pub save_every: Option<usize>,
    /// Keep only the newest N checkpoints (older ones are deleted after each save) [default:
    /// keep all].
    #[arg(long, value_name = "N", help_heading = "Checkpoints")]
    pub keep_last: Option<usize>,
    /// Resume from a checkpoint folder, or a run folder: its newest checkpoint that passes its
    /// sha256 checks (corrupt or incomplete ones are reported and passed over). The resumed
    /// run repeats the uninterrupted one exactly: same data order, losses and weights.
    #[arg(long, value_name = "DIR", help_heading = "Checkpoints")]
    pub resume: Option<PathBuf>,

    /// What a non-finite (NaN/inf) loss or gradient does: stop (naming the step and its rows)
    /// or skip (drop that step's update, log it) [default: stop].
    #[arg(long, value_name = "POLICY", help_heading = "Reliability")]
    pub on_nonfinite: Option<String>,
    /// With --on-nonfinite skip: stop once more than N steps were skipped [default: 10].
    #[arg(long, value_name = "N", help_heading = "Reliability")]
    pub max_skipped_steps: Option<usize>,
}

/// `ladder sft` options.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct SftArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// Also train on prompt tokens (default: completion / assistant tokens only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub train_on_prompt: Option<bool>,
    /// Pack short examples together into sequences of --max-seq-len tokens (attention stays
    /// within each example).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub packing: Option<bool>,
}

/// `ladder dpo` options: the training options of `ladder sft` plus the preference loss and the
/// reference model.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct DpoArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// Strength of the KL regularisation toward the reference (TRL's beta) [default: 0.1].
    #[arg(long, value_name = "BETA", help_heading = "Preference")]
    pub beta: Option<f64>,
    /// sigmoid (DPO), ipo (length-normalised, squared), hinge (SLiC) or robust (noise-robust
    /// DPO, with --label-smoothing) [default: sigmoid].
    #[arg(long, value_name = "LOSS", help_heading = "Preference")]
    pub loss: Option<String>,
    /// Assumed share of flipped labels ε for sigmoid (cDPO) and robust [default: 0.0].
    #[arg(long, value_name = "EPS", help_heading = "Preference")]
    pub label_smoothing: Option<f64>,
    /// Add α × NLL of the chosen completion (RPO; TRL's loss_type ["sigmoid", "sft"]) [default: 0].
    #[arg(long, value_name = "ALPHA", help_heading = "Preference")]
    pub sft_weight: Option<f64>,
    /// The reference policy: adapter-off (the base under a new LoRA adapter, no second copy),
    /// frozen (a frozen copy of the starting model: base + --adapter when continuing one), or
    /// precomputed (reference log-probs computed once before training and cached on disk)
    /// [default: adapter-off for a new adapter, precomputed otherwise].
    #[arg(long, value_name = "KIND", help_heading = "Preference")]
    pub reference: Option<String>,
    /// Folder of the precomputed-reference cache [default: $LADDER_CACHE_DIR, else
    /// $XDG_CACHE_HOME/ladder, else ~/.cache/ladder].
    #[arg(long, value_name = "DIR", help_heading = "Preference")]
    pub reference_cache: Option<PathBuf>,
    /// Longest prompt in tokens [default: --max-seq-len / 2 when --max-seq-len is set]. Longer
    /// prompts are skipped and counted, or cut from the left with --truncate-prompts.
    #[arg(long, value_name = "N", help_heading = "Preference")]
    pub max_prompt_len: Option<usize>,
    /// Keep the last --max-prompt-len tokens of long prompts instead of skipping their pairs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Preference")]
    pub truncate_prompts: Option<bool>,
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

/// `ladder eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Rows {"prediction","reference"} with an optional "finish_reason" (eos|stop|length), from
    /// any system (an API, vLLM, `ladder generate`).
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// Where to write eval.json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Judge rows without a finish_reason as this one (eos, stop or length) instead of leaving
    /// them out of the degeneration rate.
    #[arg(long, value_name = "REASON")]
    pub assume_finish_reason: Option<String>,
    /// Measured throughput of the system that produced the predictions, in pages per second.
    #[arg(long, value_name = "X")]
    pub pages_per_s: Option<f64>,
    /// Hourly price of that hardware: gives the cost per million pages (needs --pages-per-s).
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
}
