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
    /// Summed completion log-probabilities per row (TRL's tokenisation).
    ///
    /// Rows {"prompt","completion"} give {"index","logp","n_tokens"}; rows
    /// {"prompt","chosen","rejected"} give logp_chosen / logp_rejected and their token counts.
    Logprobs(LogprobsArgs),
    /// Fold a LoRA adapter into its base model and write a full checkpoint.
    Merge(MergeArgs),
    /// Generate continuations of prompts, in batches, with a KV cache.
    ///
    /// Rows (JSONL): {"prompt": "text"}, {"prompt": [messages]} (rendered with the chat
    /// template and its generation prompt) or {"messages": [...]} (all but a final assistant
    /// turn). Other columns, e.g. "completion" or "reference", are copied to the output, which
    /// adds "generated", "n_tokens" and "finish_reason" (eos, stop or length). Greedy unless
    /// --temperature is above 0.
    ///
    /// Example: ladder generate --model models/qwen --adapter runs/sft --data prompts.jsonl
    /// --out generations.jsonl --max-new-tokens 256
    Generate(GenerateArgs),
}

/// `ladder sft` options. Every option is also a key of `--config`.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftArgs {
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

    /// Also train on prompt tokens (default: completion / assistant tokens only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub train_on_prompt: Option<bool>,
    /// Truncate examples to this many tokens (the count truncated is reported).
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub max_seq_len: Option<usize>,
    /// Pack short examples together into sequences of --max-seq-len tokens (attention stays
    /// within each example).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub packing: Option<bool>,
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
    /// Resume from a checkpoint folder (or a run folder: its latest checkpoint).
    #[arg(long, value_name = "DIR", help_heading = "Checkpoints")]
    pub resume: Option<PathBuf>,
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
    /// Most new tokens per row, the EOS token included.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy search.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample from the K most likely tokens only; 0 disables.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: usize,
    /// Sample from the smallest set of tokens whose probability reaches P; 1 disables.
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub top_p: f64,
    /// Divide positive / multiply negative logits of tokens already seen (prompt included) by
    /// R, as transformers' repetition_penalty; 1 disables.
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Stop a row when its text contains STR (cut before it); repeat for several.
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
    /// Sampling seed; each row gets its own stream, so batching does not change samples.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Prompts decoded together.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub batch_size: usize,
    /// cpu, cuda, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Recompute the whole sequence every step instead of using the KV cache (slow; for
    /// checks and benchmarks).
    #[arg(long)]
    pub no_cache: bool,
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
        assert_eq!(args.full, Some(true));
        assert_eq!(args.no_shuffle, Some(true));
        assert_eq!(args.data.unwrap().len(), 2);
        assert_eq!(args.lora_r, None);
    }

    #[test]
    fn generate_flags_parse() {
        let cli = Cli::try_parse_from(["ladder", "generate", "--model", "m", "--data", "p.jsonl", "--out", "o.jsonl", "--stop", "###", "--stop", "END", "--top-k", "5"]).unwrap();
        let Command::Generate(args) = cli.command else { panic!("generate") };
        assert_eq!(args.stop, vec!["###", "END"]);
        assert_eq!((args.top_k, args.max_new_tokens, args.temperature, args.batch_size), (5, 128, 0.0, 8));
    }
}
