//! The `ladder` binary: parses arguments once and dispatches to one library function per
//! command. No training logic lives here.

mod cli;
mod signals;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cli::{BenchArgs, Cli, Command, EvalArgs, GenerateArgs, InitArgs, LogprobsArgs, MergeArgs, PairsArgs, RunArgs};
use ladder_train::options;

/// glibc's malloc hands large freed buffers back to the kernel and then page-faults fresh ones
/// in on the next step: measured at 5–10% of a training step in `clear_page` and page faults.
/// These tunables keep freed memory for reuse. glibc reads them only at start-up, so the binary
/// re-executes itself once with them set (safe `exec`; skipped when the user set
/// GLIBC_TUNABLES or LADDER_NO_MALLOC_TUNING).
fn tune_malloc() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() || std::env::var_os("LADDER_NO_MALLOC_TUNING").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let tunables = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456";
    // `exec` returns only if it failed; then run untuned.
    let _ = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("GLIBC_TUNABLES", tunables).exec();
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    // Under mpirun/srun: join the other processes (a world of one otherwise).
    let session = match ladder_train::dist::init() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let world = ladder_train::dist::world();
    // Ranks other than 0 say only what goes wrong.
    let default_level = if world.is_root() { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(cli.color.enabled())
        .with_target(false)
        .init();
    if let Some(n) = cli.threads {
        // Burn's CPU backend runs its kernels on rayon's global pool.
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: --threads {n}: {e}");
            return ExitCode::from(2);
        }
    }
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
            // Every rank stops at the same step; rank 0 speaks for them.
            Some(stopped @ ladder_train::TrainError::Interrupted { .. }) => {
                if world.is_root() {
                    eprintln!("{stopped}");
                    signals.requeue_if_asked();
                }
                ExitCode::from(signals::EXIT_RESUMABLE)
            }
            _ => {
                match world.size() {
                    1 => eprintln!("error: {}", causes(&err)),
                    n => eprintln!("error (rank {} of {n}): {}", world.rank(), causes(&err)),
                }
                session.fail(1)
            }
        },
    }
}

