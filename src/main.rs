//! The `ladder` binary: parses arguments once and dispatches to one library function per
//! command. No training logic lives here.

mod cli;
mod signals;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cli::{BenchArgs, Cli, Command, EvalArgs, GenerateArgs, InitArgs, LogprobsArgs, MergeArgs, PairsArgs, RunArgs};

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
            let mut job = ladder_train::options::resolve_sft(*args)?;
            job.stage.train.interrupt = signals.interrupt.clone();
            let report = ladder_train::sft::run(&job)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Dpo(args) => {
            let mut job = ladder_train::options::resolve_dpo(*args)?;
            job.stage.train.interrupt = signals.interrupt.clone();
            let report = ladder_train::dpo::run(&job)?;
            println!("{}", serde_json::to_string(&report)?);
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

fn run_recipe(args: RunArgs) -> anyhow::Result<()> {
    let executor = match args.executor.as_str() {
        "local" => ladder_recipe::Executor::Local,
        "slurm" => ladder_recipe::Executor::Slurm,
        other => anyhow::bail!("--executor: expected local or slurm, got {other:?}"),
    };
    let src = ladder_recipe::load(&args.recipe)?;
    let opts = ladder_recipe::RunOptions { executor, force: args.force, from: args.from, only: args.only, output: args.output, seeds: args.seeds };
    let local = matches!(opts.executor, ladder_recipe::Executor::Local);
    let run_dir = ladder_recipe::plan::run_dir(&src, opts.output.as_deref());
    let outcomes = ladder_recipe::run(&src, &opts)?;
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
    let job = ladder_train::generate::GenerateJob {
        model: args.model,
        adapter: args.adapter,
        data: args.data,
        out: args.out,
        device: args.device,
        batch_size: args.sampling.batch_size,
        config: args.sampling.config(0.0),
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

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let mode: ladder_train::bench::BenchMode = args.mode.parse().map_err(|e| anyhow::anyhow!("--mode: {e}"))?;
    let min_batch = if mode == ladder_train::bench::BenchMode::Dpo { 2 } else { 1 };
    if args.batch_size < min_batch || args.seq_len < 4 || args.steps == 0 {
        anyhow::bail!("ladder bench needs --batch-size ≥ {min_batch} (DPO: 2, one pair), --seq-len ≥ 4 and --steps ≥ 1");
    }
    let cfg = ladder_train::bench::BenchConfig {
        mode,
        shape: args.shape,
        device: args.device,
        gradient_checkpointing: args.gradient_checkpointing,
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        warmup_steps: 2,
        timed_steps: args.steps,
    };
    let result = ladder_train::bench::run(&cfg)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn pairs(args: PairsArgs) -> anyhow::Result<()> {
    let detector = ladder_data::degeneration::Detector {
        suffix_chars: args.suffix_chars,
        min_suffix_count: args.min_suffix_count,
        ..Default::default()
    };
    let job = ladder_train::pairs::PairsJob {
        model: args.model,
        adapter: args.adapter,
        data: args.data,
        out: args.out,
        device: args.device,
        samples: args.samples,
        generate: args.sampling.config(1.0),
        batch_size: args.sampling.batch_size,
        detector,
        min_score: args.min_score,
        synthetic_fallback: args.synthetic_fallback,
        max_pairs_per_prompt: args.max_pairs_per_prompt,
    };
    let summary = ladder_train::pairs::run(&job)?;
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
    let assume_finish_reason = args
        .assume_finish_reason
        .as_deref()
        .map(|r| serde_json::from_value(serde_json::json!(r)))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--assume-finish-reason: expected eos, stop or length"))?;
    if let Some(x) = args.pages_per_s.filter(|x| !(*x > 0.0 && x.is_finite())) {
        anyhow::bail!("--pages-per-s must be a positive number, got {x}");
    }
    let report = match (&args.predictions, &args.model, &args.data) {
        (Some(predictions), _, _) => {
            if args.price_per_hour.is_some() && args.pages_per_s.is_none() {
                anyhow::bail!("--price-per-hour with --predictions needs --pages-per-s (the throughput it is paid for)");
            }
            let opts = ladder_eval::EvalOptions {
                assume_finish_reason,
                throughput: args.pages_per_s.map(|pages_per_s| ladder_eval::Throughput { pages_per_s, output_tokens_per_s: None }),
                price_per_hour: args.price_per_hour,
                ..Default::default()
            };
            let report = ladder_eval::score_predictions(predictions, &opts)?;
            write_file(&args.out, &serde_json::to_vec_pretty(&report)?)?;
            report
        }
        (None, Some(model), Some(data)) => ladder_train::evaluate::run(&ladder_train::evaluate::EvalJob {
            model: model.clone(),
            adapter: args.adapter.clone(),
            data: data.clone(),
            out: args.out.clone(),
            device: args.device.clone(),
            generate: args.sampling.config(0.0),
            batch_size: args.sampling.batch_size,
            price_per_hour: args.price_per_hour,
            detector: Default::default(),
        })?,
        _ => anyhow::bail!("ladder eval needs --predictions FILE, or --model M with --data FILE"),
    };
    if args.rows {
        print!("{}", report.rows_table());
    }
    print!("{}", report.table());
    Ok(())
}

fn logprobs(args: LogprobsArgs) -> anyhow::Result<()> {
    if ladder_train::vlm::detect(&args.model)?.1 {
        anyhow::bail!(
            "{} is a Qwen2.5-VL model: `ladder logprobs` scores text models only so far (DPO computes image rows' log-probs itself, `--reference precomputed`)",
            args.model
        );
    }
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
    ladder_train::setup::merge(&args.model, &args.adapter, &args.out)
        .with_context(|| format!("merging {} into {}", args.adapter.display(), args.model))?;
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
