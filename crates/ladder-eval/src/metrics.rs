//! The per-pair metrics together, and the benchmark's composite score
//! `(levenshtein_ratio + bleu) / 2`.

use serde::{Deserialize, Serialize};

use crate::bleu::bleu;
use crate::chrf::chrf;
use crate::edit::{cer, levenshtein_ratio, wer};

/// Every text metric of one prediction against its reference. Higher is better except for
/// `cer` and `wer`; all are in [0, 1] except those two, which are unbounded above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub score: f64,
    pub levenshtein_ratio: f64,
    pub bleu: f64,
    pub cer: f64,
    pub wer: f64,
    /// sacreBLEU chrF2 / 100.
    pub chrf: f64,
}

impl Metrics {
    pub fn compute(pred: &str, reference: &str) -> Metrics {
        let levenshtein_ratio = levenshtein_ratio(pred, reference);
        let bleu = bleu(pred, reference);
        Metrics {
            score: (levenshtein_ratio + bleu) / 2.0,
            levenshtein_ratio,
            bleu,
            cer: cer(pred, reference),
            wer: wer(pred, reference),
            chrf: chrf(pred, reference),
        }
    }
}

/// The DharmaOCR benchmark score: `(levenshtein_ratio + bleu) / 2`.
pub fn score(pred: &str, reference: &str) -> f64 {
    (levenshtein_ratio(pred, reference) + bleu(pred, reference)) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_is_the_mean_of_ratio_and_bleu() {
        let m = Metrics::compute("o gato subiu no telhado", "o gato subiu no muro");
        assert_eq!(m.score, (m.levenshtein_ratio + m.bleu) / 2.0);
        assert_eq!(m.score, score("o gato subiu no telhado", "o gato subiu no muro"));
        let m = Metrics::compute("", "");
        assert_eq!((m.score, m.cer, m.wer), (0.0, 0.0, 0.0));
    }
}
