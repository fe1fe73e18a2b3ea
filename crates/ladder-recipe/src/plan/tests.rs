//! Planning tests on the tiny Qwen2 fixture: every check reports its file, line and key.

use std::path::Path;

use ladder_train::dpo::ReferenceKind;
use serde_json::{json, Value};

use super::*;

fn fixture(rel: &str) -> String {
    format!("{}/../../tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// sft → dpo → merge on the tiny Qwen2 fixture; `edit` rewrites the text.
fn recipe(edit: impl Fn(String) -> String) -> String {
    edit(format!(
        "name = \"t\"\n\n[[start]]\nname = \"a\"\nmodel = \"{}\"\n\n[defaults]\nlora_r = 4\n\n\
         [[stage]]\nname = \"sft\"\nkind = \"sft\"\nfrom = \"start\"\ndata = \"{}\"\n\n\
         [[stage]]\nname = \"dpo\"\nkind = \"dpo\"\nfrom = \"sft\"\npairs = \"{}\"\n\n\
         [[stage]]\nname = \"merged\"\nkind = \"merge\"\nfrom = \"dpo\"\n",
        fixture("qwen2-tiny"),
        fixture("data/sft.jsonl"),
        fixture("data/dpo.jsonl")
    ))
}

fn check(text: &str) -> std::result::Result<Plan, String> {
    let src = crate::schema::parse(Path::new("r.toml"), text).map_err(|e| e.to_string())?;
    let out = tempfile::tempdir().unwrap();
    plan(&src, Some(out.path())).map_err(|e| e.to_string())
}

fn fails(text: &str, line: usize, expected: &str) {
    let err = check(text).err().unwrap_or_else(|| panic!("should fail with {expected:?}"));
    assert!(err.contains(&format!("r.toml:{line}:")) && err.contains(expected), "want line {line} and {expected:?}, got:\n{err}");
}

#[test]
fn a_good_recipe_plans_every_stage() {
    let plan = check(&recipe(|t| t)).unwrap();
    let names: Vec<&str> = plan.starts[0].stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["sft", "dpo", "merged"]);
    let Work::Dpo(job) = &plan.starts[0].stages[1].work else { panic!("dpo") };
    assert_eq!(job.dpo.reference, ReferenceKind::Precomputed, "after an adapter the default is the SFT model, precomputed");
    assert!(job.stage.adapter.as_ref().unwrap().ends_with("a/sft"));
    assert!(plan.starts[0].stages.iter().all(|s| s.state == State::Run("new")));
}

#[test]
fn unknown_stage_key_suggests_the_closest() {
    fails(&recipe(|t| t.replace("from = \"start\"", "from = \"start\"\nlora_rank = 8")), 14, "stage `sft` (kind sft): unknown key `lora_rank` (did you mean `lora_r`?)");
    fails(&recipe(|t| t.replace("lora_r = 4", "learning_rat = 4")), 8, "[defaults]: unknown key `learning_rat`");
}

#[test]
fn keys_the_recipe_owns_are_refused() {
    fails(&recipe(|t| t.replace("from = \"start\"", "from = \"start\"\nout = \"x\"")), 14, "`out` is set by the recipe");
}

#[test]
fn wrong_types_are_located() {
    fails(&recipe(|t| t.replace("from = \"start\"", "from = \"start\"\nlr = \"fast\"")), 14, "key `lr`: invalid type: string \"fast\", expected f64");
}

#[test]
fn bad_values_name_the_key() {
    fails(&recipe(|t| t.replace("from = \"start\"", "from = \"start\"\nlr = -1.0")), 14, "stage `sft`: `lr`: must be a non-negative number");
}

#[test]
fn missing_files_are_reported() {
    fails(&recipe(|t| t.replace("data/sft.jsonl", "data/nope.jsonl")), 14, "data file");
    fails(&recipe(|t| t.replace("qwen2-tiny", "qwen9")), 5, "does not exist");
}

#[test]
fn unknown_from_suggests_a_stage() {
    fails(&recipe(|t| t.replace("from = \"sft\"", "from = \"sfft\"")), 19, "from = \"sfft\" names no stage and is not \"start\" (did you mean `sft`?)");
}

#[test]
fn cycles_are_refused() {
    fails(&recipe(|t| t.replace("from = \"start\"", "from = \"merged\"")), 13, "stages form a cycle: sft → merged → dpo → sft");
}

#[test]
fn full_after_an_adapter_is_refused() {
    fails(&recipe(|t| t.replace("from = \"sft\"", "from = \"sft\"\nfull = true")), 20, "`full`: trains every weight, but `adapter`");
}

#[test]
fn adapter_shape_must_match_when_continuing() {
    fails(&recipe(|t| t.replace("from = \"sft\"", "from = \"sft\"\nlora_r = 8")), 20, "`lora_r`: r = 8, but the adapter being continued");
}

#[test]
fn adapter_off_reference_after_an_adapter_is_refused() {
    fails(
        &recipe(|t| t.replace("from = \"sft\"", "from = \"sft\"\nreference = \"adapter-off\"")),
        20,
        "`reference`: adapter-off while continuing the adapter",
    );
}

#[test]
fn dataset_columns_must_fit_the_kind() {
    fails(&recipe(|t| t.replace("data/sft.jsonl", "data/dpo.jsonl")), 14, "dpo.jsonl:1: a preference row");
    let dpo_on_sft = recipe(|t| t.replacen(&fixture("data/dpo.jsonl"), &fixture("data/sft.jsonl"), 1));
    fails(&dpo_on_sft, 20, "sft.jsonl:1: not a preference row");
}

/// Image rows need a Qwen2.5-VL start, which validates as any model does and trains LoRA
/// adapters only.
#[test]
fn image_rows_and_vlm_starts_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.jsonl");
    let row = json!({"image": fixture("images/large.png"), "prompt": "Read:", "completion": "PROCURAÇÃO"});
    std::fs::write(&images, format!("{row}\n")).unwrap();
    let images = images.to_str().unwrap();
    fails(&recipe(|t| t.replace(&fixture("data/sft.jsonl"), images)), 14, "image rows but start `a`");
    // The fixture model has no preprocessor_config.json: Qwen2-VL's default 14-pixel patches
    // do not fit its 4-pixel vision tower, as training would find out.
    let vlm = recipe(|t| t.replace(&fixture("qwen2-tiny"), &fixture("qwen2_5-vl-tiny")).replace(&fixture("data/sft.jsonl"), images));
    fails(&vlm, 5, "patch_size 14, temporal_patch_size 2, merge_size 2 do not match the model's vision_config (4, 2, 2)");
    let model = dir.path().join("vlm");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(format!("{}/{f}", fixture("qwen2_5-vl-tiny")), model.join(f)).unwrap();
    }
    std::fs::write(model.join("preprocessor_config.json"), r#"{"patch_size": 4, "min_pixels": 64, "max_pixels": 1024}"#).unwrap();
    let vlm = vlm.replace(&fixture("qwen2_5-vl-tiny"), model.to_str().unwrap());
    check(&vlm).unwrap();
    fails(&vlm.replacen("from = \"start\"\n", "from = \"start\"\nfull = true\n", 1), 14, "trains LoRA adapters only");
}

