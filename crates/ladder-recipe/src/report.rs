//! `ladder status` and `ladder compare`: read run folders (`run.json`, each stage's
//! `manifest.json` and `eval.json`, `slurm/jobs.json`) and report. Nothing here trains or needs
//! the recipe. A seeded run ([`crate::seeds`]) is read seed folder by seed folder; `compare`
//! gives every number as its mean and spread over seeds ([`crate::stats`]) and says which
//! differences are larger than that spread ([`crate::findings`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{io, RecipeError, Result};
use crate::findings::{self, Finding};
use crate::manifest::Manifest;
use crate::schema::StageKind;
use crate::seeds;
use crate::stats::{Pages, Spread};

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| RecipeError::Manifest { path: path.to_path_buf(), message: e.to_string() })
}

/// A stage as `run.json` lists it.
#[derive(Clone, Debug, Deserialize)]
struct StageEntry {
    name: String,
    kind: StageKind,
    from: String,
    level: Option<u32>,
}

/// A start and its stages, in order, as `run.json` lists them.
#[derive(Clone, Debug, Deserialize)]
struct StartEntry {
    name: String,
    level: Option<u32>,
    stages: Vec<StageEntry>,
}

#[derive(Deserialize)]
struct RunJson {
    starts: Vec<StartEntry>,
}

fn layout(run_dir: &Path) -> Result<Vec<StartEntry>> {
    let path = run_dir.join("run.json");
    let v = read_json(&path)?;
    serde_json::from_value::<RunJson>(v).map(|r| r.starts).map_err(|e| RecipeError::Manifest { path, message: e.to_string() })
}

#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    /// The seed's run, in a seeded run folder.
    pub seed: Option<u64>,
    pub start: String,
    pub stage: String,
    pub kind: StageKind,
    /// completed, running, failed, or "not started"; with Slurm, the job's state when known.
    pub status: String,
    pub duration_s: Option<f64>,
    pub final_loss: Option<f64>,
    pub slurm_job: Option<String>,
    pub slurm_state: Option<String>,
}

/// Every stage of a run (of every seed), from its manifests and, when the run was submitted,
/// `squeue`/`sacct`.
pub fn status(run_dir: &Path) -> Result<Vec<StageStatus>> {
    let mut rows = Vec::new();
    for (seed, dir) in seeds::runs_in(run_dir)? {
        rows.extend(status_of(&dir, seed)?);
    }
    Ok(rows)
}

fn status_of(run_dir: &Path, seed: Option<u64>) -> Result<Vec<StageStatus>> {
    let jobs: Vec<Value> = read_json(&run_dir.join("slurm").join("jobs.json")).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let mut latest: BTreeMap<(String, String), String> = BTreeMap::new();
    for j in &jobs {
        if let (Some(a), Some(b), Some(id)) = (j["start"].as_str(), j["stage"].as_str(), j["job_id"].as_str()) {
            latest.insert((a.into(), b.into()), id.into());
        }
    }
    let ids: Vec<String> = latest.values().cloned().collect();
    let states = crate::slurm::job_states(&ids);
    let mut rows = Vec::new();
    for start in layout(run_dir)? {
        for st in start.stages {
            let m = Manifest::read(&run_dir.join(&start.name).join(&st.name))?;
            let job = latest.get(&(start.name.clone(), st.name.clone())).cloned();
            rows.push(StageStatus {
                seed,
                status: m.as_ref().map(|m| format!("{:?}", m.status).to_lowercase()).unwrap_or_else(|| "not started".into()),
                duration_s: m.as_ref().and_then(|m| m.duration_s),
                final_loss: m.as_ref().and_then(|m| m.metrics.as_ref()).and_then(|x| x["summary"]["final_loss"].as_f64()),
                slurm_state: job.as_ref().and_then(|id| states.get(id).cloned()),
                slurm_job: job,
                start: start.name.clone(),
                stage: st.name,
                kind: st.kind,
            });
        }
    }
    Ok(rows)
}

