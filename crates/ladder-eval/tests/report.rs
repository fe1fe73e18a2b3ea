//! End to end: a predictions file with plain, degenerate and structured rows becomes the
//! `eval.json` report; malformed files fail with the file and line.

use std::path::{Path, PathBuf};

use ladder_data::degeneration::{FinishReason, Rule};
use ladder_eval::{score, score_predictions, EvalOptions, Throughput};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/predictions.jsonl")
}

#[test]
fn report_on_fixture() {
    let opts = EvalOptions {
        throughput: Some(Throughput::from_run(7, Some(2100), 3.5)),
        price_per_hour: Some(3.6),
        ..EvalOptions::default()
    };
    let report = score_predictions(&fixture(), &opts).unwrap();
    let a = &report.aggregate;
    assert_eq!(report.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 2, 3, 4, 6, 7, 8], "blank line 5 skipped");
    assert_eq!(a.count, 7);

    // Identical text scores 1 everywhere.
    let m = &report.rows[0].metrics;
    assert_eq!((m.score, m.levenshtein_ratio, m.cer, m.wer), (1.0, 1.0, 0.0, 0.0));
    assert!((m.bleu - 1.0).abs() < 1e-12 && (m.chrf - 1.0).abs() < 1e-12);

    // Degeneration: only the word loop cut by length; the loop ended by a stop string and the
    // truncated JSON (cut by length, no loop) are not; the row without finish_reason is not judged.
    let rules: Vec<_> = report.rows.iter().map(|r| (r.degenerate, r.degeneration_rule)).collect();
    assert_eq!(rules[2], (Some(true), Some(Rule::SuffixCount)));
    assert_eq!(rules[3], (Some(false), None));
    assert_eq!(rules[5], (Some(false), None));
    assert_eq!(rules[6], (None, None));
    assert_eq!(report.rows[6].finish_reason, None);
    assert_eq!(report.rows[3].finish_reason, Some(FinishReason::Stop));
    assert_eq!((a.degenerate, a.judged, a.degeneration_rate), (1, 6, Some(1.0 / 6.0)));

    // Structured: one complete page with a typo, one truncated page.
    assert_eq!(report.rows[4].json_valid, Some(true));
    assert_eq!(report.rows[5].json_valid, Some(false));
    assert_eq!(report.rows[5].text_score, None);
    let expected =
        score("OFÍCIO nº 45/2020\nSolicitamos a remesa dos autos.", "OFÍCIO nº 45/2020\nSolicitamos a remessa dos autos.");
    assert_eq!(report.rows[4].text_score, Some(expected), "trailing spaces are normalised away");
    assert_eq!((a.structured, a.json_valid_rate, a.text_scored, a.text_score), (2, Some(0.5), 1, Some(expected)));

    // Means and cost.
    let mean = report.rows.iter().map(|r| r.metrics.score).sum::<f64>() / 7.0;
    assert!((a.score - mean).abs() < 1e-15);
    assert_eq!((a.pages_per_s, a.output_tokens_per_s), (Some(2.0), Some(600.0)));
    // 1e6 pages at 2 pages/s = 138.9 h at 3.6/h = 500.
    assert!((a.cost_per_million_pages.unwrap() - 500.0).abs() < 1e-9);

    // eval.json layout.
    let json: Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 7);
    let row = &json["rows"][2];
    for key in ["line", "score", "levenshtein_ratio", "bleu", "cer", "wer", "chrf", "finish_reason", "degenerate"] {
        assert!(row.get(key).is_some(), "row lacks {key}: {row}");
    }
    assert_eq!(row["degeneration_rule"], "suffix_count");
    assert_eq!(row["finish_reason"], "length");
    assert_eq!(row["degeneration"]["period"], 12);
    assert!(row.get("json_valid").is_none(), "plain rows have no JSON fields");
    assert_eq!(json["aggregate"]["cost_per_million_pages"].as_f64().map(|c| c.round()), Some(500.0));
    let back: ladder_eval::EvalReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);

    let table = report.table();
    assert!(table.contains("degeneration_rate       16.67% (1/6)"), "{table}");
    assert!(table.contains("cost_per_million_pages  500.00"), "{table}");
    let rows = report.rows_table();
    assert_eq!(rows.lines().count(), 8);
    assert!(rows.lines().nth(3).unwrap().ends_with("suffix_count"), "{rows}");
}

#[test]
fn without_throughput_the_cost_fields_are_absent() {
    let report = score_predictions(&fixture(), &EvalOptions::default()).unwrap();
    let json = serde_json::to_value(&report.aggregate).unwrap();
    for key in ["pages_per_s", "output_tokens_per_s", "price_per_hour", "cost_per_million_pages"] {
        assert!(json.get(key).is_none(), "{key}");
    }
    assert!(!report.table().contains("pages_per_s"));
}

#[test]
fn assumed_finish_reason_judges_every_row() {
    let opts = EvalOptions { assume_finish_reason: Some(FinishReason::Eos), ..EvalOptions::default() };
    let report = score_predictions(&fixture(), &opts).unwrap();
    assert_eq!(report.aggregate.judged, 7);
    assert_eq!(report.rows[6].finish_reason, Some(FinishReason::Eos));
}

#[test]
fn errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"prediction": "a", "reference": "a"}"#;
    let cases: [(Vec<u8>, &str); 8] = [
        (b"".to_vec(), "p.jsonl: no prediction rows"),
        (b"\n  \n".to_vec(), "p.jsonl: no prediction rows"),
        ([ok.as_bytes(), b"\n{\"prediction\": \"\xc3\"}"].concat(), "p.jsonl:2: not valid UTF-8"),
        (b"{\"prediction\": \"a\xff\", \"reference\": \"a\"}\n".to_vec(), "p.jsonl:1: not valid UTF-8 (byte 17"),
        (format!("{ok}\n\n{{\"prediction\": \"a\"}}\n").into_bytes(), "p.jsonl:3: missing \"reference\""),
        (format!("{ok}\n[1]\n").into_bytes(), "p.jsonl:2: expected a JSON object"),
        (b"{\"prediction\": 1, \"reference\": \"a\"}".to_vec(), "p.jsonl:1: \"prediction\" must be a string"),
        (
            b"{\"prediction\": \"a\", \"reference\": \"a\", \"finish_reason\": \"max_tokens\"}".to_vec(),
            "p.jsonl:1: \"finish_reason\": unknown finish reason \"max_tokens\"",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, text).unwrap();
        let err = score_predictions(&path, &EvalOptions::default()).unwrap_err().to_string();
        assert!(err.contains(expected), "{err:?} should contain {expected:?}");
    }
    let err = score_predictions(&dir.path().join("none.jsonl"), &EvalOptions::default()).unwrap_err();
    assert!(err.to_string().ends_with("none.jsonl: file not found"));
    std::fs::write(dir.path().join("bad.jsonl"), "{\"prediction\": ").unwrap();
    let err = score_predictions(&dir.path().join("bad.jsonl"), &EvalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bad.jsonl:1: malformed JSON"), "{err}");
}
