//! Everything about a recipe that can be checked without training: names, keys and their
//! types, stage references, the start models (config and tokenizer), and the data files' first
//! rows. Every problem is reported at the file, line and column of the key at fault.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ladder_data::Row;
use ladder_train::options::{self, DpoArgs, EvalArgs, MergeArgs, PairsArgs, SftArgs};
use serde_json::{json, Value};

use crate::error::Problem;
use crate::schema::{RecipeSource, Stage, StageKind};

/// Keys a recipe sets itself: a stage's model comes from `from`, its output folder from the
/// recipe, resuming and overwriting are the runner's business.
pub(super) const RESERVED: [&str; 5] = ["model", "adapter", "out", "resume", "overwrite"];

pub(super) const KINDS: [StageKind; 5] = [StageKind::Sft, StageKind::Dpo, StageKind::Pairs, StageKind::Eval, StageKind::Merge];

/// The keys a kind accepts (beyond name/kind/from/level/pairs): its options struct's, less the
/// ones the recipe sets.
pub fn accepted_keys(kind: StageKind) -> Vec<String> {
    let keys = match kind {
        StageKind::Sft => options::valid_keys::<SftArgs>(),
        StageKind::Dpo => options::valid_keys::<DpoArgs>(),
        StageKind::Pairs => options::valid_keys::<PairsArgs>(),
        StageKind::Eval => options::valid_keys::<EvalArgs>(),
        StageKind::Merge => options::valid_keys::<MergeArgs>(),
    };
    keys.into_iter().filter(|k| !RESERVED.contains(&k.as_str())).collect()
}

/// The other kinds' keys, so that a key of theirs is named as such ("it is an option of dpo
/// stages"), not suggested as a typo of one of this kind's.
fn other_kinds(kind: StageKind) -> Vec<(String, Vec<String>)> {
    KINDS.iter().filter(|k| **k != kind).map(|k| (format!("{} stages", k.as_str()), accepted_keys(*k))).collect()
}

/// Collects problems, each at the line and column of its key.
pub(super) struct Checker<'a> {
    pub src: &'a RecipeSource,
    pub problems: Vec<Problem>,
}

impl Checker<'_> {
    pub fn at(&mut self, table: &str, index: usize, key: &str, message: String) {
        let (line, column) = self.src.locator.key(table, index, key);
        self.problems.push(Problem { file: self.src.file.clone(), line, column, message });
    }
}