#[test]
fn tokenizer_and_model_must_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(format!("{}/{f}", fixture("qwen2-tiny")), dir.path().join(f)).unwrap();
    }
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let mut v: Value = serde_json::from_str(&config).unwrap();
    v["vocab_size"] = json!(100);
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    fails(&recipe(|t| t.replace(&fixture("qwen2-tiny"), dir.path().to_str().unwrap())), 5, "they do not belong together");
}

#[test]
fn merge_needs_an_adapter() {
    let t = recipe(|t| t.replace("from = \"dpo\"", "from = \"start\""));
    fails(&t, 25, "a merge stage folds a LoRA adapter into its base");
}

#[test]
fn pairs_must_name_a_pairs_stage_or_a_file() {
    fails(&recipe(|t| t.replace(&fixture("data/dpo.jsonl"), "sft")), 20, "pairs = \"sft\" names a sft stage, not a pairs stage");
    fails(&recipe(|t| t.replace(&fixture("data/dpo.jsonl"), "pairz")), 20, "is neither a stage nor an existing file");
}

#[test]
fn pairs_and_eval_stages_validate_and_plan() {
    let refs = fixture("data/references.jsonl");
    let t = recipe(|t| {
        t + &format!(
            "\n[[stage]]\nname = \"gen\"\nkind = \"pairs\"\nfrom = \"sft\"\ndata = \"{refs}\"\nsamples = 4\n\n\
             [[stage]]\nname = \"ev\"\nkind = \"eval\"\nfrom = \"merged\"\ndata = \"{refs}\"\nprice_per_hour = 2.5\n"
        )
    });
    let plan = check(&t).unwrap();
    assert_eq!(plan.starts[0].stages.len(), 5);
    fails(&t.replace("samples = 4", "sample = 4"), 32, "unknown key `sample` (did you mean `samples`?)");
    fails(&t.replace("from = \"merged\"", "from = \"gen\""), 37, "is a stage that produces no model");
    fails(&t.replacen(&format!("data = \"{refs}\"\nsamples"), &format!("data = \"{}\"\nsamples", fixture("data/text.jsonl")), 1), 31, "a row needs \"prompt\" and its reference");
}

#[test]
fn a_changed_parent_reruns_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::schema::parse(Path::new("r.toml"), &recipe(|t| t)).unwrap();
    let p = plan(&src, Some(dir.path())).unwrap();
    let sft = &p.starts[0].stages[0];
    let src2 = crate::schema::parse(Path::new("r.toml"), &recipe(|t| t.replace("lora_r = 4", "lora_r = 4\nlr = 1e-3"))).unwrap();
    let p2 = plan(&src2, Some(dir.path())).unwrap();
    assert_ne!(sft.fingerprint, p2.starts[0].stages[0].fingerprint);
    assert_ne!(p.starts[0].stages[2].fingerprint, p2.starts[0].stages[2].fingerprint, "children inherit the change");
}

