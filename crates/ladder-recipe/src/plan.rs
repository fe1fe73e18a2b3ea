//! Validation and planning: a parsed recipe becomes, for every start, its stages in dependency
//! order, each with its resolved job (the same [`SftJob`] / [`DpoJob`] `ladder sft`/`ladder dpo`
//! build, through [`ladder_train::options`]), its output folder, a fingerprint of every input
//! and whether it is up to date. Everything checkable without training is checked here, and
//! every problem is reported with the file, line and column of the key at fault.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use ladder_data::Row;
use ladder_model::LoraSettings;
use ladder_train::dpo::{DpoJob, ReferenceKind};
use ladder_train::options::{self, DpoArgs, SftArgs};
use ladder_train::sft::SftJob;
use ladder_train::Method;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Problem, RecipeError, Result};
use crate::fingerprint;
use crate::manifest::{Manifest, Status};
use crate::schema::{EvalOptions, PairsOptions, RecipeSource, SlurmConfig, Stage, StageKind};

/// Keys a recipe sets itself: a stage's model comes from `from`, its output folder from the
/// recipe, resuming and overwriting are the runner's business.
const RESERVED: [&str; 5] = ["model", "adapter", "out", "resume", "overwrite"];

/// `pairs` stage work (runs once generation is in this build).
#[derive(Clone, Debug, Serialize)]
pub struct PairsJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub data: Vec<PathBuf>,
    pub samples: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub seed: u64,
    pub out: PathBuf,
}

/// `eval` stage work.
#[derive(Clone, Debug, Serialize)]
pub struct EvalJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub data: Vec<PathBuf>,
    pub predictions: Option<PathBuf>,
    pub max_new_tokens: usize,
    pub price_per_hour: Option<f64>,
    pub pages_per_s: Option<f64>,
    pub out: PathBuf,
}

/// `merge` stage work: fold `adapter` into `model`, write a full checkpoint in `out`.
#[derive(Clone, Debug, Serialize)]
pub struct MergeJob {
    pub model: String,
    pub adapter: PathBuf,
    pub out: PathBuf,
}

/// What a stage does, resolved.
#[derive(Clone, Debug)]
pub enum Work {
    Sft(SftJob),
    Dpo(DpoJob),
    Merge(MergeJob),
    Pairs(PairsJob),
    Eval(EvalJob),
}

impl Work {
    /// The resolved configuration, as written in `manifest.json`.
    pub fn config(&self) -> Value {
        match self {
            Work::Sft(j) => serde_json::to_value(j),
            Work::Dpo(j) => serde_json::to_value(j),
            Work::Merge(j) => serde_json::to_value(j),
            Work::Pairs(j) => serde_json::to_value(j),
            Work::Eval(j) => serde_json::to_value(j),
        }
        .expect("serialisable")
    }
}

/// Whether a stage must run.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// A completed output with the same fingerprint exists.
    UpToDate,
    /// An interrupted run with the same fingerprint left this checkpoint.
    Resume(PathBuf),
    /// Must run, for this reason.
    Run(&'static str),
}

#[derive(Clone, Debug)]
pub struct PlannedStage {
    pub name: String,
    pub kind: StageKind,
    /// Parent stage name, or `start`.
    pub from: String,
    pub level: Option<u32>,
    /// Stages whose outputs this one reads (`from`, and a DPO stage's `pairs` stage).
    pub parents: Vec<String>,
    pub dir: PathBuf,
    pub work: Work,
    pub inputs: Vec<Value>,
    pub fingerprint: String,
    pub state: State,
}

#[derive(Clone, Debug)]
pub struct StartPlan {
    pub name: String,
    pub model: String,
    pub level: Option<u32>,
    /// In dependency order.
    pub stages: Vec<PlannedStage>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub file: PathBuf,
    pub name: String,
    /// `<output>/<name>`.
    pub run_dir: PathBuf,
    /// The output root the plan was made for (the recipe's, or `--output`).
    pub output: PathBuf,
    pub starts: Vec<StartPlan>,
    pub slurm: SlurmConfig,
}

