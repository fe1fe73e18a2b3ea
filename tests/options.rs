//! One definition of each option (issue 16): the defects found when the CLI and recipes
//! disagreed, each pinned end to end through the real binary.

use std::process::Command;

use crate::util::*;

/// `ladder sft --adapter X --lora-r 8` with X of rank 4 used to train rank 4 silently while
/// training_args.json recorded 8.
#[test]
fn a_continued_adapter_keeps_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first").to_string_lossy().into_owned();
    let model = fixture("qwen2-tiny");
    let data = fixture("data/sft.jsonl");
    ladder(&["sft", "--model", &model, "--data", &data, "--out", &first, "--lora-r", "4", "--max-steps", "1"]);
    let second = dir.path().join("second").to_string_lossy().into_owned();
    let err = ladder_fails(&["sft", "--model", &model, "--adapter", &first, "--data", &data, "--out", &second, "--lora-r", "8", "--max-steps", "1"]);
    assert!(err.contains("--lora-r: r = 8, but the adapter being continued") && err.contains("has r = 4"), "{err}");
    // Without the flag the adapter's own shape is what training_args.json records.
    ladder(&["sft", "--model", &model, "--adapter", &first, "--data", &data, "--out", &second, "--max-steps", "1"]);
    let args = read_json(dir.path().join("second/training_args.json"));
    let text = args.to_string();
    assert!(text.contains("\"r\":4"), "training_args.json should record the adapter's rank 4: {text}");
}

/// `--lr 0` is a sanity check TRL accepts: the run reproduces the starting model's numbers.
#[test]
fn lr_zero_is_accepted_and_negative_lr_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o").to_string_lossy().into_owned();
    let (model, data) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"));
    ladder(&["sft", "--model", &model, "--data", &data, "--out", &out, "--lr", "0", "--max-steps", "1"]);
    let err = ladder_fails(&["sft", "--model", &model, "--data", &data, "--out", &out, "--overwrite", "--lr", "-1"]);
    assert!(err.contains("--lr: must be a non-negative number") && err.contains("got -1"), "{err}");
}

/// A bad value in a `--config` file is reported at its file, line and key, not as a flag; a
/// key of another command is named as such, not "corrected" to a look-alike.
#[test]
fn config_file_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sft.toml");
    std::fs::write(&config, "lora_r = 4\nlr = -1\n").unwrap();
    let out = dir.path().join("o").to_string_lossy().into_owned();
    let (model, data, cfg) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), config.to_string_lossy().into_owned());
    let err = ladder_fails(&["sft", "--model", &model, "--data", &data, "--out", &out, "--config", &cfg]);
    assert!(err.contains(&format!("{cfg}:2: `lr`: must be a non-negative number")), "{err}");
    std::fs::write(&config, "beta = 0.1\n").unwrap();
    let err = ladder_fails(&["sft", "--model", &model, "--data", &data, "--out", &out, "--config", &cfg]);
    assert!(err.contains(&format!("{cfg}:1: unknown key `beta`: it is an option of `ladder dpo`")), "{err}");
}

/// `device = "cdua"` used to pass `ladder validate` and fail when the stage started.
#[test]
fn validate_catches_a_device_typo_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"r\"\n[[start]]\nname = \"a\"\nmodel = \"{}\"\n\n[[stage]]\nname = \"sft\"\nkind = \"sft\"\nfrom = \"start\"\ndata = \"{}\"\ndevice = \"cdua\"\n",
            fixture("qwen2-tiny"),
            fixture("data/sft.jsonl")
        ),
    )
    .unwrap();
    let err = ladder_fails(&["validate", &recipe.to_string_lossy()]);
    assert!(err.contains("r.toml:11:1: stage `sft`: key `device`") && err.contains("expected cpu, cuda, cuda:N or wgpu, got \"cdua\""), "{err}");
}

/// Logs into a file or a pipe carry no ANSI colour codes; `--color always` asks for them.
#[test]
fn no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o").to_string_lossy().into_owned();
    let (model, data) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"));
    let run = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ladder"))
            .args(["sft", "--model", &model, "--data", &data, "--out", &out, "--max-steps", "1", "--overwrite"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let plain = run(&[]);
    assert!(!plain.is_empty() && !plain.contains('\u{1b}'), "escape codes in piped logs:\n{plain:?}");
    assert!(run(&["--color", "always"]).contains("\u{1b}["), "--color always should colour the log");
}
