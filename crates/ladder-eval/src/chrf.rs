//! chrF as sacreBLEU's default `CHRF()` sentence score (`sacrebleu/metrics/chrf.py`, 2.x):
//! character n-grams of orders 1 to 6 with whitespace removed, β = 2, no word n-grams, case kept,
//! and sacreBLEU's "effective order" averaging (precision and recall are averaged over the
//! orders that both strings have, then combined once) rather than chrF++.py's epsilon smoothing.
//! Returned in [0, 1]: sacreBLEU's 0–100 value divided by 100, to sit next to the other scores.

use std::collections::HashMap;

use ladder_data::degeneration::is_py_space;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

fn counts(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut out = HashMap::new();
    if chars.len() >= n {
        for gram in chars.windows(n) {
            *out.entry(gram).or_insert(0) += 1;
        }
    }
    out
}

/// Sentence chrF (chrF2) of `pred` against `reference`, in [0, 1].
pub fn chrf(pred: &str, reference: &str) -> f64 {
    // sacreBLEU drops whitespace with `''.join(line.split())`: Python's notion of whitespace.
    let hyp: Vec<char> = pred.chars().filter(|c| !is_py_space(*c)).collect();
    let refc: Vec<char> = reference.chars().filter(|c| !is_py_space(*c)).collect();
    let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0usize);
    for n in 1..=CHAR_ORDER {
        let (h, r) = (counts(&hyp, n), counts(&refc, n));
        let n_match: usize = h.iter().map(|(g, c)| (*c).min(r.get(g).copied().unwrap_or(0))).sum();
        // As sacreBLEU: hypothesis n-grams do not count when the reference has none.
        let n_hyp: usize = if r.is_empty() { 0 } else { h.values().sum() };
        let n_ref: usize = r.values().sum();
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    let factor = BETA * BETA;
    (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_disjoint() {
        assert!((chrf("Ofício nº 12", "Ofício nº 12") - 1.0).abs() < 1e-15);
        assert_eq!(chrf("abc", "xyz"), 0.0);
        assert_eq!(chrf("", "xyz"), 0.0);
        assert_eq!(chrf("", ""), 0.0);
    }

    #[test]
    fn whitespace_is_ignored() {
        assert_eq!(chrf("a b\nc", "abc"), chrf("abc", "abc"));
    }

    #[test]
    fn by_hand_two_chars() {
        // "ab" vs "ac": order 1: match 1 of 2 both ways; order 2: "ab" vs "ac", 0 of 1.
        // P = R = (0.5 + 0) / 2 = 0.25, and F_beta of equal P and R is P.
        assert!((chrf("ab", "ac") - 0.25).abs() < 1e-15);
    }
}
