//! `ladder status` and `ladder compare`: read a run folder (`run.json`, each stage's
//! `manifest.json`, `slurm/jobs.json`) and report. Nothing here trains or needs the recipe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{io, RecipeError, Result};
use crate::manifest::Manifest;

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| RecipeError::Manifest { path: path.to_path_buf(), message: e.to_string() })
}

/// (start, [(stage, kind, from, level)]) from `run.json`.
type Layout = Vec<(String, Option<u32>, Vec<(String, String, String, Option<u32>)>)>;

fn layout(run_dir: &Path) -> Result<Layout> {
    let run = read_json(&run_dir.join("run.json"))?;
    let starts = run["starts"].as_array().cloned().unwrap_or_default();
    Ok(starts
        .iter()
        .map(|s| {
            let stages = s["stages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|st| {
                    (
                        st["name"].as_str().unwrap_or("").to_string(),
                        st["kind"].as_str().unwrap_or("").to_string(),
                        st["from"].as_str().unwrap_or("").to_string(),
                        st["level"].as_u64().map(|l| l as u32),
                    )
                })
                .collect();
            (s["name"].as_str().unwrap_or("").to_string(), s["level"].as_u64().map(|l| l as u32), stages)
        })
        .collect())
}

#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    pub start: String,
    pub stage: String,
    pub kind: String,
    /// completed, running, failed, or "not started"; with Slurm, the job's state when known.
    pub status: String,
    pub duration_s: Option<f64>,
    pub final_loss: Option<f64>,
    pub slurm_job: Option<String>,
    pub slurm_state: Option<String>,
}

/// Every stage of a run, from its manifests and, when the run was submitted, `squeue`/`sacct`.
pub fn status(run_dir: &Path) -> Result<Vec<StageStatus>> {
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
    for (start, _, stages) in layout(run_dir)? {
        for (stage, kind, _, _) in stages {
            let m = Manifest::read(&run_dir.join(&start).join(&stage))?;
            let job = latest.get(&(start.clone(), stage.clone())).cloned();
            rows.push(StageStatus {
                status: m.as_ref().map(|m| format!("{:?}", m.status).to_lowercase()).unwrap_or_else(|| "not started".into()),
                duration_s: m.as_ref().and_then(|m| m.duration_s),
                final_loss: m.as_ref().and_then(|m| m.metrics.as_ref()).and_then(|x| x["summary"]["final_loss"].as_f64()),
                slurm_state: job.as_ref().and_then(|id| states.get(id).cloned()),
                slurm_job: job,
                start: start.clone(),
                stage,
                kind,
            });
        }
    }
    Ok(rows)
}

pub fn status_table(rows: &[StageStatus]) -> String {
    let mut s = format!("{:<14} {:<14} {:<6} {:<12} {:>9} {:>10}  {}\n", "start", "stage", "kind", "status", "time (s)", "loss", "slurm");
    for r in rows {
        let slurm = match (&r.slurm_job, &r.slurm_state) {
            (Some(id), Some(st)) => format!("{id} {st}"),
            (Some(id), None) => id.clone(),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{:<14} {:<14} {:<6} {:<12} {:>9} {:>10}  {slurm}\n",
            r.start,
            r.stage,
            r.kind,
            r.status,
            r.duration_s.map(|d| format!("{d:.1}")).unwrap_or_else(|| "-".into()),
            r.final_loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "-".into()),
        ));
    }
    s
}

/// One start × level in `ladder compare`.
#[derive(Clone, Debug, Serialize)]
pub struct CompareRow {
    pub start: String,
    pub level: Option<u32>,
    /// The stage whose model this row describes.
    pub stage: String,
    /// The eval stage that scored it, if any.
    pub eval_stage: Option<String>,
    pub score: Option<f64>,
    pub degeneration_rate: Option<f64>,
    pub json_valid_rate: Option<f64>,
    pub pages_per_s: Option<f64>,
    pub cost_per_million_pages: Option<f64>,
    /// Training time and tokens of every completed training stage from the start to here.
    pub train_seconds: f64,
    pub train_tokens: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub run_dir: PathBuf,
    pub rows: Vec<CompareRow>,
}

