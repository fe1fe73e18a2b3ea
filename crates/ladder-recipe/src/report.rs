//! `ladder status` and `ladder compare`: read run folders (`run.json`, each stage's
//! `manifest.json` and `eval.json`, `slurm/jobs.json`) and report. Nothing here trains or needs
//! the recipe. A seeded run ([`crate::seeds`]) is read seed folder by seed folder; `compare`
//! gives every number as its mean and spread over seeds ([`crate::stats`]) and says which
//! differences are larger than that spread ([`crate::findings`]). Over 600 lines with its tests,
//! which build a seeded run folder of real `eval.json` reports.

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
    /// The benchmark's composite score, of the JSON `text` field or of the raw output
    /// ([`ScoreOf`]).
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
    /// The two scores an eval gives, with their pages: of the JSON `text` field (JSON-page
    /// references, over the pages that parsed) and of the raw output. [`compare`] picks one
    /// for every row.
    #[serde(skip)]
    text_score: Option<(f64, Pages)>,
    #[serde(skip)]
    raw_score: Option<(f64, Pages)>,
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

/// Which score the comparison gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreOf {
    /// The benchmark's: the JSON `text` field, when every model's output parsed on some page.
    TextField,
    /// The whole output against the whole reference, when some model's never parsed: the
    /// `text`-field score would leave that model out.
    RawOutput,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub run_dirs: Vec<PathBuf>,
    pub score_of: ScoreOf,
    /// The seeds found in any run.
    pub seeds: Vec<u64>,
    pub rows: Vec<CompareRow>,
    /// The differences between rows, in words.
    pub findings: Vec<Finding>,
}

/// What identifies a row across seeds.
type RowKey = (String, Option<u32>, String, Option<String>);