pub fn status_table(rows: &[StageStatus]) -> String {
    let seeded = rows.iter().any(|r| r.seed.is_some());
    let seed_col = |s: &str| if seeded { format!("{s:<8} ") } else { String::new() };
    let mut s = format!(
        "{}{:<14} {:<14} {:<6} {:<12} {:>9} {:>10}  {}\n",
        seed_col("seed"),
        "start",
        "stage",
        "kind",
        "status",
        "time (s)",
        "loss",
        "slurm"
    );
    for r in rows {
        let slurm = match (&r.slurm_job, &r.slurm_state) {
            (Some(id), Some(st)) => format!("{id} {st}"),
            (Some(id), None) => id.clone(),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{}{:<14} {:<14} {:<6} {:<12} {:>9} {:>10}  {slurm}\n",
            seed_col(&r.seed.map(|x| x.to_string()).unwrap_or_default()),
            r.start,
            r.stage,
            r.kind.as_str(),
            r.status,
            r.duration_s.map(|d| format!("{d:.1}")).unwrap_or_else(|| "-".into()),
            r.final_loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "-".into()),
        ));
    }
    s
}

/// The three numbers `ladder compare` gives with their spread and compares in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The benchmark's composite score: of the `text` fields when the references are JSON
    /// pages (over the predictions that parsed; none when nothing parsed), else of the raw
    /// strings.
    Score,
    /// Share of pages flagged degenerate.
    Degeneration,
    /// Share of JSON-page references whose prediction is a complete JSON page.
    JsonValid,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Score, Metric::Degeneration, Metric::JsonValid];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Score => "score",
            Metric::Degeneration => "degeneration",
            Metric::JsonValid => "JSON validity",
        }
    }

    /// Rates print as percentages (and their differences as points).
    pub fn is_rate(self) -> bool {
        !matches!(self, Metric::Score)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One seed's evaluation of one model (or, for a model never evaluated, its training cost).
#[derive(Clone, Debug, Serialize)]
pub struct SeedResult {
    pub seed: Option<u64>,
    pub score: Option<f64>,
    pub degeneration_rate: Option<f64>,
    pub json_valid_rate: Option<f64>,
    pub pages_per_s: Option<f64>,
    pub cost_per_million_pages: Option<f64>,
    /// Training time and tokens of every completed training stage from the start to here.
    pub train_seconds: f64,
    pub train_tokens: u64,
    /// Per-page values of each [`Metric`], from `eval.json` (empty when it is missing).
    #[serde(skip)]
    pub pages: [Pages; 3],
}

impl SeedResult {
    pub fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Score => self.score,
            Metric::Degeneration => self.degeneration_rate,
            Metric::JsonValid => self.json_valid_rate,
        }
    }

    pub fn pages(&self, m: Metric) -> &Pages {
        &self.pages[m.index()]
    }
}

/// One model of one run in `ladder compare`: a start after a stage (or untuned), over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct CompareRow {
    /// The run it comes from (its recipe's name).
    pub run: String,
    pub start: String,
    pub level: Option<u32>,
    /// The stage whose model this row describes, or `start` for the untuned start.
    pub stage: String,
    /// That stage's kind; `None` for the untuned start.
    pub kind: Option<StageKind>,
    /// The eval stage that scored it, if any.
    pub eval_stage: Option<String>,
    /// The nearest evaluated model it was trained from (`start` for the untuned one).
    pub parent: Option<String>,
    pub score: Option<Spread>,
    pub degeneration_rate: Option<Spread>,
    pub json_valid_rate: Option<Spread>,
    pub pages_per_s: Option<Spread>,
    pub cost_per_million_pages: Option<Spread>,
    /// Means over seeds.
    pub train_seconds: f64,
    pub train_tokens: u64,
    pub per_seed: Vec<SeedResult>,
}

impl CompareRow {
    pub fn spread(&self, m: Metric) -> Option<&Spread> {
        match m {
            Metric::Score => self.score.as_ref(),
            Metric::Degeneration => self.degeneration_rate.as_ref(),
            Metric::JsonValid => self.json_valid_rate.as_ref(),
        }
    }

    /// The stage as a reader names it: `untuned` for the start itself.
    pub fn stage_label(&self) -> &str {
        if self.kind.is_none() { "untuned" } else { &self.stage }
    }

