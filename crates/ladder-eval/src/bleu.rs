//! Sentence BLEU-4 as NLTK computes it: `sentence_bleu([ref.split()], pred.split(),
//! smoothing_function=SmoothingFunction().method1)` in `nltk/translate/bleu_score.py` (3.9),
//! following Papineni et al. 2002 with Chen & Cherry 2014 smoothing method 1.
//!
//! NLTK's edge cases, kept on purpose so scores compare with the benchmark's:
//! - no unigram matches at all (an empty hypothesis included) → 0, before any smoothing;
//! - a zero-match order gets precision `0.1 / max(1, hypothesis n-grams)`, so a hypothesis
//!   shorter than 4 tokens is smoothed rather than zeroed (its missing orders count as 0.1/1);
//! - brevity penalty 1 when the hypothesis is longer than the reference, else
//!   `exp(1 − r/h)` with r the (single) reference length.

use std::collections::HashMap;

use ladder_data::degeneration::py_split;

/// Chen & Cherry method 1's epsilon (NLTK's `SmoothingFunction(epsilon=0.1)` default).
const EPSILON: f64 = 0.1;
const MAX_ORDER: usize = 4;

fn ngram_counts<'a>(tokens: &'a [&'a str], n: usize) -> HashMap<&'a [&'a str], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// Clipped n-gram matches and the precision denominator (at least 1, as NLTK's
/// `modified_precision`).
fn modified_precision(hyp: &[&str], reference: &[&str], n: usize) -> (usize, usize) {
    let hyp_counts = ngram_counts(hyp, n);
    let ref_counts = ngram_counts(reference, n);
    let matches = hyp_counts.iter().map(|(g, c)| (*c).min(ref_counts.get(g).copied().unwrap_or(0))).sum();
    (matches, hyp_counts.values().sum::<usize>().max(1))
}

/// Sentence BLEU-4 of `pred` against the single reference `reference`, in [0, 1].
pub fn bleu(pred: &str, reference: &str) -> f64 {
    let hyp: Vec<&str> = py_split(pred).collect();
    let reference: Vec<&str> = py_split(reference).collect();
    let stats: Vec<(usize, usize)> = (1..=MAX_ORDER).map(|n| modified_precision(&hyp, &reference, n)).collect();
    if stats[0].0 == 0 {
        return 0.0;
    }
    let (h, r) = (hyp.len(), reference.len());
    // h > 0 here: there is at least one unigram match.
    let bp = if h > r { 1.0 } else { (1.0 - r as f64 / h as f64).exp() };
    let log_sum: f64 = stats
        .iter()
        .map(|&(m, d)| if m == 0 { (0.0 + EPSILON) / d as f64 } else { m as f64 / d as f64 })
        .map(|p| 0.25 * p.ln())
        .sum();
    bp * log_sum.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sentence_is_one() {
        assert!((bleu("o gato subiu no telhado", "o gato subiu no telhado") - 1.0).abs() < 1e-15);
    }

    #[test]
    fn no_unigram_match_or_empty_is_zero() {
        assert_eq!(bleu("abc def", "xyz"), 0.0);
        assert_eq!(bleu("", "xyz"), 0.0);
        assert_eq!(bleu("abc", ""), 0.0);
        assert_eq!(bleu("", ""), 0.0);
    }

    #[test]
    fn short_hypothesis_by_hand() {
        // One token, matching: p1 = 1, p2..p4 = 0.1/1 (no n-grams, denominator clamped to 1);
        // h = 1 < r = 3, so bp = exp(1 - 3).
        let expected = (1.0f64 - 3.0).exp() * (0.25 * (3.0 * 0.1f64.ln())).exp();
        assert!((bleu("gato", "o gato subiu") - expected).abs() < 1e-15);
    }

    #[test]
    fn clipping_by_hand() {
        // "the the the the" vs "the cat": p1 = 1/4 (clipped), p2..p4 smoothed: 0.1/3, 0.1/2, 0.1/1.
        // h = 4 > r = 2, so bp = 1.
        let expected = (0.25 * ((0.25f64).ln() + (0.1f64 / 3.0).ln() + (0.1f64 / 2.0).ln() + 0.1f64.ln())).exp();
        assert!((bleu("the the the the", "the cat") - expected).abs() < 1e-15);
    }
}