/// A row's key, kind, evaluated parent and per-seed results, before the spreads.
type Merged = (RowKey, Option<StageKind>, Option<String>, Vec<SeedResult>);

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
    let mut runs = Vec::new();
    for run_dir in run_dirs {
        let top = read_json(&run_dir.join("run.json")).ok();
        let mut label = top.as_ref().and_then(|v| v["recipe"].as_str()).map(str::to_string).unwrap_or_else(|| run_dir.display().to_string());
        if labels.contains(&label) {
            label = run_dir.display().to_string();
        }
        labels.push(label.clone());
        let mut merged: Vec<Merged> = Vec::new();
        for (seed, dir) in seeds::runs_in(run_dir)? {
            all_seeds.extend(seed);
            for r in seed_rows(&dir, seed)? {
                match merged.iter_mut().find(|m| m.0 == r.key) {
                    Some(m) => m.3.push(r.result),
                    None => merged.push((r.key, r.kind, r.parent, vec![r.result])),
                }
            }
        }
        // A level evaluated on some seed is not stood for by an unevaluated row from another
        // (a seed still running, or one whose eval failed).
        let evaluated: Vec<(String, Option<u32>)> = merged.iter().filter(|m| m.0 .3.is_some()).map(|m| (m.0 .0.clone(), m.0 .1)).collect();
        merged.retain(|m| m.0 .3.is_some() || !evaluated.contains(&(m.0 .0.clone(), m.0 .1)));
        runs.push((label, merged));
    }
    // One score for every row, so that rows compare like with like.
    let results = || runs.iter().flat_map(|r| &r.1).flat_map(|m| &m.3);
    let score_of = if results().filter(|r| r.raw_score.is_some()).all(|r| r.text_score.is_some()) { ScoreOf::TextField } else { ScoreOf::RawOutput };
    for (label, merged) in runs {
        for ((start, level, stage, eval_stage), kind, parent, mut per_seed) in merged {
            for r in &mut per_seed {
                let chosen = match score_of {
                    ScoreOf::TextField => r.text_score.clone(),
                    ScoreOf::RawOutput => r.raw_score.clone(),
                };
                (r.score, r.pages[Metric::Score.index()]) = chosen.map(|(v, p)| (Some(v), p)).unwrap_or_default();
            }
            rows.push(merge_seeds(label.clone(), start, level, stage, kind, eval_stage, parent, per_seed));
        }
    }
    all_seeds.sort_unstable();
    all_seeds.dedup();
    let findings = findings::between(&rows);
    Ok(Comparison { run_dirs: run_dirs.to_vec(), score_of, seeds: all_seeds, rows, findings })
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
                text_score: None,
                raw_score: None,
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
            let (pages, text_pages, raw_pages) = page_values(&run_dir.join(&start.name).join(&st.name).join("eval.json"));
            let result = SeedResult {
                text_score: agg["text_score"].as_f64().map(|v| (v, text_pages)),
                raw_score: agg["score"].as_f64().map(|v| (v, raw_pages)),
                degeneration_rate: agg["degeneration_rate"].as_f64(),
                json_valid_rate: agg["json_valid_rate"].as_f64(),
                pages_per_s: agg["pages_per_s"].as_f64(),
                cost_per_million_pages: agg["cost_per_million_pages"].as_f64(),
                pages,
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

/// Per-page values from an `eval.json`: of each [`Metric`] (the score's left empty for
/// [`compare`] to choose), of the `text`-field score and of the raw-output score. All empty
/// when it cannot be read: the row then has its aggregates without an interval.
fn page_values(path: &Path) -> ([Pages; 3], Pages, Pages) {
    let Ok(report) = read_json(path).and_then(|v| {
        serde_json::from_value::<ladder_eval::EvalReport>(v).map_err(|e| RecipeError::Manifest { path: path.to_path_buf(), message: e.to_string() })
    }) else {
        return Default::default();
    };
    let rows = &report.rows;
    let flag = |b: Option<bool>| b.map(|b| f64::from(u8::from(b)));
    (
        [Vec::new(), rows.iter().map(|r| flag(r.degenerate)).collect(), rows.iter().map(|r| flag(r.json_valid)).collect()],
        rows.iter().map(|r| r.text_score).collect(),
        rows.iter().map(|r| Some(r.metrics.score)).collect(),
    )
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
            "{seeds}; {pages} test pages per evaluation. {} Cells are the mean over seeds, with the minimum and maximum in brackets. \
             A difference counts as larger than the spread when it has the same sign on every seed and its 95% bootstrap interval \
             (seeds and test pages resampled, {} draws) excludes zero; ± is the standard deviation of the per-seed differences.",
            match self.score_of {
                ScoreOf::TextField => "The score is the benchmark's composite score of the JSON `text` field, over the pages whose output parsed.",
                ScoreOf::RawOutput => "The score compares each whole output with the whole reference (JSON syntax included): \
                    some model's output never parsed as a JSON page, and the benchmark's score of the `text` field would leave it out.",
            },
            crate::stats::DRAWS
        );
        if findings::constant(&self.rows, Metric::JsonValid) == Some(0.0) {
            s.push_str(" No model wrote a complete JSON page on any page of any seed, so JSON validity tells no model from another.");
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

#[cfg(test)]
mod tests {
    use super::*;
    use ladder_data::degeneration::FinishReason;
    use ladder_eval::{score_row, Aggregate, EvalOptions, EvalReport, Prediction, Throughput};
    use serde_json::json;

    fn page(text: &str) -> String {
        json!({"header": "", "margin": "", "footer": "", "text": text}).to_string()
    }

    /// Scores `predictions` against 20 reference pages into `dir/eval.json`; returns the
    /// manifest metrics an eval stage records.
    fn eval(dir: &Path, predictions: &dyn Fn(usize) -> (String, FinishReason)) -> Value {
        let opts = EvalOptions {
            throughput: Some(Throughput { pages_per_s: 2.0, output_tokens_per_s: None }),
            price_per_hour: Some(0.1),
            ..Default::default()
        };
        let rows: Vec<_> = (0..20)
            .map(|i| {
                let (prediction, finish) = predictions(i);
                let reference = page(&format!("o gato subiu no telhado da casa número {i}"));
                score_row(&Prediction { line: i + 1, prediction, reference, finish_reason: Some(finish) }, &opts)
            })
            .collect();
        let report = EvalReport { aggregate: Aggregate::of(&rows, &opts), rows };
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("eval.json"), serde_json::to_vec(&report).unwrap()).unwrap();
        json!({"eval": dir.join("eval.json"), "aggregate": report.aggregate})
    }

    fn manifest(dir: &Path, stage: &str, kind: StageKind, from: &str, metrics: Value) {
        let m = Manifest {
            recipe: "r".into(),
            start: "s".into(),
            stage: stage.into(),
            kind,
            from: from.into(),
            level: None,
            status: crate::manifest::Status::Completed,
            fingerprint: "f".into(),
            inputs: vec![],
            config: Value::Null,
            metrics: Some(metrics),
            executor: "local".into(),
            started_at: 0.0,
            finished_at: None,
            duration_s: None,
            resumed_from: None,
            error: None,
            slurm_job_id: None,
        };
        m.write(dir).unwrap();
    }

    /// A seeded run folder as `ladder run` leaves it: starts `generalist` and `specialist`,
    /// each evaluated untuned (never a JSON page) and after SFT, on seeds 1 and 2. After SFT the
    /// specialist copies every page; the generalist gets the text wrong and loops on a quarter
    /// (seed 1) or a half (seed 2) of the pages.
    fn seeded_run(root: &Path) -> PathBuf {
        let run = root.join("r");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("run.json"), json!({"recipe": "r", "seeds": [1, 2]}).to_string()).unwrap();
        let stages = json!([
            {"name": "eval-untuned", "kind": "eval", "from": "start", "level": null},
            {"name": "sft", "kind": "sft", "from": "start", "level": 3},
            {"name": "eval-sft", "kind": "eval", "from": "sft", "level": null},
        ]);
        for seed in [1u64, 2] {
            let dir = run.join(seeds::folder(seed));
            let starts = json!([{"name": "generalist", "level": 1, "stages": stages}, {"name": "specialist", "level": 2, "stages": stages}]);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("run.json"), json!({"recipe": "r", "starts": starts}).to_string()).unwrap();
            for start in ["generalist", "specialist"] {
                let s = dir.join(start);
                manifest(&s.join("eval-untuned"), "eval-untuned", StageKind::Eval, "start", eval(&s.join("eval-untuned"), &|_| ("lorem ipsum".into(), FinishReason::Eos)));
                manifest(&s.join("sft"), "sft", StageKind::Sft, "start", json!({"summary": {"seconds": 10.0 * seed as f64, "tokens": 1000}}));
                let specialist = start == "specialist";
                let looping = if seed == 1 { 5 } else { 10 };
                let metrics = eval(&s.join("eval-sft"), &|i| {
                    if specialist {
                        (page(&format!("o gato subiu no telhado da casa número {i}")), FinishReason::Eos)
                    } else if i < looping {
                        (format!("{{\"header\": \"\", \"text\": \"{}", "o gato o gato ".repeat(20)), FinishReason::Length)
                    } else {
                        (page(&format!("um cão desceu do muro {i}")), FinishReason::Eos)
                    }
                });
                manifest(&s.join("eval-sft"), "eval-sft", StageKind::Eval, "sft", metrics);
            }
        }
        run
    }

    #[test]
    fn compare_gives_untuned_then_sft_per_start_with_the_spread_over_seeds() {
        let tmp = tempfile::tempdir().unwrap();
        let run = seeded_run(tmp.path());
        let c = compare(std::slice::from_ref(&run)).unwrap();
        assert_eq!(c.seeds, [1, 2]);
        let labels: Vec<(&str, &str)> = c.rows.iter().map(|r| (r.start.as_str(), r.stage_label())).collect();
        assert_eq!(labels, [("generalist", "untuned"), ("generalist", "sft"), ("specialist", "untuned"), ("specialist", "sft")]);
        let (untuned, gen, spec) = (&c.rows[0], &c.rows[1], &c.rows[3]);
        assert_eq!(untuned.level, Some(1), "the untuned row stands on the start's level");
        // The untuned outputs never parse as JSON: every row is scored on its raw output, so
        // that the untuned row has a score comparable with the others.
        assert_eq!(c.score_of, ScoreOf::RawOutput);
        assert!(c.legend().contains("some model's output never parsed"));
        assert!(untuned.score.as_ref().unwrap().mean < 0.1 && spec.score.as_ref().unwrap().mean > 0.99);
        assert_eq!(untuned.json_valid_rate.as_ref().unwrap().max, 0.0);
        assert_eq!(gen.parent.as_deref(), Some("start"));
        let d = gen.degeneration_rate.as_ref().unwrap();
        assert_eq!((d.mean, d.min, d.max, d.seeds), (0.375, 0.25, 0.5, 2));
        let [lo, hi] = d.interval.unwrap();
        assert!(lo < 0.375 && hi > 0.375, "{lo} {hi}");
        assert_eq!(gen.train_seconds, 15.0, "mean of 10 s and 20 s");
        let md = c.markdown();
        assert!(md.contains("| generalist | 3 | sft | eval-sft | 2 |"), "{md}");
        assert!(md.contains("37.5% (25.0%–50.0%)"), "{md}");
        let beyond: Vec<&str> = c.findings.iter().filter(|f| f.beyond_noise()).map(|f| f.text.as_str()).collect();
        let text = beyond.join("\n");
        assert!(text.contains("After sft, the specialist's score is higher than the generalist's on 2 of 2 seeds by"), "{text}");
        assert!(text.contains("After sft, the specialist's degeneration is lower than the generalist's on 2 of 2 seeds by 37.5 ± 17.7 points (95% interval −"), "{text}");
        assert!(text.contains("The specialist's JSON validity after sft is higher than untuned on 2 of 2 seeds by 100.0 ± 0.0 points"), "{text}");
        let same = c.findings.iter().find(|f| f.a == "r/specialist/untuned" && f.metric == Metric::JsonValid).unwrap();
        assert!(same.text.contains("is the same as the generalist's on every seed (0.0%)") && !same.beyond_noise(), "{}", same.text);
    }

    /// Without the untuned evaluations every model parsed on some page: the benchmark's score
    /// of the `text` field, for every row.
    #[test]
    fn the_text_field_is_scored_when_every_model_parses() {
        let tmp = tempfile::tempdir().unwrap();
        let run = seeded_run(tmp.path());
        for seed in ["seed-1", "seed-2"] {
            for start in ["generalist", "specialist"] {
                std::fs::remove_dir_all(run.join(seed).join(start).join("eval-untuned")).unwrap();
            }
        }
        let c = compare(std::slice::from_ref(&run)).unwrap();
        assert_eq!(c.score_of, ScoreOf::TextField);
        assert!(c.legend().contains("composite score of the JSON `text` field"));
        let labels: Vec<&str> = c.rows.iter().map(|r| r.stage_label()).collect();
        assert_eq!(labels, ["sft", "sft"]);
        // The generalist's parsed pages say "um cão desceu do muro", not the reference's text.
        let (gen, spec) = (c.rows[0].score.as_ref().unwrap(), c.rows[1].score.as_ref().unwrap());
        assert!(gen.mean < 0.5 && spec.mean == 1.0, "{gen:?} {spec:?}");
        assert_eq!(c.rows[0].parent, None, "no evaluated model before it");
    }

    #[test]
    fn compare_writes_a_self_contained_report_and_compares_several_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let a = seeded_run(&tmp.path().join("a"));
        let b = seeded_run(&tmp.path().join("b"));
        let c = compare(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(c.rows.len(), 8);
        assert_eq!((c.rows[0].run.as_str(), c.rows[4].run.clone()), ("r", b.display().to_string()), "a second run of one recipe is named by its folder");
        let across = c.findings.iter().find(|f| f.a.starts_with(&b.display().to_string()) && f.b.starts_with("r/")).unwrap();
        assert!(across.text.contains("is the same as") && across.text.contains("on every seed"), "{}", across.text);
        let out = tmp.path().join("cmp");
        let html = c.write(&out).unwrap();
        assert_eq!(html, out.join("report.html"));
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(page.contains("<svg") && page.contains("Differences larger than the spread"), "{page}");
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="), "self-contained");
        for f in ["report.md", "report.json", "chart.svg"] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let err = compare(&[tmp.path().join("nope")]).unwrap_err().to_string();
        assert!(err.contains("nope/run.json") && err.contains("not a run folder"), "{err}");
    }
}