    /// The seeds with a value of `m`, with that value and its pages.
    pub fn seed_values(&self, m: Metric) -> BTreeMap<Option<u64>, (f64, Pages)> {
        self.per_seed.iter().filter_map(|r| Some((r.seed, (r.value(m)?, r.pages(m).clone())))).collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub run_dirs: Vec<PathBuf>,
    /// The seeds found in any run.
    pub seeds: Vec<u64>,
    pub rows: Vec<CompareRow>,
    /// The differences between rows, in words.
    pub findings: Vec<Finding>,
}

/// What identifies a row across seeds.
type RowKey = (String, Option<u32>, String, Option<String>);

/// One row of one seed's run, before the seeds are merged.
struct SeedRow {
    key: RowKey,
    kind: Option<StageKind>,
    parent: Option<String>,
    result: SeedResult,
}

/// Side by side: every evaluated model of every run folder, over its seeds; a level whose
/// models were never evaluated is stood for by its last model stage, with empty columns.
pub fn compare(run_dirs: &[PathBuf]) -> Result<Comparison> {
    let mut rows: Vec<CompareRow> = Vec::new();
    let mut all_seeds = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for run_dir in run_dirs {
        let top = read_json(&run_dir.join("run.json")).ok();
        let mut label = top.as_ref().and_then(|v| v["recipe"].as_str()).map(str::to_string).unwrap_or_else(|| run_dir.display().to_string());
        if labels.contains(&label) {
            label = run_dir.display().to_string();
        }
        labels.push(label.clone());
        let mut merged: Vec<(RowKey, Option<StageKind>, Option<String>, Vec<SeedResult>)> = Vec::new();
        for (seed, dir) in seeds::runs_in(run_dir)? {
            all_seeds.extend(seed);
            for r in seed_rows(&dir, seed)? {
                match merged.iter_mut().find(|m| m.0 == r.key) {
                    Some(m) => m.3.push(r.result),
                    None => merged.push((r.key, r.kind, r.parent, vec![r.result])),
                }
            }
        }
        for ((start, level, stage, eval_stage), kind, parent, per_seed) in merged {
            rows.push(merge_seeds(label.clone(), start, level, stage, kind, eval_stage, parent, per_seed));
        }
    }
    all_seeds.sort_unstable();
    all_seeds.dedup();
    let findings = findings::between(&rows);
    Ok(Comparison { run_dirs: run_dirs.to_vec(), seeds: all_seeds, rows, findings })
}

#[allow(clippy::too_many_arguments)]
fn merge_seeds(
    run: String,
    start: String,
    level: Option<u32>,
    stage: String,
    kind: Option<StageKind>,
    eval_stage: Option<String>,
    parent: Option<String>,
    per_seed: Vec<SeedResult>,
) -> CompareRow {
    let spread = |f: &dyn Fn(&SeedResult) -> Option<f64>, m: Option<Metric>| {
        let with: Vec<&SeedResult> = per_seed.iter().filter(|r| f(r).is_some()).collect();
        let values: Vec<f64> = with.iter().filter_map(|r| f(r)).collect();
        let pages: Vec<Pages> = match m {
            Some(m) if with.iter().all(|r| !r.pages(m).is_empty()) => with.iter().map(|r| r.pages(m).clone()).collect(),
            _ => Vec::new(),
        };
        Spread::of(&values, &pages)
    };
    let n = per_seed.len().max(1) as f64;
    CompareRow {
        score: spread(&|r| r.score, Some(Metric::Score)),
        degeneration_rate: spread(&|r| r.degeneration_rate, Some(Metric::Degeneration)),
        json_valid_rate: spread(&|r| r.json_valid_rate, Some(Metric::JsonValid)),
        pages_per_s: spread(&|r| r.pages_per_s, None),
        cost_per_million_pages: spread(&|r| r.cost_per_million_pages, None),
        train_seconds: per_seed.iter().map(|r| r.train_seconds).sum::<f64>() / n,
        train_tokens: (per_seed.iter().map(|r| r.train_tokens as f64).sum::<f64>() / n).round() as u64,
        run,
        start,
        level,
        stage,
        kind,
        eval_stage,
        parent,
        per_seed,
    }
}

/// The rows of one (seed's) run folder.
fn seed_rows(run_dir: &Path, seed: Option<u64>) -> Result<Vec<SeedRow>> {
    let mut rows = Vec::new();
    for start in layout(run_dir)? {
        let manifests: BTreeMap<&str, Option<Manifest>> = start
            .stages
            .iter()
            .map(|st| Ok((st.name.as_str(), Manifest::read(&run_dir.join(&start.name).join(&st.name))?)))
            .collect::<Result<_>>()?;
        let info: BTreeMap<&str, &StageEntry> = start.stages.iter().map(|st| (st.name.as_str(), st)).collect();
        // Cumulative training cost along the chain ending at `stage`.
        let chain_cost = |stage: &str| {
            let (mut secs, mut toks, mut cur) = (0.0, 0u64, stage);
            while let Some(st) = info.get(cur) {
                if matches!(st.kind, StageKind::Sft | StageKind::Dpo) {
                    if let Some(Some(m)) = manifests.get(cur) {
                        let summary = m.metrics.as_ref().map(|x| x["summary"].clone()).unwrap_or_default();
                        secs += summary["seconds"].as_f64().unwrap_or(0.0);
                        toks += summary["tokens"].as_u64().unwrap_or(0);
                    }
                }
                cur = &st.from;
            }
            (secs, toks)
        };
        let level_of = |stage: &str| -> Option<u32> {
            let mut cur = stage;
            loop {
                match info.get(cur) {
                    Some(StageEntry { level: Some(l), .. }) => return Some(*l),
                    Some(st) => cur = &st.from,
                    None => return start.level,
                }
            }
        };
        // The models an eval stage scored, for finding each model's evaluated ancestor.
        let evaluated_models: Vec<&str> = start
            .stages
            .iter()
            .filter(|st| st.kind == StageKind::Eval && matches!(manifests.get(st.name.as_str()), Some(Some(_))))
            .map(|st| st.from.as_str())
            .collect();
        let evaluated_parent = |model: &str| -> Option<String> {
            let mut cur = info.get(model)?.from.as_str();
            loop {
                if evaluated_models.contains(&cur) {
                    return Some(cur.to_string());
                }
                cur = info.get(cur)?.from.as_str();
            }
        };
        let base = |stage: &str| {
            let (train_seconds, train_tokens) = chain_cost(stage);
            SeedResult {
                seed,
                score: None,
                degeneration_rate: None,
                json_valid_rate: None,
                pages_per_s: None,
                cost_per_million_pages: None,
                train_seconds,
                train_tokens,
                pages: Default::default(),
            }
        };
        // One row per evaluated model (after SFT *and* after DPO of the same level, side by side).
        let mut evaluated: BTreeMap<Option<u32>, Vec<SeedRow>> = BTreeMap::new();
        for st in &start.stages {
            if st.kind != StageKind::Eval {
                continue;
            }
            let Some(Some(m)) = manifests.get(st.name.as_str()) else { continue };
            let Some(agg) = m.metrics.as_ref().map(|x| x["aggregate"].clone()).filter(|a| a.is_object()) else { continue };
            let level = st.level.or_else(|| level_of(&st.from));
            // JSON-page references: the benchmark scores the `text` field, so a model whose
            // output never parses has no score (not the raw-string score of other rows).
            let structured = agg["structured"].as_u64().unwrap_or(0) > 0;
            let result = SeedResult {
                score: if structured { agg["text_score"].as_f64() } else { agg["score"].as_f64() },
                degeneration_rate: agg["degeneration_rate"].as_f64(),
                json_valid_rate: agg["json_valid_rate"].as_f64(),
                pages_per_s: agg["pages_per_s"].as_f64(),
                cost_per_million_pages: agg["cost_per_million_pages"].as_f64(),
                pages: page_values(&run_dir.join(&start.name).join(&st.name).join("eval.json"), structured),
                ..base(&st.from)
            };
            evaluated.entry(level).or_default().push(SeedRow {
                key: (start.name.clone(), level, st.from.clone(), Some(st.name.clone())),
                kind: info.get(st.from.as_str()).map(|s| s.kind),
                parent: evaluated_parent(&st.from),
                result,
            });
        }
        let mut unevaluated: BTreeMap<Option<u32>, SeedRow> = BTreeMap::new();
        for st in &start.stages {
            if matches!(st.kind, StageKind::Sft | StageKind::Dpo | StageKind::Merge) && st.level.is_some() && !evaluated.contains_key(&st.level) {
                unevaluated.insert(st.level, SeedRow {
                    key: (start.name.clone(), st.level, st.name.clone(), None),
                    kind: Some(st.kind),
                    parent: None,
                    result: base(&st.name),
                });
            }
        }
        let mut by_level = evaluated;
        for (level, row) in unevaluated {
            by_level.insert(level, vec![row]);
        }
        rows.extend(by_level.into_values().flatten());
    }
    Ok(rows)
}

/// Per-page values of each [`Metric`] from an `eval.json`; empty when it cannot be read (the
/// row then has its aggregate without an interval).
fn page_values(path: &Path, text_scores: bool) -> [Pages; 3] {
    let Ok(report) = read_json(path).and_then(|v| {
        serde_json::from_value::<ladder_eval::EvalReport>(v).map_err(|e| RecipeError::Manifest { path: path.to_path_buf(), message: e.to_string() })
    }) else {
        return Default::default();
    };
    let rows = &report.rows;
    let flag = |b: Option<bool>| b.map(|b| f64::from(u8::from(b)));
    [
        rows.iter().map(|r| if text_scores { r.text_score } else { Some(r.metrics.score) }).collect(),
        rows.iter().map(|r| flag(r.degenerate)).collect(),
        rows.iter().map(|r| flag(r.json_valid)).collect(),
    ]
}

/// `0.093 (0.086–0.099)` over several seeds, `0.093` for one; rates as percentages.
pub fn format_spread(s: Option<&Spread>, rate: bool, digits: usize) -> String {
    let Some(s) = s else { return "—".into() };
    let f = |v: f64| if rate { format!("{:.digits$}%", v * 100.0) } else { format!("{v:.digits$}") };
    if s.seeds > 1 {
        format!("{} ({}–{})", f(s.mean), f(s.min), f(s.max))
    } else {
        f(s.mean)
    }
}

impl Comparison {
    fn multi_run(&self) -> bool {
        self.run_dirs.len() > 1
    }