/// Names, keys and stage references; returns each stage's index by name.
pub(super) fn check_structure<'a>(c: &mut Checker<'a>) -> HashMap<&'a str, usize> {
    let src = c.src;
    let r = &src.recipe;
    if r.name.is_empty() || r.name.contains('/') {
        c.at("", 0, "name", format!("name {:?} must be non-empty and hold no `/` (it names the run folder)", r.name));
    }
    if r.start.is_empty() {
        c.at("", 0, "name", "a recipe needs at least one [[start]]".into());
    }
    // Names.
    let mut seen = HashMap::new();
    for (i, s) in r.start.iter().enumerate() {
        if s.name.is_empty() || s.name.contains('/') {
            c.at("start", i, "name", format!("start name {:?} must be non-empty and hold no `/`", s.name));
        }
        if seen.insert(s.name.clone(), i).is_some() {
            c.at("start", i, "name", format!("start `{}` is defined twice", s.name));
        }
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, st) in r.stage.iter().enumerate() {
        if st.name.is_empty() || st.name.contains('/') || st.name == "start" {
            c.at("stage", i, "name", format!("stage name {:?} must be non-empty, hold no `/` and not be `start`", st.name));
        }
        if index.insert(&st.name, i).is_some() {
            c.at("stage", i, "name", format!("stage `{}` is defined twice", st.name));
        }
    }
    let stage_names: Vec<String> = r.stage.iter().map(|s| s.name.clone()).collect();
    // Keys.
    let all_keys: Vec<String> = {
        let mut k: Vec<String> = KINDS.iter().flat_map(|k| accepted_keys(*k)).collect();
        k.sort();
        k.dedup();
        k
    };
    for key in r.defaults.keys() {
        if RESERVED.contains(&key.as_str()) {
            c.at("defaults", 0, key, format!("[defaults]: `{key}` is set by the recipe (a stage's model comes from `from`, its folder from the recipe)"));
        } else if !all_keys.contains(key) {
            c.at("defaults", 0, key, format!("[defaults]: {}", options::unknown_key(key, &all_keys, &[] as &[(&str, Vec<String>)])));
        }
    }
    for (i, st) in r.stage.iter().enumerate() {
        let accepted = accepted_keys(st.kind);
        for key in st.options.keys() {
            if RESERVED.contains(&key.as_str()) {
                c.at("stage", i, key, format!(
                    "stage `{}`: `{key}` is set by the recipe: a stage's model comes from `from`, its output folder is <output>/<recipe>/<start>/<stage>",
                    st.name
                ));
            } else if !accepted.contains(key) {
                let elsewhere = other_kinds(st.kind);
                c.at("stage", i, key, format!("stage `{}` (kind {}): {}", st.name, st.kind.as_str(), options::unknown_key(key, &accepted, &elsewhere)));
            }
        }
        check_launch(c, i, st);
        if st.pairs.is_some() && st.kind != StageKind::Dpo {
            c.at("stage", i, "pairs", format!("stage `{}`: `pairs` applies to dpo stages only", st.name));
        }
        if st.from != "start" && !index.contains_key(st.from.as_str()) {
            let mut cands = stage_names.clone();
            cands.push("start".into());
            let hint = options::closest(&st.from, &cands).map(|b| format!(" (did you mean `{b}`?)")).unwrap_or_default();
            c.at("stage", i, "from", format!("stage `{}`: from = {:?} names no stage and is not \"start\"{hint}", st.name, st.from));
        }
        if let Some(p) = &st.pairs {
            if let Some(&j) = index.get(p.as_str()) {
                if r.stage[j].kind != StageKind::Pairs {
                    c.at("stage", i, "pairs", format!("stage `{}`: pairs = {p:?} names a {} stage, not a pairs stage", st.name, r.stage[j].kind.as_str()));
                }
            } else if !Path::new(p).is_file() {
                let hint = options::closest(p, &stage_names).map(|b| format!(" (did you mean stage `{b}`?)")).unwrap_or_default();
                c.at("stage", i, "pairs", format!("stage `{}`: pairs = {p:?} is neither a stage nor an existing file{hint}", st.name));
            }
        }
    }
    index
}

/// `processes` (local executor) or `nodes` × `tasks_per_node` (Slurm): at least 1, not both
/// ways at once, on stages whose work is split across ranks, in a build that has MPI.
fn check_launch(c: &mut Checker, i: usize, st: &Stage) {
    let keys = [("processes", st.processes), ("nodes", st.nodes), ("tasks_per_node", st.tasks_per_node), ("gpus_per_node", st.gpus_per_node)];
    for (key, value) in keys {
        if value == Some(0) {
            c.at("stage", i, key, format!("stage `{}`: `{key}` must be at least 1", st.name));
        }
    }
    if st.processes.is_some() && (st.nodes.is_some() || st.tasks_per_node.is_some()) {
        c.at("stage", i, "processes", format!("stage `{}`: `processes` is for the local executor, `nodes` and `tasks_per_node` for Slurm's: give one or the other", st.name));
    }
    if st.ranks() > 1 && st.kind == StageKind::Merge {
        c.at("stage", i, "processes", format!("stage `{}`: a merge stage runs in one process", st.name));
    }
    if st.ranks() > 1 && !ladder_train::dist::MPI {
        let key = if st.processes.is_some() { "processes" } else { "tasks_per_node" };
        c.at("stage", i, key, format!("stage `{}`: {} processes need a build with MPI: `cargo build --release --features mpi`", st.name, st.ranks()));
    }
}

