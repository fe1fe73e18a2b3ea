//! `ladder eval --predictions`: scores any system's outputs, writes eval.json atomically.

use crate::util::*;

fn predictions() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/ladder-eval/tests/fixtures/predictions.jsonl")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn scores_a_predictions_file_with_cost() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval.json");
    let o = out.to_string_lossy().into_owned();
    let p = predictions();
    let run = ladder(&["eval", "--predictions", &p, "--out", &o, "--pages-per-s", "2", "--price-per-hour", "3.6"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("score"), "a table on stdout: {stdout}");
    let report = read_json(&out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), read_jsonl(&p).len());
    let agg = &report["aggregate"];
    let mean: f64 = rows.iter().map(|r| r["score"].as_f64().unwrap()).sum::<f64>() / rows.len() as f64;
    assert!((agg["score"].as_f64().unwrap() - mean).abs() < 1e-12);
    // 2 pages/s at 3.6 $/h: 1e6 pages take 500,000 s = 138.9 h → $500.
    assert!((agg["cost_per_million_pages"].as_f64().unwrap() - 500.0).abs() < 1e-9, "{agg}");
}

#[test]
fn bad_predictions_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prediction\": \"a\", \"reference\": \"a\"}\n{\"prediction\": \"b\"}\n").unwrap();
    let out = dir.path().join("eval.json");
    let (b, o) = (bad.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let err = ladder_fails(&["eval", "--predictions", &b, "--out", &o]);
    assert!(err.contains("bad.jsonl:2") && err.contains("reference"), "{err}");
    assert!(!out.exists());
    let p = predictions();
    let err = ladder_fails(&["eval", "--predictions", &p, "--out", &o, "--price-per-hour", "2"]);
    assert!(err.contains("--pages-per-s"), "{err}");
}