    /// How to read the numbers: seeds, what the cells hold, what "larger than the spread" means.
    pub fn legend(&self) -> String {
        let seeds = match self.seeds.len() {
            0 => "one run per model (no seeds axis)".to_string(),
            1 => format!("seed {}", self.seeds[0]),
            n => format!("{n} seeds ({})", self.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
        };
        let pages = self.rows.iter().flat_map(|r| &r.per_seed).map(|r| r.pages[1].len()).max().unwrap_or(0);
        let mut s = format!(
            "{seeds}; {pages} test pages per evaluation. The score is the benchmark's composite score of the JSON `text` field, \
             over the pages whose output parsed as a JSON page (— where none did). Cells are the mean over seeds, with the minimum and maximum in brackets. \
             A difference counts as larger than the spread when it has the same sign on every seed and its 95% bootstrap interval \
             (seeds and test pages resampled, {} draws) excludes zero; ± is the standard deviation of the per-seed differences.",
            crate::stats::DRAWS
        );
        let valid: Vec<f64> = self.rows.iter().filter_map(|r| r.json_valid_rate.as_ref()).map(|v| v.max).collect();
        if !valid.is_empty() && valid.iter().all(|v| *v == 0.0) {
            s.push_str(
                " No model wrote a complete JSON page on any seed: the scores are those of fragments that parsed, near the floor, \
                 and differences between them say little about the pages.",
            );
        }
        s
    }

    /// The table as Markdown, then the differences in words (also what `ladder compare` prints).
    pub fn markdown(&self) -> String {
        let run = |s: &str| if self.multi_run() { format!("| {s} ") } else { String::new() };
        let mut s = format!(
            "{}| start | level | stage | eval | seeds | score | degeneration | JSON valid | pages/s | cost / M pages | train s | train tokens |\n\
             {}|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            run("run"),
            if self.multi_run() { "|---" } else { "" },
        );
        for r in &self.rows {
            s.push_str(&format!(
                "{}| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
                run(&r.run),
                r.start,
                r.level.map(|l| l.to_string()).unwrap_or_else(|| "—".into()),
                r.stage_label(),
                r.eval_stage.as_deref().unwrap_or("—"),
                r.per_seed.len(),
                format_spread(r.score.as_ref(), false, 3),
                format_spread(r.degeneration_rate.as_ref(), true, 1),
                format_spread(r.json_valid_rate.as_ref(), true, 1),
                format_spread(r.pages_per_s.as_ref(), false, 2),
                format_spread(r.cost_per_million_pages.as_ref(), false, 2),
                r.train_seconds,
                r.train_tokens,
            ));
        }
        s.push('\n');
        s.push_str(&self.legend());
        s.push_str("\n\n");
        s.push_str(&findings::markdown(&self.findings));
        s
    }

    /// Writes `report.html`, `report.md`, `report.json` and `chart.svg` into `out` (made if
    /// missing), each whole or not at all; returns the path of `report.html`.
    pub fn write(&self, out: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(out).map_err(io(out))?;
        let title = self.run_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" vs ");
        let chart = crate::chart::figure(self);
        for (name, bytes) in [
            ("report.md", format!("# {title}\n\n{}", self.markdown()).into_bytes()),
            ("report.json", serde_json::to_vec_pretty(self).expect("serialisable")),
            ("chart.svg", chart.clone().into_bytes()),
            ("report.html", crate::html::page(self, &title, &chart).into_bytes()),
        ] {
            let path = out.join(name);
            ladder_model::write_atomic(&path, &bytes).map_err(|e| RecipeError::Manifest { path, message: e.to_string() })?;
        }
        Ok(out.join("report.html"))
    }
}