/// Each stage's keys: `[defaults]` it accepts, then its own, with the recipe's seed and a single
/// `data` file as a list. Types are checked here, each error at its own key.
pub(super) fn merged_keys(c: &mut Checker) -> Vec<toml::Table> {
    let src = c.src;
    let r = &src.recipe;
    let mut merged: Vec<toml::Table> = Vec::new();
    for (i, st) in r.stage.iter().enumerate() {
        let accepted = accepted_keys(st.kind);
        let mut t = toml::Table::new();
        for (k, v) in &r.defaults {
            if accepted.contains(k) {
                t.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &st.options {
            t.insert(k.clone(), v.clone());
        }
        if accepted.iter().any(|k| k == "seed") && !t.contains_key("seed") {
            t.insert("seed".into(), toml::Value::Integer(r.seed as i64));
        }
        if let Some(toml::Value::String(s)) = t.get("data").cloned() {
            t.insert("data".into(), toml::Value::Array(vec![toml::Value::String(s)]));
        }
        check_types(c, i, st, &t);
        merged.push(t);
    }
    merged
}

/// What the stages need to know about a start's model.
pub(super) struct StartModel {
    pub chat_template: bool,
    /// A Qwen2.5-VL model (image rows allowed, LoRA only).
    pub vlm: bool,
}

/// Start models, and every stage's data against each start.
pub(super) fn check_inputs(c: &mut Checker, merged: &[toml::Table]) {
    let src = c.src;
    let r = &src.recipe;
    if r.output.exists() && !r.output.is_dir() {
        c.at("", 0, "output", format!("output = {:?} is a file, not a folder for the runs", r.output.display().to_string()));
    }
    // Starts: model folders and tokenizers.
    let starts_info: Vec<Option<StartModel>> = r.start.iter().enumerate().map(|(i, s)| check_model(c, i, &s.model)).collect();
    // Data files and their rows.
    let needs: Vec<DataNeeds> = r.stage.iter().enumerate().map(|(i, st)| check_data(c, i, st, &merged[i])).collect();
    for (i, s) in r.start.iter().enumerate() {
        let Some(info) = &starts_info[i] else { continue };
        for (j, st) in r.stage.iter().enumerate() {
            if needs[j].chat && !info.chat_template {
                c.at("stage", j, "data", format!(
                    "stage `{}`: the data has {{\"messages\"}} rows but the tokenizer of start `{}` ({}) has no chat_template",
                    st.name, s.name, s.model
                ));
            }
            if needs[j].images && !info.vlm {
                c.at("stage", j, "data", format!(
                    "stage `{}`: the data has image rows but start `{}` ({}) is a text-only model; use a Qwen2.5-VL model",
                    st.name, s.name, s.model
                ));
            }
            let full = merged[j].get("full").and_then(|v| v.as_bool()) == Some(true);
            if full && info.vlm && matches!(st.kind, StageKind::Sft | StageKind::Dpo) {
                c.at("stage", j, "full", format!(
                    "stage `{}`: full = true, but start `{}` ({}) is a Qwen2.5-VL model, which trains LoRA adapters only (drop full; lora_vision adds the vision blocks)",
                    st.name, s.name, s.model
                ));
            }
        }
    }
}

/// Types of the merged keys, each error at its own key.
fn check_types(c: &mut Checker, i: usize, st: &Stage, t: &toml::Table) {
    fn one<T: serde::de::DeserializeOwned>(t: &toml::Table) -> std::result::Result<(), String> {
        toml::Value::Table(t.clone()).try_into::<T>().map(|_| ()).map_err(|e| e.message().trim().to_string())
    }
    let check = |t: &toml::Table| match st.kind {
        StageKind::Sft => one::<SftArgs>(t),
        StageKind::Dpo => one::<DpoArgs>(t),
        StageKind::Pairs => one::<PairsArgs>(t),
        StageKind::Eval => one::<EvalArgs>(t),
        StageKind::Merge => one::<MergeArgs>(t),
    };
    if check(t).is_ok() {
        return;
    }
    for (k, v) in t {
        let single: toml::Table = [(k.clone(), v.clone())].into_iter().collect();
        if let Err(e) = check(&single) {
            let table = if st.options.contains_key(k) { ("stage", i) } else { ("defaults", 0) };
            c.at(table.0, table.1, k, format!("stage `{}`: key `{k}`: {e}", st.name));
        }
    }
}

/// Checks a start's model folder (local ones only: `hf://` models are fetched at run time):
/// its config (text or Qwen2.5-VL) and that its tokenizer fits it.
fn check_model(c: &mut Checker, i: usize, spec: &str) -> Option<StartModel> {
    let source = match ladder_model::ModelSource::parse(spec) {
        Ok(s) => s,
        Err(e) => {
            c.at("start", i, "model", format!("model: {e}"));
            return None;
        }
    };
    let ladder_model::ModelSource::Local(dir) = source else { return None };
    if !dir.is_dir() {
        c.at("start", i, "model", format!("model folder {} does not exist", dir.display()));
        return None;
    }
    let vlm = ladder_model::vlm::is_vlm(&dir);
    if vlm {
        if let Err(e) = ladder_train::vlm::check_folder(&dir) {
            c.at("start", i, "model", format!("model {}: {e}", dir.display()));
            return None;
        }
    }
    let config_path = dir.join("config.json");
    let vocab = if vlm {
        ladder_model::VlmConfig::from_file(&config_path).map(|c| c.text.vocab_size)
    } else {
        ladder_model::DecoderConfig::from_file(&config_path).map(|c| c.vocab_size)
    };
    let vocab_size = match vocab {
        Ok(v) => v,
        Err(e) => {
            c.at("start", i, "model", format!("model {}: {e}", dir.display()));
            return None;
        }
    };
    match ladder_data::Tokenizer::from_dir(&dir) {
        Ok(tok) => {
            if tok.vocab_size() > vocab_size {
                c.at("start", i, "model", format!(
                    "tokenizer in {} has {} tokens but the model's vocab_size is {}: they do not belong together",
                    dir.display(),
                    tok.vocab_size(),
                    vocab_size
                ));
            }
            Some(StartModel { chat_template: tok.has_chat_template(), vlm })
        }
        Err(e) => {
            c.at("start", i, "model", format!("model {}: {e}", dir.display()));
            None
        }
    }
}

/// Rows read from the head of a data file (`ladder_data::read_rows` for Parquet).
const HEAD_ROWS: usize = 50;

fn head_rows(path: &Path) -> std::result::Result<Vec<(usize, Value)>, String> {
    let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if is_parquet {
        let ds = ladder_data::read_rows(path, &Default::default()).map_err(|e| e.to_string())?;
        return Ok(ds.rows.into_iter().take(HEAD_ROWS).map(|r| (r.origin.line, row_json(&r.value))).collect());
    }
    let mut out = Vec::new();
    for (line, value) in ladder_data::head_json_lines(path, HEAD_ROWS).map_err(|e| e.to_string())? {
        out.push((line, value.map_err(|e| format!("line {line}: {e}"))?));
    }
    Ok(out)
}

/// The JSON shape of a parsed row (enough to re-check its kind).
fn row_json(row: &Row) -> Value {
    match row {
        Row::Text { .. } => json!({"text": ""}),
        Row::Completion { .. } => json!({"prompt": "", "completion": ""}),
        Row::Messages { .. } => json!({"messages": [{"role": "user", "content": ""}]}),
        Row::Preference { .. } => json!({"prompt": "", "chosen": "", "rejected": ""}),
    }
}

/// What a stage's data asks of the model.
#[derive(Default)]
struct DataNeeds {
    /// Conversational rows: the tokenizer needs a chat template.
    chat: bool,
    /// Rows with images: the model must be a vision-language one.
    images: bool,
}

/// Checks that every data file exists and its first rows have the columns the kind needs.
fn check_data(c: &mut Checker, i: usize, st: &Stage, t: &toml::Table) -> DataNeeds {
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(toml::Value::Array(a)) = t.get("data") {
        files.extend(a.iter().filter_map(|v| v.as_str()).map(|s| (PathBuf::from(s), "data")));
    }
    if let Some(p) = &st.pairs {
        if Path::new(p).is_file() {
            files.push((PathBuf::from(p), "pairs"));
        }
    }
    let predictions = t.get("predictions").and_then(|v| v.as_str()).map(PathBuf::from);
    match st.kind {
        StageKind::Sft if files.is_empty() => c.at("stage", i, "name", format!("stage `{}`: an sft stage needs `data`", st.name)),
        StageKind::Dpo if files.is_empty() && st.pairs.is_none() => {
            c.at("stage", i, "name", format!("stage `{}`: a dpo stage needs `pairs` (a pairs stage or a file) or `data`", st.name))
        }
        StageKind::Dpo if st.pairs.is_some() && t.contains_key("data") => {
            c.at("stage", i, "pairs", format!("stage `{}`: give `pairs` or `data`, not both", st.name))
        }
        StageKind::Pairs if files.is_empty() => c.at("stage", i, "name", format!("stage `{}`: a pairs stage needs `data` (prompts with references)", st.name)),
        StageKind::Eval if files.is_empty() && predictions.is_none() => {
            c.at("stage", i, "name", format!("stage `{}`: an eval stage needs `data` (test rows with references) or `predictions`", st.name))
        }
        _ => {}
    }
    let mut chat = false;
    let mut images = false;
    for (file, key) in files {
        if !file.is_file() {
            c.at("stage", i, key, format!("stage `{}`: data file {} does not exist", st.name, file.display()));
            continue;
        }
        let rows = match head_rows(&file) {
            Ok(r) => r,
            Err(e) => {
                c.at("stage", i, key, format!("stage `{}`: {}: {e}", st.name, file.display()));
                continue;
            }
        };
        for (line, v) in rows {
            images |= v.get("image").is_some_and(|i| !i.is_null()) || v.get("images").is_some_and(|i| !i.is_null());
            let bad = match st.kind {
                StageKind::Sft | StageKind::Dpo => match ladder_data::parse_row(&v) {
                    Err(e) => Some(e),
                    Ok(Row::Preference { .. }) if st.kind == StageKind::Sft => Some(
                        "a preference row {\"prompt\",\"chosen\",\"rejected\"}: an sft stage needs {\"prompt\",\"completion\"}, {\"messages\"} or {\"text\"}"
                            .into(),
                    ),
                    Ok(Row::Preference { prompt, .. }) => {
                        chat |= matches!(prompt, ladder_data::Prompt::Messages(_));
                        None
                    }
                    Ok(_) if st.kind == StageKind::Dpo => Some(
                        "not a preference row: a dpo stage needs {\"prompt\",\"chosen\",\"rejected\"}".into(),
                    ),
                    Ok(row) => {
                        chat |= matches!(row, Row::Messages { .. } | Row::Completion { prompt: ladder_data::Prompt::Messages(_), .. });
                        None
                    }
                },
                _ => (v.get("prompt").is_none() || (v.get("reference").is_none() && v.get("completion").is_none()))
                    .then(|| "a row needs \"prompt\" and its reference (\"completion\" or \"reference\")".to_string()),
            };
            if let Some(why) = bad {
                c.at("stage", i, key, format!("stage `{}`: {}:{line}: {why}", st.name, file.display()));
                break;
            }
        }
    }
    if let Some(p) = predictions {
        match ladder_eval::read_predictions(&p) {
            Ok(_) => {}
            Err(e) => c.at("stage", i, "predictions", format!("stage `{}`: {e}", st.name)),
        }
    }
    DataNeeds { chat, images }
}