impl Plan {
    /// The plan as text: the DAG per start, and what would run.
    pub fn describe(&self) -> String {
        let mut s = format!("recipe {} → {}\n", self.name, self.run_dir.display());
        for start in &self.starts {
            s.push_str(&format!("start {} ({})\n", start.name, start.model));
            for st in &start.stages {
                let depth = self.depth(start, &st.name);
                let level = st.level.map(|l| format!(" [level {l}]")).unwrap_or_default();
                let what = match &st.state {
                    State::UpToDate => "up to date".to_string(),
                    State::Resume(ck) => format!("would resume from {}", ck.display()),
                    State::Run(why) => format!("would run ({why})"),
                };
                s.push_str(&format!(
                    "  {}└─ {} ({}){level} ← {}: {what}  [{}]\n",
                    "   ".repeat(depth),
                    st.name,
                    st.kind.as_str(),
                    st.parents.join(", ").if_empty("start"),
                    &st.fingerprint[..12]
                ));
            }
        }
        s
    }

    fn depth(&self, start: &StartPlan, stage: &str) -> usize {
        let mut d = 0;
        let mut cur = stage;
        while let Some(st) = start.stages.iter().find(|s| s.name == cur) {
            if st.from == "start" {
                break;
            }
            d += 1;
            cur = &st.from;
        }
        d
    }
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() { other.to_string() } else { self }
    }
}

/// What a stage's output is, for the stages that build on it.
#[derive(Clone, Debug)]
enum Produces {
    Adapter { base: String, adapter: PathBuf, lora: LoraSettings },
    Full { model: String },
    Pairs { file: PathBuf },
    Nothing,
}

/// The keys a kind accepts (beyond name/kind/from/level/pairs).
pub fn accepted_keys(kind: StageKind) -> Vec<String> {
    let keys = match kind {
        StageKind::Sft => options::valid_keys::<SftArgs>(),
        StageKind::Dpo => options::valid_keys::<DpoArgs>(),
        StageKind::Pairs => options::valid_keys::<PairsOptions>(),
        StageKind::Eval => options::valid_keys::<EvalOptions>(),
        StageKind::Merge => Vec::new(),
    };
    keys.into_iter().filter(|k| !RESERVED.contains(&k.as_str())).collect()
}

const KINDS: [StageKind; 5] = [StageKind::Sft, StageKind::Dpo, StageKind::Pairs, StageKind::Eval, StageKind::Merge];

struct Checker<'a> {
    src: &'a RecipeSource,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, table: &str, index: usize, key: &str, message: String) {
        let (line, column) = self.src.locator.key(table, index, key);
        self.problems.push(Problem { file: self.src.file.clone(), line, column, message });
    }
}

/// The run folder, `<output>/<name>`; `output` overrides the recipe's output root.
pub fn run_dir(src: &RecipeSource, output: Option<&Path>) -> PathBuf {
    output.unwrap_or(&src.recipe.output).join(&src.recipe.name)
}

/// Checks the recipe and plans it; `output` overrides the recipe's output root.
pub fn plan(src: &RecipeSource, output: Option<&Path>) -> Result<Plan> {
    plan_in(src, output, run_dir(src, output))
}

