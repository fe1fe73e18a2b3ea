//! Edit-distance metrics: the benchmark's Levenshtein ratio (as `rapidfuzz`'s
//! `Levenshtein.normalized_similarity`, except for two empty strings), and CER/WER (as `jiwer`
//! with no text transforms). All count Unicode scalar values (Python `str` characters) or
//! Python-`str.split()` words, never bytes.

use ladder_data::degeneration::py_split;

/// Unit-cost Levenshtein distance (insertions, deletions, substitutions), two-row dynamic
/// programming: O(len(a)·len(b)) time, O(len(b)) memory.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let (a, b) = if a.len() < b.len() { (b, a) } else { (a, b) };
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// `1 − char_edit_distance / max(len_pred, len_ref)`, in [0, 1]. Two empty strings score 0.0,
/// the benchmark's convention (rapidfuzz would say 1.0): an empty page is never a success.
pub fn levenshtein_ratio(pred: &str, reference: &str) -> f64 {
    let (p, r) = (chars(pred), chars(reference));
    let longest = p.len().max(r.len());
    if longest == 0 {
        return 0.0;
    }
    1.0 - edit_distance(&p, &r) as f64 / longest as f64
}

/// Errors over reference length, with our convention for an empty reference: 0.0 when the
/// prediction is empty too, otherwise 1.0. jiwer refuses empty references; dividing the
/// insertions by 1 instead would let one hallucinated page outweigh hundreds of good ones in a
/// mean, so the rate is capped at the value of a prediction sharing nothing with its reference.
fn rate(distance: usize, pred_len: usize, ref_len: usize) -> f64 {
    match (ref_len, pred_len) {
        (0, 0) => 0.0,
        (0, _) => 1.0,
        _ => distance as f64 / ref_len as f64,
    }
}

/// Character error rate: char edit distance / reference chars. Whitespace counts as characters
/// and nothing is stripped or case-folded (jiwer's default would strip both ends). Unbounded
/// above: a prediction longer than its reference can exceed 1.
pub fn cer(pred: &str, reference: &str) -> f64 {
    let (p, r) = (chars(pred), chars(reference));
    rate(edit_distance(&p, &r), p.len(), r.len())
}

/// Word error rate: word edit distance / reference words, words as Python's `str.split()`
/// makes them (so runs of whitespace and line breaks separate words alike). A reference of
/// only whitespace has no words and takes the empty-reference convention of [`cer`].
pub fn wer(pred: &str, reference: &str) -> f64 {
    let p: Vec<&str> = py_split(pred).collect();
    let r: Vec<&str> = py_split(reference).collect();
    rate(edit_distance(&p, &r), p.len(), r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_by_hand() {
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(edit_distance(&chars("sitting"), &chars("kitten")), 3);
        assert_eq!(edit_distance(&chars(""), &chars("abc")), 3);
        assert_eq!(edit_distance(&chars("flaw"), &chars("lawn")), 2);
        assert_eq!(edit_distance::<char>(&[], &[]), 0);
    }

    #[test]
    fn ratio_counts_chars_not_bytes() {
        // "ação" vs "acao": two substitutions over 4 chars (bytes would say 6 and 4).
        assert_eq!(levenshtein_ratio("ação", "acao"), 0.5);
        assert_eq!(levenshtein_ratio("文件", "文本"), 0.5);
        assert_eq!(levenshtein_ratio("same", "same"), 1.0);
        assert_eq!(levenshtein_ratio("", ""), 0.0, "benchmark convention");
        assert_eq!(levenshtein_ratio("abc", ""), 0.0);
        assert_eq!(levenshtein_ratio("kitten", "sitting"), 1.0 - 3.0 / 7.0);
    }

    #[test]
    fn cer_wer_and_empty_references() {
        assert_eq!(cer("kitten", "sitting"), 3.0 / 7.0);
        assert_eq!(cer("abcdef", "ab"), 2.0, "insertions can push CER past 1");
        assert_eq!(wer("o gato  subiu\n", "o gato dormiu"), 1.0 / 3.0);
        assert_eq!((cer("", ""), cer("x", ""), cer("", "x")), (0.0, 1.0, 1.0));
        assert_eq!((wer("", " \n"), wer("a b", "  ")), (0.0, 1.0));
    }
}