/// Pairs and eval stages used to be run with a hard-coded device, batch size, detector and
/// fallback, and one data file, whatever the recipe said.
#[test]
fn pairs_and_eval_stages_honour_every_key() {
    let refs = fixture("data/references.jsonl");
    let t = recipe(|t| {
        t + &format!(
            "\n[[stage]]\nname = \"gen\"\nkind = \"pairs\"\nfrom = \"sft\"\ndata = [\"{refs}\", \"{refs}\"]\nbatch_size = 3\nmax_pairs_per_prompt = 2\n\
             min_score = 0.5\nsuffix_chars = 10\nmin_suffix_count = 3\nsynthetic_fallback = true\n\n\
             [[stage]]\nname = \"ev\"\nkind = \"eval\"\nfrom = \"sft\"\ndata = [\"{refs}\", \"{refs}\"]\nbatch_size = 2\nsuffix_chars = 12\n"
        )
    });
    let plan = check(&t).unwrap();
    let Work::Pairs(pairs) = &plan.starts[0].stages[3].work else { panic!("pairs") };
    assert_eq!((pairs.data.len(), pairs.batch_size, pairs.max_pairs_per_prompt, pairs.min_score), (2, 3, 2, Some(0.5)));
    assert_eq!((pairs.detector.suffix_chars, pairs.detector.min_suffix_count, pairs.synthetic_fallback), (10, 3, true));
    assert_eq!((pairs.generate.max_new_tokens, pairs.generate.temperature), (512, 1.0), "the defaults of `ladder pairs`");
    let Work::Eval(eval) = &plan.starts[0].stages[4].work else { panic!("eval") };
    let ladder_train::evaluate::EvalSource::Model { data, batch_size, generate, .. } = &eval.source else { panic!("generating eval") };
    assert_eq!((data.len(), *batch_size, generate.max_new_tokens, eval.detector.suffix_chars), (2, 2, 1024, 12));
    fails(&t.replace("min_score = 0.5", "min_score = 1.5"), 34, "stage `gen`: `min_score`: must be in [0, 1]");
    let dir = tempfile::tempdir().unwrap();
    let predictions = dir.path().join("p.jsonl");
    std::fs::write(&predictions, "{\"prediction\": \"a\", \"reference\": \"a\"}\n").unwrap();
    let both = t.replace("batch_size = 2\n", &format!("batch_size = 2\npredictions = \"{}\"\n", predictions.display()));
    fails(&both, 45, "give `predictions`, or `data` to generate with the model, not both");
}

/// An option error is located at the key, also when it is inherited from [defaults].
#[test]
fn inherited_option_errors_point_at_defaults() {
    fails(&recipe(|t| t.replace("lora_r = 4", "lora_r = 4\nadam_beta2 = 1.0")), 9, "stage `sft`: `adam_beta2`: must be in [0, 1)");
}

/// `processes` (local) and `nodes` × `tasks_per_node` (Slurm) are checked, enter a training
/// stage's fingerprint (a larger global batch is another result) and shape its Slurm job.
#[test]
fn data_parallel_stages_are_checked_and_launched() {
    let parallel = recipe(|t| t.replacen("from = \"start\"\n", "from = \"start\"\nprocesses = 2\n", 1));
    if !ladder_train::dist::MPI {
        fails(&parallel, 14, "2 processes need a build with MPI");
        return;
    }
    let one = check(&recipe(|t| t)).unwrap();
    let two = check(&parallel).unwrap();
    assert_eq!(two.starts[0].stages[0].launch.ranks(), 2);
    assert_ne!(one.starts[0].stages[0].fingerprint, two.starts[0].stages[0].fingerprint);
    assert!(two.describe().contains("×2 processes"), "{}", two.describe());
    fails(&parallel.replace("processes = 2", "processes = 2\nnodes = 2"), 14, "give one or the other");
    fails(&parallel.replace("processes = 2", "processes = 0"), 14, "`processes` must be at least 1");
    let slurm = check(&recipe(|t| t.replacen("from = \"start\"\n", "from = \"start\"\nnodes = 2\ntasks_per_node = 2\ngpus_per_node = 1\n", 1))).unwrap();
    let script = crate::slurm::script(&slurm, Path::new("r.toml"), "a", &slurm.starts[0].stages[0], None);
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --gpus-per-node=1", "srun --mpi=pmix "] {
        assert!(script.contains(line), "{line:?} missing from:\n{script}");
    }
    let single = crate::slurm::script(&one, Path::new("r.toml"), "a", &one.starts[0].stages[0], None);
    assert!(!single.contains("srun") && !single.contains("--nodes"), "{single}");
}
