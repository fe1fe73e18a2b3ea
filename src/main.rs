//! The `ladder` binary: parses arguments once and dispatches to one library function per
//! command. No training logic lives here.

mod cli;
mod sft_args;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command, GenerateArgs, LogprobsArgs, MergeArgs};

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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sft(args) => {
            let job = sft_args::resolve(*args)?;
            let report = ladder_train::sft::run(&job)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Logprobs(args) => logprobs(args),
        Command::Merge(args) => merge(args),
        Command::Generate(args) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let job = ladder_train::generate::GenerateJob {
        model: args.model,
        adapter: args.adapter,
        data: args.data,
        out: args.out,
        device: args.device,
        batch_size: args.batch_size,
        config: ladder_model::GenerateConfig {
            max_new_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            stop: args.stop,
            seed: args.seed,
            use_cache: !args.no_cache,
        },
    };
    let report = ladder_train::generate::run(&job)?;
    eprintln!(
        "generated {} tokens for {} rows in {:.2}s ({:.1} tokens/s; finished: {} eos, {} stop, {} length) into {}",
        report.tokens,
        report.rows,
        report.seconds,
        report.tokens_per_second,
        report.eos,
        report.stop,
        report.length,
        report.out.display()
    );
    println!("{}", serde_json::to_string(&report)?);
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