/// Side-by-side results per start × level; missing eval stages leave their columns empty.
pub fn compare(run_dir: &Path) -> Result<Comparison> {
    let mut rows = Vec::new();
    for (start, start_level, stages) in layout(run_dir)? {
        let manifests: BTreeMap<String, Option<Manifest>> = stages
            .iter()
            .map(|(n, ..)| Ok((n.clone(), Manifest::read(&run_dir.join(&start).join(n))?)))
            .collect::<Result<_>>()?;
        let info: BTreeMap<&str, (&str, &str, Option<u32>)> =
            stages.iter().map(|(n, k, f, l)| (n.as_str(), (k.as_str(), f.as_str(), *l))).collect();
        // Cumulative training cost along the chain ending at `stage`.
        let chain_cost = |stage: &str| {
            let (mut secs, mut toks, mut cur) = (0.0, 0u64, stage.to_string());
            while let Some((kind, from, _)) = info.get(cur.as_str()) {
                if matches!(*kind, "sft" | "dpo") {
                    if let Some(Some(m)) = manifests.get(&cur) {
                        let summary = m.metrics.as_ref().map(|x| x["summary"].clone()).unwrap_or_default();
                        secs += summary["seconds"].as_f64().unwrap_or(0.0);
                        toks += summary["tokens"].as_u64().unwrap_or(0);
                    }
                }
                cur = from.to_string();
            }
            (secs, toks)
        };
        let level_of = |stage: &str| -> Option<u32> {
            let mut cur = stage;
            loop {
                match info.get(cur) {
                    Some((_, _, Some(l))) => return Some(*l),
                    Some((_, from, None)) => cur = *from,
                    None => return start_level,
                }
            }
        };
        // One row per evaluated model (after SFT *and* after DPO of the same level, side by
        // side); a level whose models were never evaluated is stood for by its last model stage.
        let mut evaluated: BTreeMap<Option<u32>, Vec<CompareRow>> = BTreeMap::new();
        for (name, kind, from, level) in &stages {
            if kind != "eval" {
                continue;
            }
            let Some(Some(m)) = manifests.get(name) else { continue };
            let Some(agg) = m.metrics.as_ref().map(|x| x["aggregate"].clone()).filter(|a| a.is_object()) else { continue };
            let level = level.or_else(|| level_of(from));
            let (train_seconds, train_tokens) = chain_cost(from);
            evaluated.entry(level).or_default().push(CompareRow {
                start: start.clone(),
                level,
                stage: from.clone(),
                eval_stage: Some(name.clone()),
                score: agg["text_score"].as_f64().or(agg["score"].as_f64()),
                degeneration_rate: agg["degeneration_rate"].as_f64(),
                json_valid_rate: agg["json_valid_rate"].as_f64(),
                pages_per_s: agg["pages_per_s"].as_f64(),
                cost_per_million_pages: agg["cost_per_million_pages"].as_f64(),
                train_seconds,
                train_tokens,
            });
        }
        let mut unevaluated: BTreeMap<Option<u32>, CompareRow> = BTreeMap::new();
        for (name, kind, _, level) in &stages {
            if matches!(kind.as_str(), "sft" | "dpo" | "merge") && level.is_some() && !evaluated.contains_key(level) {
                let (train_seconds, train_tokens) = chain_cost(name);
                unevaluated.insert(*level, CompareRow {
                    start: start.clone(),
                    level: *level,
                    stage: name.clone(),
                    eval_stage: None,
                    score: None,
                    degeneration_rate: None,
                    json_valid_rate: None,
                    pages_per_s: None,
                    cost_per_million_pages: None,
                    train_seconds,
                    train_tokens,
                });
            }
        }
        let mut by_level: BTreeMap<Option<u32>, Vec<CompareRow>> = evaluated;
        for (level, row) in unevaluated {
            by_level.insert(level, vec![row]);
        }
        rows.extend(by_level.into_values().flatten());
    }
    Ok(Comparison { run_dir: run_dir.to_path_buf(), rows })
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "—".into())
}