/// The error and its causes, `: `-separated as `{:#}` prints them, but each text once: the
/// libraries' errors already end with their source's text ("PATH: File exists (os error 17)").
fn causes(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain().map(|c| c.to_string()) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli, signals: &signals::Signals) -> anyhow::Result<()> {
    match cli.command {
        Command::Sft(args) => {
            let mut job = ladder_train::options::resolve_sft(*args)?;
            job.stage.train.interrupt = signals.interrupt.clone();
            let report = ladder_train::sft::run(&job)?;
            if reports() {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Dpo(args) => {
            let mut job = ladder_train::options::resolve_dpo(*args)?;
            job.stage.train.interrupt = signals.interrupt.clone();
            let report = ladder_train::dpo::run(&job)?;
            if reports() {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Logprobs(args) => logprobs(args),
        Command::Merge(args) => merge(args),
        Command::Eval(args) => eval(*args),
        Command::Pairs(args) => pairs(*args),
        Command::Bench(args) => bench(args),
        Command::Init(args) => init(args),
        Command::Generate(args) => generate(args),
        Command::Validate(args) => {
            let src = ladder_recipe::load(&args.recipe)?;
            ladder_recipe::seeds::requested(&src, None)?;
            let plan = ladder_recipe::plan(&src, None)?;
            let stages: usize = plan.starts.iter().map(|s| s.stages.len()).sum();
            println!("{}: ok ({} start(s), {stages} stage run(s))", args.recipe.display(), plan.starts.len());
            Ok(())
        }
        Command::Plan(args) => {
            let src = ladder_recipe::load(&args.recipe)?;
            print!("{}", ladder_recipe::seeds::describe(&src, args.output.as_deref())?);
            Ok(())
        }
        Command::Run(args) => run_recipe(args),
        Command::Status(args) => {
            let rows = ladder_recipe::report::status(&args.run_dir)?;
            print!("{}", ladder_recipe::report::status_table(&rows));
            Ok(())
        }
        Command::Compare(args) => {
            let comparison = ladder_recipe::report::compare(&args.run_dirs)?;
            let out = args.out.unwrap_or_else(|| args.run_dirs[0].clone());
            print!("{}", comparison.markdown());
            println!("report: {}", comparison.write(&out)?.display());
            Ok(())
        }
    }
}

/// Under mpirun/srun every rank runs its share of a command; rank 0 alone prints the report.
fn reports() -> bool {
    ladder_train::dist::world().is_root()
}

fn run_recipe(args: RunArgs) -> anyhow::Result<()> {
    let executor = args.executor;
    let src = ladder_recipe::load(&args.recipe)?;
    let opts = ladder_recipe::RunOptions { executor, force: args.force, from: args.from, only: args.only, output: args.output, seeds: args.seeds };
    let local = matches!(opts.executor, ladder_recipe::Executor::Local);
    let run_dir = ladder_recipe::plan::run_dir(&src, opts.output.as_deref());
    let outcomes = ladder_recipe::run(&src, &opts)?;
    if !reports() {
        return Ok(());
    }
    for o in outcomes {
        let seed = o.seed.map(|s| format!("{}/", ladder_recipe::seeds::folder(s))).unwrap_or_default();
        println!("{seed}{}/{}: {}{}", o.start, o.stage, o.action, o.detail.map(|d| format!(" {d}")).unwrap_or_default());
    }
    // A local run has finished every stage: end with the comparison, as `ladder compare` would.
    // (A Slurm run has only submitted them; `ladder compare` comes after the jobs.)
    if local {
        let comparison = ladder_recipe::report::compare(std::slice::from_ref(&run_dir))?;
        if comparison.rows.iter().any(|r| r.eval_stage.is_some()) {
            print!("\n{}", comparison.markdown());
            println!("report: {}", comparison.write(&run_dir)?.display());
        }
    }
    Ok(())
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    use ladder_train::init::{InitJob, TokenizerSource, VisionShape};
    let (architecture, vlm) = match args.arch.as_str() {
        "qwen2" => (ladder_model::Architecture::Qwen2, false),
        "llama" => (ladder_model::Architecture::Llama, false),
        "qwen2_5_vl" => (ladder_model::Architecture::Qwen2, true),
        other => anyhow::bail!("--arch {other:?}: expected qwen2, llama or qwen2_5_vl"),
    };
    let v = &args.vision;
    if !vlm && !v.given().is_empty() {
        anyhow::bail!("{} only apply to --arch qwen2_5_vl (this is --arch {})", v.given().join(", "), args.arch);
    }
    let vision = vlm.then(|| {
        let hidden_size = v.vision_hidden_size.unwrap_or(64);
        let patch_size = v.patch_size.unwrap_or(14);
        let token = (2 * patch_size) as u64;
        VisionShape {
            hidden_size,
            intermediate_size: v.vision_intermediate_size.unwrap_or(2 * hidden_size),
            depth: v.vision_layers.unwrap_or(2),
            num_heads: v.vision_heads.unwrap_or(2),
            patch_size,
            window_size: v.window_size.unwrap_or(8 * patch_size),
            min_pixels: v.min_pixels.unwrap_or(4 * token * token),
            max_pixels: v.max_pixels.unwrap_or(256 * token * token),
        }
    });
    let text_model = args.vision.text_model.clone();
    let tokenizer = match args.tokenizer.or_else(|| text_model.clone()) {
        Some(dir) => TokenizerSource::Existing(dir),
        None => TokenizerSource::Train { data: args.tokenizer_data, vocab_size: args.vocab_size },
    };
    let job = InitJob {
        out: args.out,
        architecture,
        hidden_size: args.hidden_size,
        intermediate_size: args.intermediate_size.unwrap_or_else(|| (args.hidden_size * 8 / 3).div_ceil(64) * 64),
        num_layers: args.layers,
        num_heads: args.heads,
        num_kv_heads: args.kv_heads.unwrap_or(args.heads),
        max_position_embeddings: args.max_position_embeddings,
        rope_theta: args.rope_theta,
        tie_word_embeddings: !args.untie_embeddings,
        tokenizer,
        seed: args.seed,
        init_std: args.init_std,
        overwrite: args.overwrite,
        vision,
        text_model,
    };
    let report = ladder_train::init::run(&job)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let job = options::resolve_generate(args)?;
    let report = ladder_train::generate::run(&job)?;
    if !reports() {
        return Ok(());
    }
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

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let cfg = ladder_train::bench::BenchConfig {
        mode: args.mode,
        shape: args.shape,
        device: args.device,
        precision: ladder_train::precision::Precision::resolve(args.precision, args.device).map_err(|e| anyhow::anyhow!("--precision: {e}"))?,
        gradient_checkpointing: args
            .gradient_checkpointing
            .unwrap_or_else(|| ladder_train::options::checkpointing_by_default(args.mode == ladder_train::bench::BenchMode::Full)),
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        warmup_steps: 2,
        timed_steps: args.steps,
        optimizer: args.optimizer,
        profile: args.profile,
    };
    let result = ladder_train::bench::run(&cfg)?;
    if !reports() {
        return Ok(());
    }
    if let Some(profile) = &result.profile {
        println!("{}", profile.markdown());
    }
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn pairs(args: PairsArgs) -> anyhow::Result<()> {
    let job = options::resolve_pairs(args)?;
    let summary = ladder_train::pairs::run(&job)?;
    if !reports() {
        return Ok(());
    }
    eprintln!(
        "{} prompts, {} samples: {} degenerate {:?}, {} low-score, {} synthetic → {} pairs in {} ({} prompts without a pair)",
        summary.prompts,
        summary.samples,
        summary.degenerate,
        summary.by_rule,
        summary.low_score,
        summary.synthetic,
        summary.pairs,
        summary.out.display(),
        summary.prompts_without_pair
    );
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let print_rows = args.rows;
    let report = ladder_train::evaluate::run(&options::resolve_eval(args)?)?;
    if !reports() {
        return Ok(());
    }
    if print_rows {
        print!("{}", report.rows_table());
    }
    print!("{}", report.table());
    Ok(())
}

fn logprobs(args: LogprobsArgs) -> anyhow::Result<()> {
    let job = options::resolve_logprobs(args)?;
    let rows = ladder_train::logprobs::run_job(&job)?;
    eprintln!("scored {rows} rows into {}", job.out.display());
    Ok(())
}

fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let job = options::resolve_merge(args)?;
    ladder_train::merge::run(&job.model, &job.adapter, &job.out, job.overwrite)
        .with_context(|| format!("merging {} into {}", job.adapter.display(), job.model))?;
    eprintln!("merged {} into {}", job.adapter.display(), job.out.display());
    Ok(())
}
