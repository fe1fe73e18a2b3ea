//! Evaluation for `ladder`: scores OCR predictions against references the way the DharmaOCR
//! benchmark does (Cardoso et al. 2026, arXiv 2604.14314), with the usual OCR metrics beside.
//!
//! Every metric is a pure function of two strings and is pinned against the Python library it
//! mirrors by `tests/fixtures/metrics.json` (made by `scripts/make_eval_fixtures.py`):
//!
//! - [`levenshtein_ratio`]: `1 − char_edit_distance / max(len_pred, len_ref)`, 0.0 for two empty
//!   strings (the benchmark's convention); rapidfuzz `Levenshtein.normalized_similarity` otherwise.
//! - [`bleu()`]: sentence BLEU-4 on whitespace tokens with Chen & Cherry smoothing method 1, as
//!   NLTK's `sentence_bleu([ref.split()], pred.split(), smoothing_function=SmoothingFunction().method1)`.
//! - [`score`]: `(levenshtein_ratio + bleu) / 2`, the benchmark's composite score.
//! - [`cer`], [`wer`]: edit distance over chars / words divided by the reference length, as jiwer
//!   with no transforms; an empty reference gives 0.0 (empty prediction) or 1.0 (otherwise).
//! - [`chrf()`]: sacreBLEU's `CHRF().sentence_score` (chrF2, char n-grams 1–6), **divided by 100**.
//!
//! Lengths are Unicode characters and words are Python `str.split()` words, never bytes.
//! Degeneration comes from [`ladder_data::degeneration`]: the benchmark rule decides, the other
//! detectors are reported.
//!
//! A predictions file is JSON Lines of `{"prediction", "reference", "finish_reason"?}`:
//!
//! ```no_run
//! use ladder_eval::{score_predictions, EvalOptions, Throughput};
//! let opts = EvalOptions {
//!     throughput: Some(Throughput::from_run(500, Some(400_000), 120.0)),
//!     price_per_hour: Some(2.5),
//!     ..EvalOptions::default()
//! };
//! let report = score_predictions("predictions.jsonl".as_ref(), &opts)?;
//! std::fs::write("eval.json", serde_json::to_string_pretty(&report).unwrap()).unwrap();
//! print!("{}", report.table());
//! # Ok::<(), ladder_eval::EvalError>(())
//! ```
//!
//! When a reference is a structured page (a JSON object with `header`, `margin`, `footer`,
//! `text`), its row also reports `json_valid` and `text_score`, the composite score of the two
//! `text` fields normalised to plain text ([`structured::plain_text`]); the row-level metrics
//! always compare the raw strings.

pub mod bleu;
pub mod chrf;
pub mod edit;
pub mod error;
pub mod metrics;
pub mod report;
pub mod structured;

pub use bleu::bleu;
pub use chrf::chrf;
pub use edit::{cer, edit_distance, levenshtein_ratio, wer};
pub use error::{EvalError, Result};
pub use metrics::{score, Metrics};
pub use report::{
    cost_per_million_pages, read_predictions, score_predictions, score_row, Aggregate, EvalOptions, EvalReport,
    Prediction, RowReport, Throughput,
};
pub use structured::{json_valid, parse_page, plain_text, Page};
