//! The `ladder` binary: parses arguments once and dispatches to one library function per
//! command. No training logic lives here.

mod cli;
mod signals;
mod stage_args;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command, EvalArgs, LogprobsArgs, MergeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let signals = match signals::install() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: installing signal handlers: {err}");
            return ExitCode::from(1);
        }
    };
    match run(cli, &signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<ladder_train::TrainError>() {
            Some(stopped @ ladder_train::TrainError::Interrupted { .. }) => {
                eprintln!("{stopped}");
                signals.requeue_if_asked();
                ExitCode::from(signals::EXIT_RESUMABLE)
            }
            _ => {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(cli: Cli, signals: &signals::Signals) -> anyhow::Result<()> {
    match cli.command {
        Command::Sft(args) => {
            let mut job = stage_args::resolve_sft(*args)?;
            job.stage.train.interrupt = signals.interrupt.clone();
            let report = ladder_train::sft::run(&job)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Dpo(args) => {
            let mut job = stage_args::resolve_dpo(*args)?;
            job.stage.train.interrupt = signals.interrupt.clone();
            let report = ladder_train::dpo::run(&job)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Logprobs(args) => logprobs(args),
        Command::Merge(args) => merge(args),
        Command::Eval(args) => eval(args),
    }
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let assume_finish_reason = args
        .assume_finish_reason
        .as_deref()
        .map(|r| serde_json::from_value(serde_json::json!(r)))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--assume-finish-reason: expected eos, stop or length"))?;
    if args.price_per_hour.is_some() && args.pages_per_s.is_none() {
        anyhow::bail!("--price-per-hour needs --pages-per-s (the throughput it is paid for)");
    }
    if let Some(x) = args.pages_per_s.filter(|x| !(*x > 0.0 && x.is_finite())) {
        anyhow::bail!("--pages-per-s must be a positive number, got {x}");
    }
    let opts = ladder_eval::EvalOptions {
        assume_finish_reason,
        throughput: args.pages_per_s.map(|pages_per_s| ladder_eval::Throughput { pages_per_s, output_tokens_per_s: None }),
        price_per_hour: args.price_per_hour,
        ..Default::default()
    };
    let report = ladder_eval::score_predictions(&args.predictions, &opts)?;
    write_file(&args.out, &serde_json::to_vec_pretty(&report)?)?;
    if args.rows {
        print!("{}", report.rows_table());
    }
    print!("{}", report.table());
    Ok(())
}

fn logprobs(args: LogprobsArgs) -> anyhow::Result<()> {
    let device = ladder_train::device::parse_device(&args.device)?;
    let loaded = ladder_train::setup::load(&args.model, args.adapter.as_deref(), &device)?;
    let records = ladder_train::logprobs::run(&loaded.model, &loaded.tokenizer, &args.data)?;
    let mut text = String::new();
    for r in records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    write_file(&args.out, text.as_bytes())
}

fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let device = ladder_train::device::parse_device("cpu")?;
    let mut loaded = ladder_train::setup::load(&args.model, Some(&args.adapter), &device)?;
    ladder_model::peft::merge(&mut loaded.model);
    ladder_train::setup::save_full(&loaded.model, &loaded.dir, &args.out, loaded.dtype)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("merged {} into {}", args.adapter.display(), args.out.display());
    Ok(())
}

/// Writes a whole file atomically (temporary name, then rename), creating its folder.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
