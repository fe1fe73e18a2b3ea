//! Scoring a predictions file into the `eval.json` report: one entry per row and an aggregate
//! with the benchmark's headline numbers (mean composite score, degeneration rate) and, when
//! the caller measured them, throughput and cost per million pages.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use ladder_data::degeneration::{Detector, Details, FinishReason, Rule};

use crate::error::{EvalError, Result};
use crate::metrics::{score, Metrics};
use crate::structured::{parse_page, Page};

/// Throughput measured by whoever ran generation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub pages_per_s: f64,
    pub output_tokens_per_s: Option<f64>,
}

impl Throughput {
    /// From a run's totals: `pages` generated with `output_tokens` new tokens in `seconds`.
    pub fn from_run(pages: usize, output_tokens: Option<u64>, seconds: f64) -> Throughput {
        let output_tokens_per_s = output_tokens.map(|t| t as f64 / seconds);
        Throughput { pages_per_s: pages as f64 / seconds, output_tokens_per_s }
    }
}

#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    pub detector: Detector,
    /// Finish reason for rows that carry none. Left `None`, such rows are measured but not
    /// judged (their `degenerate` is null) and the degeneration rate covers the other rows only.
    pub assume_finish_reason: Option<FinishReason>,
    pub throughput: Option<Throughput>,
    /// Hardware price per hour (any currency); with `throughput`, gives the cost per million pages.
    pub price_per_hour: Option<f64>,
}

/// One prediction/reference pair read from the predictions file.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// 1-based line in the predictions file.
    pub line: usize,
    pub prediction: String,
    pub reference: String,
    pub finish_reason: Option<FinishReason>,
}

/// The scores of one row, as written in `eval.json`'s `rows`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowReport {
    pub line: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    pub finish_reason: Option<FinishReason>,
    /// Null when the finish reason is unknown: the benchmark rule needs it.
    pub degenerate: Option<bool>,
    pub degeneration_rule: Option<Rule>,
    pub degeneration: Details,
    /// Structured rows only (the reference is a JSON page): whether the prediction is a complete
    /// JSON page with all four fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub json_valid: Option<bool>,
    /// Structured rows whose prediction parsed too: the composite score of the `text` fields,
    /// both normalised to plain text. This is the benchmark's score for structured output.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text_score: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub count: usize,
    pub score: f64,
    pub levenshtein_ratio: f64,
    pub bleu: f64,
    pub cer: f64,
    pub wer: f64,
    pub chrf: f64,
    /// Share of judged rows flagged degenerate; null when no row has a finish reason.
    pub degeneration_rate: Option<f64>,
    pub degenerate: usize,
    /// Rows with a known finish reason, the degeneration rate's denominator.
    pub judged: usize,
    /// Rows whose reference is a structured JSON page.
    pub structured: usize,
    /// Share of structured rows whose prediction is a complete JSON page.
    pub json_valid_rate: Option<f64>,
    /// Mean `text_score` over the structured rows whose prediction parsed.
    pub text_score: Option<f64>,
    pub text_scored: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pages_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_tokens_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price_per_hour: Option<f64>,
    /// `1e6 / (pages_per_s × 3600) × price_per_hour`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost_per_million_pages: Option<f64>,
}

/// The `eval.json` layout: `{"rows": [...], "aggregate": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub rows: Vec<RowReport>,
    pub aggregate: Aggregate,
}

/// Scores one pair. Every metric compares the raw strings; when the reference is a structured
/// page the row also gets `json_valid` and, if the prediction parsed, `text_score`.
pub fn score_row(row: &Prediction, opts: &EvalOptions) -> RowReport {
    let finish_reason = row.finish_reason.or(opts.assume_finish_reason);
    let (degenerate, degeneration_rule, degeneration) = match finish_reason {
        Some(reason) => {
            let v = opts.detector.check(&row.prediction, reason);
            (Some(v.degenerate), v.rule, v.details)
        }
        None => (None, None, opts.detector.measure(&row.prediction)),
    };
    let (json_valid, text_score) = match parse_page(&row.reference) {
        Some(reference) => {
            let pred: Option<Page> = parse_page(&row.prediction);
            let valid = pred.as_ref().is_some_and(|p| p.complete);
            (Some(valid), pred.map(|p| score(&p.text, &reference.text)))
        }
        None => (None, None),
    };
    RowReport {
        line: row.line,
        metrics: Metrics::compute(&row.prediction, &row.reference),
        finish_reason,
        degenerate,
        degeneration_rule,
        degeneration,
        json_valid,
        text_score,
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl Aggregate {
    /// Means over `rows`, which must not be empty (`score_predictions` refuses empty files).
    pub fn of(rows: &[RowReport], opts: &EvalOptions) -> Aggregate {
        let m = |f: fn(&Metrics) -> f64| mean(rows.iter().map(|r| f(&r.metrics))).unwrap_or(0.0);
        let judged: Vec<bool> = rows.iter().filter_map(|r| r.degenerate).collect();
        let degenerate = judged.iter().filter(|d| **d).count();
        let valid: Vec<bool> = rows.iter().filter_map(|r| r.json_valid).collect();
        let text_scores: Vec<f64> = rows.iter().filter_map(|r| r.text_score).collect();
        let pages_per_s = opts.throughput.map(|t| t.pages_per_s);
        Aggregate {
            count: rows.len(),
            score: m(|x| x.score),
            levenshtein_ratio: m(|x| x.levenshtein_ratio),
            bleu: m(|x| x.bleu),
            cer: m(|x| x.cer),
            wer: m(|x| x.wer),
            chrf: m(|x| x.chrf),
            degeneration_rate: (!judged.is_empty()).then(|| degenerate as f64 / judged.len() as f64),
            degenerate,
            judged: judged.len(),
            structured: valid.len(),
            json_valid_rate: mean(valid.iter().map(|v| f64::from(u8::from(*v)))),
            text_score: mean(text_scores.iter().copied()),
            text_scored: text_scores.len(),
            pages_per_s,
            output_tokens_per_s: opts.throughput.and_then(|t| t.output_tokens_per_s),
            price_per_hour: opts.price_per_hour,
            cost_per_million_pages: pages_per_s.zip(opts.price_per_hour).map(|(p, price)| cost_per_million_pages(p, price)),
        }
    }
}

/// Cost of a million pages at `pages_per_s` on hardware priced `price_per_hour`.
pub fn cost_per_million_pages(pages_per_s: f64, price_per_hour: f64) -> f64 {
    1e6 / (pages_per_s * 3600.0) * price_per_hour
}

/// Reads `{"prediction", "reference"}` rows, with an optional `finish_reason` ("eos", "stop" or
/// "length", or null), from a JSON Lines file. Blank lines are skipped (but counted for line
/// numbers) and other keys are ignored, so generation can write ids and timings alongside.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    if !path.exists() {
        return Err(EvalError::MissingFile { path: path.to_path_buf() });
    }
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if !matches!(extension.as_str(), "jsonl" | "json" | "ndjson") {
        return Err(EvalError::UnsupportedFormat { path: path.to_path_buf(), extension });
    }
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
    // Editors on Windows start UTF-8 files with a byte-order mark; it is not part of the row.
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|e| EvalError::NotUtf8 { path: path.to_path_buf(), line, byte: e.valid_up_to() })?;
        if text.trim().is_empty() {
            continue;
        }
        let row = parse_prediction(text, line);
        rows.push(row.map_err(|message| EvalError::Row { path: path.to_path_buf(), line, message })?);
    }
    if rows.is_empty() {
        return Err(EvalError::Empty { path: path.to_path_buf() });
    }
    Ok(rows)
}