impl Comparison {
    /// The table as Markdown (also what `ladder compare` prints).
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| start | level | stage | eval | score | degeneration | JSON valid | pages/s | cost / M pages | train s | train tokens |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
                r.start,
                r.level.map(|l| l.to_string()).unwrap_or_else(|| "—".into()),
                r.stage,
                r.eval_stage.as_deref().unwrap_or("—"),
                opt(r.score, 3),
                r.degeneration_rate.map(|d| format!("{:.2}%", d * 100.0)).unwrap_or_else(|| "—".into()),
                r.json_valid_rate.map(|d| format!("{:.1}%", d * 100.0)).unwrap_or_else(|| "—".into()),
                opt(r.pages_per_s, 2),
                opt(r.cost_per_million_pages, 2),
                r.train_seconds,
                r.train_tokens,
            ));
        }
        s
    }

    /// Score against cost per million pages, one point per evaluated model, and the
    /// Pareto frontier (no other point is cheaper and at least as good).
    pub fn svg(&self) -> String {
        let pts: Vec<(f64, f64, String)> = self
            .rows
            .iter()
            .filter_map(|r| {
                let label = format!("{} L{} {}", r.start, r.level.map(|l| l.to_string()).unwrap_or_else(|| "?".into()), r.stage);
                Some((r.cost_per_million_pages?, r.score?, label))
            })
            .collect();
        let (w, h, m) = (640.0, 420.0, 60.0);
        let max_x = pts.iter().map(|p| p.0).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let (min_y, max_y) = (
            pts.iter().map(|p| p.1).fold(1.0_f64, f64::min).min(0.0),
            pts.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1.0),
        );
        let x = |v: f64| m + v / max_x * (w - 2.0 * m);
        let y = |v: f64| h - m - (v - min_y) / (max_y - min_y) * (h - 2.0 * m);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <line x1=\"{m}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <text x=\"{cx}\" y=\"{lx}\" text-anchor=\"middle\">cost per million pages</text>\n\
             <text x=\"16\" y=\"{cy}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {cy})\">score</text>\n",
            b = h - m,
            r = w - m,
            cx = w / 2.0,
            lx = h - 20.0,
            cy = h / 2.0,
        );
        for i in 0..=4 {
            let v = min_y + (max_y - min_y) * i as f64 / 4.0;
            s.push_str(&format!("<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>\n", m - 6.0, y(v) + 4.0));
            let c = max_x * i as f64 / 4.0;
            s.push_str(&format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{c:.2}</text>\n", x(c), h - m + 16.0));
        }
        let frontier = pareto(&pts);
        if frontier.len() > 1 {
            let path: Vec<String> = frontier.iter().map(|&i| format!("{:.1},{:.1}", x(pts[i].0), y(pts[i].1))).collect();
            s.push_str(&format!("<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>\n", path.join(" ")));
        }
        for (i, (cx, cy, label)) in pts.iter().enumerate() {
            let fill = if frontier.contains(&i) { "#d62728" } else { "#1f77b4" };
            s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\"/>\n", x(*cx), y(*cy)));
            s.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n", x(*cx) + 8.0, y(*cy) - 6.0, escape(label)));
        }
        if pts.is_empty() {
            s.push_str(&format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no start × level has both a score and a cost yet</text>\n", w / 2.0, h / 2.0));
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes `report.md`, `report.json` and `pareto.svg` into the run folder.
    pub fn write(&self) -> Result<()> {
        for (name, bytes) in [
            ("report.md", format!("# {}\n\n{}", self.run_dir.display(), self.markdown()).into_bytes()),
            ("report.json", serde_json::to_vec_pretty(self).expect("serialisable")),
            ("pareto.svg", self.svg().into_bytes()),
        ] {
            let path = self.run_dir.join(name);
            std::fs::write(&path, bytes).map_err(io(&path))?;
        }
        Ok(())
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Indices of the Pareto-optimal points (lower cost, higher score), by increasing cost.
pub fn pareto(pts: &[(f64, f64, String)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..pts.len()).collect();
    idx.sort_by(|&a, &b| pts[a].0.total_cmp(&pts[b].0).then(pts[b].1.total_cmp(&pts[a].1)));
    let mut best = f64::NEG_INFINITY;
    let mut out = Vec::new();
    for i in idx {
        if pts[i].1 > best {
            best = pts[i].1;
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_keeps_cheaper_or_better_points() {
        let p = |c: f64, s: f64| (c, s, String::new());
        let pts = vec![p(10.0, 0.9), p(1.0, 0.8), p(5.0, 0.7), p(20.0, 0.85)];
        assert_eq!(pareto(&pts), vec![1, 0]);
    }
}
