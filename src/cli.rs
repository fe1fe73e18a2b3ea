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
    /// Compare the starts of a run side by side; writes report.md, report.json and pareto.svg
    /// into the run folder and prints the table.
    Compare(StatusArgs),
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
}

/// `ladder status` / `ladder compare` options.
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