fn parse_prediction(text: &str, line: usize) -> std::result::Result<Prediction, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON at column {}: {e}", e.column()))?;
    let obj = value.as_object().ok_or("expected a JSON object {\"prediction\", \"reference\"}")?;
    let string = |key: &str| match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("\"{key}\" must be a string")),
        None => Err(format!("missing \"{key}\"")),
    };
    let finish_reason = match obj.get("finish_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.parse::<FinishReason>().map_err(|e| format!("\"finish_reason\": {e}"))?),
        Some(_) => return Err("\"finish_reason\" must be \"eos\", \"stop\", \"length\" or null".into()),
    };
    Ok(Prediction { line, prediction: string("prediction")?, reference: string("reference")?, finish_reason })
}

/// Reads and scores a predictions file.
pub fn score_predictions(path: &Path, opts: &EvalOptions) -> Result<EvalReport> {
    let predictions = read_predictions(path)?;
    Ok(EvalReport::new(predictions.iter().map(|p| score_row(p, opts)).collect(), opts))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

impl EvalReport {
    pub fn new(rows: Vec<RowReport>, opts: &EvalOptions) -> EvalReport {
        let aggregate = Aggregate::of(&rows, opts);
        EvalReport { rows, aggregate }
    }

    /// The aggregate as a two-column plain-text table for a terminal.
    pub fn table(&self) -> String {
        let a = &self.aggregate;
        let mut lines: Vec<(&str, String)> = vec![
            ("rows", a.count.to_string()),
            ("score", format!("{:.4}", a.score)),
            ("levenshtein_ratio", format!("{:.4}", a.levenshtein_ratio)),
            ("bleu", format!("{:.4}", a.bleu)),
            ("cer", format!("{:.4}", a.cer)),
            ("wer", format!("{:.4}", a.wer)),
            ("chrf", format!("{:.4}", a.chrf)),
            (
                "degeneration_rate",
                match a.degeneration_rate {
                    Some(r) => format!("{:.2}% ({}/{})", 100.0 * r, a.degenerate, a.judged),
                    None => "- (no finish_reason)".to_string(),
                },
            ),
        ];
        if a.structured > 0 {
            lines.push(("json_valid_rate", opt(a.json_valid_rate.map(|r| 100.0 * r), 2) + "%"));
            lines.push(("text_score", format!("{} ({} rows)", opt(a.text_score, 4), a.text_scored)));
        }
        for (name, value) in [
            ("pages_per_s", a.pages_per_s),
            ("output_tokens_per_s", a.output_tokens_per_s),
            ("cost_per_million_pages", a.cost_per_million_pages),
        ] {
            if value.is_some() {
                lines.push((name, opt(value, 2)));
            }
        }
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in lines {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }

    /// One line per row (line number, scores, degeneration rule), for inspecting a small run.
    pub fn rows_table(&self) -> String {
        let mut out = format!(
            "{:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:<8}  {}\n",
            "line", "score", "ratio", "bleu", "cer", "wer", "chrf", "finish", "degenerate"
        );
        for r in &self.rows {
            let m = &r.metrics;
            let finish = r.finish_reason.map_or("-", FinishReason::as_str);
            let degenerate = match (r.degenerate, r.degeneration_rule) {
                (Some(true), Some(rule)) => rule.as_str(),
                (Some(_), _) => "no",
                (None, _) => "-",
            };
            let _ = writeln!(
                out,
                "{:>6}  {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}  {:<8}  {}",
                r.line, m.score, m.levenshtein_ratio, m.bleu, m.cer, m.wer, m.chrf, finish, degenerate
            );
        }
        out
    }
}
