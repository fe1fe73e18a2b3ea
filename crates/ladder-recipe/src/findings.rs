//! The differences `ladder compare` states in words, for score, degeneration and JSON validity:
//! between the starts after the same stage, along each start's ladder (untuned → SFT → DPO),
//! and between runs for the same start and stage. Each says on how many seeds one side is
//! higher and by how much, and whether that is larger than the spread ([`Difference`]) or
//! within noise, so a reader does not take a gap of one page at face value.

use serde::Serialize;

use crate::report::{CompareRow, Metric};
use crate::stats::{Difference, SeedValues};

/// One difference between two rows.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub metric: Metric,
    /// The row compared (A) and the one it is compared with (B): run / start / stage.
    pub a: String,
    pub b: String,
    pub difference: Difference,
    pub text: String,
}

impl Finding {
    pub fn beyond_noise(&self) -> bool {
        self.difference.beyond_noise
    }
}

/// What two rows have in common, and how the sentence names each side.
struct Pair<'a> {
    a: &'a CompareRow,
    b: &'a CompareRow,
    /// "{who_a} is higher than {who_b}", with the metric's name in `who_a` at `{metric}`.
    who_a: String,
    who_b: String,
}

fn possessive(name: &str) -> String {
    if name.ends_with('s') { format!("{name}'") } else { format!("{name}'s") }
}

fn after(row: &CompareRow) -> String {
    match row.kind {
        None => "untuned".into(),
        Some(_) => format!("after {}", row.stage),
    }
}

/// The pairs worth a sentence: A is the later row (the later start, the later stage, the
/// later run).
fn pairs(rows: &[CompareRow]) -> Vec<Pair<'_>> {
    let mut out = Vec::new();
    let evaluated: Vec<&CompareRow> = rows.iter().filter(|r| r.eval_stage.is_some()).collect();
    for (i, a) in evaluated.iter().enumerate() {
        for b in &evaluated[..i] {
            let same_model = a.stage == b.stage && a.eval_stage == b.eval_stage;
            if a.run == b.run && a.start != b.start && same_model {
                let when = after(a);
                out.push(Pair {
                    a,
                    b,
                    who_a: format!("{when}, the {} {{metric}}", possessive(&a.start)),
                    who_b: format!("the {}", possessive(&b.start)),
                });
            } else if a.run == b.run && a.start == b.start && a.parent.as_deref() == Some(b.stage.as_str()) {
                out.push(Pair { a, b, who_a: format!("the {} {{metric}} {}", possessive(&a.start), after(a)), who_b: after(b) });
            } else if a.run != b.run && a.start == b.start && same_model {
                out.push(Pair {
                    a,
                    b,
                    who_a: format!("the {} {{metric}} {} in {}", possessive(&a.start), after(a), a.run),
                    who_b: format!("in {}", b.run),
                });
            }
        }
    }
    out
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A value of `metric` without its unit: scores with 3 decimals, rates as points.
fn amount(metric: Metric, v: f64) -> String {
    if metric.is_rate() { format!("{:.1}", v * 100.0) } else { format!("{v:.3}") }
}

/// A signed number without its unit: `+12.5`, `−0.012`.
fn signed(metric: Metric, v: f64) -> String {
    let s = if metric.is_rate() { format!("{:.1}", v.abs() * 100.0) } else { format!("{:.3}", v.abs()) };
    if v < 0.0 { format!("−{s}") } else { format!("+{s}") }
}

/// The unit after a signed number, or after an interval.
fn unit(metric: Metric) -> &'static str {
    if metric.is_rate() { " points" } else { "" }
}

/// Whether `metric` has one value for every model on every seed (e.g. no model ever writes
/// valid JSON): then no comparison says anything, and the legend says it once.
pub fn constant(rows: &[CompareRow], metric: Metric) -> Option<f64> {
    let mut values = rows.iter().flat_map(|r| r.per_seed.iter().filter_map(move |s| s.value(metric)));
    let first = values.next()?;
    values.all(|v| v == first).then_some(first)
}

/// Every difference between the rows, in words.
pub fn between(rows: &[CompareRow]) -> Vec<Finding> {
    let mut out = Vec::new();
    let informative: Vec<Metric> = Metric::ALL.into_iter().filter(|m| constant(rows, *m).is_none()).collect();
    for p in pairs(rows) {
        for &metric in &informative {
            let (va, vb) = (p.a.seed_values(metric), p.b.seed_values(metric));
            let (a, b): (SeedValues, SeedValues) = va.iter().filter_map(|(s, x)| Some((x.clone(), vb.get(s)?.clone()))).unzip();
            let Some(d) = Difference::of(&a, &b) else { continue };
            let who_a = capitalised(&p.who_a.replace("{metric}", metric.name()));
            let n = d.per_seed.len();
            let seeds = if n == 1 { "the one seed".to_string() } else { format!("{} of {n} seeds", d.higher_on().max(d.lower_on())) };
            let pm = if n > 1 { format!(" ± {}", amount(metric, d.sd)) } else { String::new() };
            let interval = d
                .interval
                .map(|[lo, hi]| format!("95% interval {} to {}{}", signed(metric, lo), signed(metric, hi), unit(metric)))
                .unwrap_or_else(|| "no interval: eval.json missing".into());
            let text = if d.per_seed.iter().all(|x| *x == 0.0) {
                let v = a[0].0;
                let shown = if metric.is_rate() { format!("{:.1}%", v * 100.0) } else { format!("{v:.3}") };
                format!("{who_a} is the same as {} on every seed ({shown}).", p.who_b)
            } else if d.beyond_noise {
                let dir = if d.mean > 0.0 { "higher" } else { "lower" };
                format!(
                    "{who_a} is {dir} than {} on {seeds} by {}{pm}{} ({interval}): larger than the spread.",
                    p.who_b,
                    amount(metric, d.mean.abs()),
                    unit(metric)
                )
            } else {
                format!(
                    "{who_a} against {}: within noise ({}{pm}{}, higher on {} of {n}, {interval}).",
                    p.who_b,
                    signed(metric, d.mean),
                    unit(metric),
                    d.higher_on()
                )
            };
            let id = |r: &CompareRow| format!("{}/{}/{}", r.run, r.start, r.stage_label());
            out.push(Finding { metric, a: id(p.a), b: id(p.b), difference: d, text });
        }
    }
    out
}

/// The findings as two Markdown lists: larger than the spread, then within noise.
pub fn markdown(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let list = |beyond: bool| -> String {
        let items: Vec<String> = findings.iter().filter(|f| f.beyond_noise() == beyond).map(|f| format!("- {}\n", f.text)).collect();
        if items.is_empty() { "- none\n".into() } else { items.concat() }
    };
    format!("Larger than the spread:\n\n{}\nWithin noise:\n\n{}", list(true), list(false))
}