/// [`plan`] into another run folder (one seed's folder, [`crate::seeds`]).
pub fn plan_in(src: &RecipeSource, output: Option<&Path>, run_dir: PathBuf) -> Result<Plan> {
    let r = &src.recipe;
    let mut c = Checker { src, problems: Vec::new() };
    let output = output.map(Path::to_path_buf).unwrap_or_else(|| r.output.clone());
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
            let hint = options::closest(key, &all_keys).map(|b| format!(" (did you mean `{b}`?)")).unwrap_or_default();
            c.at("defaults", 0, key, format!("[defaults]: unknown key `{key}`{hint}"));
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
                let hint = options::closest(key, &accepted).map(|b| format!(" (did you mean `{b}`?)")).unwrap_or_default();
                c.at("stage", i, key, format!("stage `{}` (kind {}): unknown key `{key}`{hint}", st.name, st.kind.as_str()));
            }
        }
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
    if !c.problems.is_empty() {
        return Err(RecipeError::Invalid(c.problems));
    }
    // Order, cycles.
    let order = match topo_order(&r.stage) {
        Ok(o) => o,
        Err(cycle) => {
            let first = index[cycle[0].as_str()];
            c.at("stage", first, "from", format!("stages form a cycle: {}", cycle.join(" → ")));
            return Err(RecipeError::Invalid(c.problems));
        }
    };
    // Each stage's merged keys, typed options, and data checks (once per stage).
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
        check_types(&mut c, i, st, &t);
        merged.push(t);
    }
    if !c.problems.is_empty() {
        return Err(RecipeError::Invalid(c.problems));
    }
    // Starts: model folders and tokenizers.
    let starts_info: Vec<Option<StartModel>> = r.start.iter().enumerate().map(|(i, s)| check_model(&mut c, i, &s.model)).collect();
    // Data files and their rows.
    let needs: Vec<DataNeeds> = r.stage.iter().enumerate().map(|(i, st)| check_data(&mut c, i, st, &merged[i])).collect();
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
    // Per start: resolve every stage against what its parent produces.
    let mut hashes = fingerprint::Cache::default();
    let mut starts = Vec::new();
    for (si, s) in r.start.iter().enumerate() {
        let mut produced: HashMap<String, (Produces, String)> = HashMap::new();
        let mut stages = Vec::new();
        let start_fp = hashes.model(&s.model);
        for &i in &order {
            let st = &r.stage[i];
            let dir = run_dir.join(&s.name).join(&st.name);
            let (parent, parent_input) = if st.from == "start" {
                (Produces::Full { model: s.model.clone() }, json!({"start": s.name, "model": s.model, "fingerprint": start_fp}))
            } else {
                match produced.get(&st.from) {
                    Some((p, fp)) => (p.clone(), json!({"stage": st.from, "fingerprint": fp})),
                    None => continue, // the parent failed to resolve: already reported
                }
            };
            let mut inputs = vec![json!({"code": crate::CODE_VERSION}), parent_input];
            let mut parents = vec![];
            if st.from != "start" {
                parents.push(st.from.clone());
            }
            let resolved = resolve(&mut c, i, st, &merged[i], &parent, &dir, &run_dir, &produced, &mut inputs, &mut parents);
            let _ = si;
            let Some((work, produces)) = resolved else { continue };
            for file in data_files(&work) {
                // Files another stage writes are covered by that stage's fingerprint.
                if file.is_file() && !file.starts_with(&run_dir) {
                    inputs.push(json!({"data": file, "sha256": hashes.file(&file)}));
                }
            }
            let config = work.config();
            let fp = fingerprint::of(st.kind.as_str(), &config, &inputs);
            let state = state_of(&dir, &fp);
            produced.insert(st.name.clone(), (produces, fp.clone()));
            stages.push(PlannedStage {
                name: st.name.clone(),
                kind: st.kind,
                from: st.from.clone(),
                level: st.level,
                parents,
                dir,
                work,
                inputs,
                fingerprint: fp,
                state,
            });
        }
        starts.push(StartPlan { name: s.name.clone(), model: s.model.clone(), level: s.level, stages });
    }
    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        c.problems.dedup();
        return Err(RecipeError::Invalid(c.problems));
    }
    // A child of a stage that must run must run too, even if an old output matches.
    for start in &mut starts {
        let mut rerun: Vec<String> = Vec::new();
        for st in &mut start.stages {
            if st.state == State::UpToDate && st.parents.iter().any(|p| rerun.contains(p)) {
                st.state = State::Run("a parent re-runs");
            }
            if st.state != State::UpToDate {
                rerun.push(st.name.clone());
            }
        }
    }
    Ok(Plan {
        file: src.file.clone(),
        name: r.name.clone(),
        run_dir,
        output,
        starts,
        slurm: r.slurm.clone().unwrap_or_default(),
    })
}

/// Stages in dependency order (declaration order among independent ones), or a cycle.
fn topo_order(stages: &[Stage]) -> std::result::Result<Vec<usize>, Vec<String>> {
    let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let deps = |s: &Stage| -> Vec<usize> {
        let mut d: Vec<usize> = index.get(s.from.as_str()).into_iter().copied().collect();
        if let Some(p) = s.pairs.as_deref().and_then(|p| index.get(p)) {
            d.push(*p);
        }
        d
    };
    let mut state = vec![0u8; stages.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::new();
    fn visit(
        i: usize,
        stages: &[Stage],
        deps: &dyn Fn(&Stage) -> Vec<usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> std::result::Result<(), Vec<String>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|&p| stages[p].name.clone()).collect();
                cycle.push(stages[i].name.clone());
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for d in deps(&stages[i]) {
            visit(d, stages, deps, state, order, path)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..stages.len() {
        visit(i, stages, &deps, &mut state, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// Types of the merged keys, each error at its own key.
fn check_types(c: &mut Checker, i: usize, st: &Stage, t: &toml::Table) {
    fn one<T: serde::de::DeserializeOwned>(t: &toml::Table) -> std::result::Result<(), String> {
        toml::Value::Table(t.clone()).try_into::<T>().map(|_| ()).map_err(|e| e.message().trim().to_string())
    }
    let check = |t: &toml::Table| match st.kind {
        StageKind::Sft => one::<SftArgs>(t),
        StageKind::Dpo => one::<DpoArgs>(t),
        StageKind::Pairs => one::<PairsOptions>(t),
        StageKind::Eval => one::<EvalOptions>(t),
        StageKind::Merge => Ok(()),
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

/// What the stages need to know about a start's model.
struct StartModel {
    chat_template: bool,
    /// A Qwen2.5-VL model (image rows allowed, LoRA only).
    vlm: bool,
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
    let vlm = ladder_train::vlm::is_vlm(&dir);
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
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("line {}: malformed JSON: {e}", n + 1))?;
        out.push((n + 1, v));
        if out.len() == HEAD_ROWS {
            break;
        }
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

/// The key a resolver message is about: `--lr must be…` → `lr`.
fn flag_key(message: &str) -> Option<String> {
    let rest = &message[message.find("--")? + 2..];
    let flag: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    Some(flag.replace('-', "_"))
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    c: &mut Checker,
    i: usize,
    st: &Stage,
    t: &toml::Table,
    parent: &Produces,
    dir: &Path,
    run_dir: &Path,
    produced: &HashMap<String, (Produces, String)>,
    inputs: &mut Vec<Value>,
    parents: &mut Vec<String>,
) -> Option<(Work, Produces)> {
    let locate_key = |k: &str| if st.options.contains_key(k) { ("stage", i) } else if t.contains_key(k) { ("defaults", 0) } else { ("stage", i) };
    let fail = |c: &mut Checker, key: &str, msg: String| {
        let (table, idx) = locate_key(key);
        c.at(table, idx, key, format!("stage `{}`: {msg}", st.name));
    };
    let value = Value::from(toml_to_json(t));
    // The model this stage starts from.
    let (model, adapter, parent_lora) = match parent {
        Produces::Adapter { base, adapter, lora } => (base.clone(), Some(adapter.clone()), Some(lora.clone())),
        Produces::Full { model } => (model.clone(), None, None),
        Produces::Pairs { .. } | Produces::Nothing => {
            fail(c, "from", format!("from = {:?} is a stage that produces no model (a pairs or eval stage)", st.from));
            return None;
        }
    };
    let resolver_error = |c: &mut Checker, e: ladder_train::TrainError| {
        let msg = e.to_string();
        let key = flag_key(&msg).unwrap_or_else(|| "name".into());
        let pretty = msg.replace("--", "");
        let (table, idx) = locate_key(&key);
        c.at(table, idx, &key, format!("stage `{}`: {pretty}", st.name));
    };
    match st.kind {
        StageKind::Sft | StageKind::Dpo => {
            if let Some(p) = &parent_lora {
                if t.get("full").and_then(|v| v.as_bool()) == Some(true) {
                    fail(c, "full", format!(
                        "full = true, but stage `{}` produced a LoRA adapter (r = {}): add a merge stage between them (kind = \"merge\"), or drop full to keep training the adapter",
                        st.from, p.r
                    ));
                    return None;
                }
                let diffs: Vec<String> = [
                    ("lora_r", t.get("lora_r").and_then(|v| v.as_integer()).map(|x| x as f64), Some(p.r as f64)),
                    ("lora_alpha", t.get("lora_alpha").and_then(|v| v.as_float().or(v.as_integer().map(|x| x as f64))), Some(p.alpha)),
                ]
                .into_iter()
                .filter(|(_, got, want)| got.is_some() && got != want)
                .map(|(k, got, want)| format!("{k} = {} but the adapter of stage `{}` has {}", got.unwrap(), st.from, want.unwrap()))
                .collect();
                let rs = t.get("rslora").and_then(|v| v.as_bool());
                let tg = t.get("lora_targets").and_then(|v| v.as_str()).map(LoraSettings::parse_targets);
                let mut diffs = diffs;
                if rs.is_some_and(|x| x != p.rslora) {
                    diffs.push(format!("rslora = {} but the adapter of stage `{}` has {}", rs.unwrap(), st.from, p.rslora));
                }
                if let Some(Ok(mut targets)) = tg {
                    let (mut a, b) = (p.targets.clone(), &mut targets);
                    a.sort();
                    b.sort();
                    if a != *b {
                        diffs.push(format!("lora_targets differ from the adapter of stage `{}` ({})", st.from, p.targets.join(",")));
                    }
                }
                if let Some(d) = diffs.first() {
                    let key = d.split(' ').next().unwrap_or("lora_r").to_string();
                    fail(c, &key, format!("{d}: a stage continuing an adapter keeps its shape; drop the key, or merge first"));
                    return None;
                }
            }
            if st.kind == StageKind::Sft {
                let mut args: SftArgs = serde_json::from_value(value).ok()?;
                args.train.model = Some(model.clone());
                args.train.adapter = adapter.clone();
                args.train.out = Some(dir.to_path_buf());
                let mut job = match options::resolve_sft(args) {
                    Ok(j) => j,
                    Err(e) => {
                        resolver_error(c, e);
                        return None;
                    }
                };
                if let Some(p) = parent_lora {
                    job.stage.method = Method::Lora(p);
                }
                let produces = trained(&model, adapter.is_some(), &job.stage.method, dir, parent);
                Some((Work::Sft(job), produces))
            } else {
                let mut args: DpoArgs = serde_json::from_value(value).ok()?;
                if args.reference.as_deref() == Some("adapter-off") && parent_lora.is_some() {
                    fail(c, "reference", format!(
                        "reference = \"adapter-off\" after stage `{}`, which produced a LoRA adapter: switching the adapter off would make the raw base model the reference, \
                         not the {} model this stage continues (DPO then reports loss ≈ 0 and accuracy 1 within a few steps); use reference = \"frozen\" or \"precomputed\"",
                        st.from,
                        st.from
                    ));
                    return None;
                }
                if let Some(p) = &st.pairs {
                    let file = match produced.get(p) {
                        Some((Produces::Pairs { file }, fp)) => {
                            inputs.push(json!({"stage": p, "fingerprint": fp}));
                            parents.push(p.clone());
                            file.clone()
                        }
                        _ => PathBuf::from(p),
                    };
                    args.train.data = Some(vec![file]);
                }
                args.train.model = Some(model.clone());
                args.train.adapter = adapter.clone();
                args.train.out = Some(dir.to_path_buf());
                if args.reference_cache.is_none() {
                    args.reference_cache = Some(run_dir.join("reference-cache"));
                }
                let mut job = match options::resolve_dpo(args) {
                    Ok(j) => j,
                    Err(e) => {
                        resolver_error(c, e);
                        return None;
                    }
                };
                if let Some(p) = parent_lora {
                    job.stage.method = Method::Lora(p);
                }
                debug_assert!(!(job.dpo.reference == ReferenceKind::AdapterOff && adapter.is_some()));
                let produces = trained(&model, adapter.is_some(), &job.stage.method, dir, parent);
                Some((Work::Dpo(job), produces))
            }
        }
        StageKind::Merge => {
            let Some(adapter) = adapter else {
                fail(c, "from", format!("a merge stage folds a LoRA adapter into its base, but from = {:?} produced full weights", st.from));
                return None;
            };
            let job = MergeJob { model, adapter, out: dir.to_path_buf() };
            Some((Work::Merge(job), Produces::Full { model: dir.to_string_lossy().into_owned() }))
        }
        StageKind::Pairs => {
            let o: PairsOptions = serde_json::from_value(value).ok()?;
            let job = PairsJob {
                model,
                adapter,
                data: o.data.unwrap_or_default(),
                samples: o.samples.unwrap_or(4),
                max_new_tokens: o.max_new_tokens.unwrap_or(512),
                temperature: o.temperature.unwrap_or(1.0),
                seed: o.seed.unwrap_or(42),
                out: dir.to_path_buf(),
            };
            if job.samples == 0 || job.max_new_tokens == 0 {
                fail(c, if job.samples == 0 { "samples" } else { "max_new_tokens" }, "samples and max_new_tokens must be at least 1".into());
                return None;
            }
            if !(job.temperature >= 0.0 && job.temperature.is_finite()) {
                fail(c, "temperature", format!("temperature must be a non-negative number, got {}", job.temperature));
                return None;
            }
            Some((Work::Pairs(job), Produces::Pairs { file: dir.join("pairs.jsonl") }))
        }
        StageKind::Eval => {
            let o: EvalOptions = serde_json::from_value(value).ok()?;
            if let Some(x) = o.price_per_hour.filter(|x| !(*x >= 0.0 && x.is_finite())) {
                fail(c, "price_per_hour", format!("price_per_hour must be a non-negative number, got {x}"));
                return None;
            }
            if let Some(x) = o.pages_per_s.filter(|x| !(*x > 0.0 && x.is_finite())) {
                fail(c, "pages_per_s", format!("pages_per_s must be a positive number, got {x}"));
                return None;
            }
            let job = EvalJob {
                model,
                adapter,
                data: o.data.unwrap_or_default(),
                predictions: o.predictions,
                max_new_tokens: o.max_new_tokens.unwrap_or(1024),
                price_per_hour: o.price_per_hour,
                pages_per_s: o.pages_per_s,
                out: dir.to_path_buf(),
            };
            Some((Work::Eval(job), Produces::Nothing))
        }
    }
}

/// What a training stage leaves for its children.
fn trained(model: &str, continued: bool, method: &Method, dir: &Path, parent: &Produces) -> Produces {
    match method {
        Method::Full => Produces::Full { model: dir.to_string_lossy().into_owned() },
        Method::Lora(lora) => {
            let base = match (continued, parent) {
                (true, Produces::Adapter { base, .. }) => base.clone(),
                _ => model.to_string(),
            };
            Produces::Adapter { base, adapter: dir.to_path_buf(), lora: lora.clone() }
        }
    }
}

/// Files a stage reads that no other stage produces (fingerprinted by content).
fn data_files(work: &Work) -> Vec<PathBuf> {
    match work {
        Work::Sft(j) => j.stage.data.clone(),
        Work::Dpo(j) => j.stage.data.clone(),
        Work::Merge(_) => vec![],
        Work::Pairs(j) => j.data.clone(),
        Work::Eval(j) => j.data.iter().cloned().chain(j.predictions.clone()).collect(),
    }
}

fn toml_to_json(t: &toml::Table) -> serde_json::Map<String, Value> {
    serde_json::to_value(t).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()
}

/// Up to date, resumable or to run, from the stage folder's manifest.
fn state_of(dir: &Path, fp: &str) -> State {
    let Some(m) = Manifest::read(dir).ok().flatten() else {
        return State::Run("new");
    };
    if m.fingerprint != fp {
        return State::Run("inputs changed");
    }
    match m.status {
        Status::Completed => State::UpToDate,
        _ => match ladder_train::checkpoint::find(dir) {
            Ok(ck) => State::Resume(ck),
            Err(_) => State::Run("interrupted before its first checkpoint"),
        },
    }
}

/// Stage levels by name, for reports.
pub fn levels(plan: &StartPlan) -> BTreeMap<String, Option<u32>> {
    plan.stages.iter().map(|s| (s.name.clone(), s.level)).collect()
}

#[cfg(test)]
mod tests {
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
        fails(&recipe(|t| t.replace("from = \"start\"", "from = \"start\"\nlr = -1.0")), 14, "stage `sft`: lr must be a positive number, got -1");
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
        fails(&recipe(|t| t.replace("from = \"sft\"", "from = \"sft\"\nfull = true")), 20, "full = true, but stage `sft` produced a LoRA adapter (r = 4): add a merge stage");
    }

    #[test]
    fn adapter_shape_must_match_when_continuing() {
        fails(&recipe(|t| t.replace("from = \"sft\"", "from = \"sft\"\nlora_r = 8")), 20, "lora_r = 8 but the adapter of stage `sft` has 4");
    }

    #[test]
    fn adapter_off_reference_after_an_adapter_is_refused() {
        fails(
            &recipe(|t| t.replace("from = \"sft\"", "from = \"sft\"\nreference = \"adapter-off\"")),
            20,
            "reference = \"adapter-off\" after stage `sft`, which produced a LoRA adapter: switching the adapter off would make the raw base model the reference",
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
}
