//! Text-degeneration (repetition-loop) detection for generated pages. The deciding rule is the
//! DharmaOCR benchmark's, as reported for its evaluation notebook: the generation hit the token
//! limit without EOS **and** its last 15 characters occur 4 or more times in it, counted like
//! Python's `str.count`. Three detectors from the literature are always measured and reported
//! next to it, and each can be switched on as a flagging rule:
//!
//! - the smallest-period repeated suffix (the loop's unit and how often it repeats);
//! - rep-n, `1 − unique n-grams / n-grams` over whitespace tokens (Welleck et al. 2019,
//!   "Neural Text Generation with Unlikelihood Training");
//! - the zlib compression ratio `bytes / zlib.compress(bytes)` with a 2.4 threshold, as Whisper's
//!   `transcribe.py` uses it to reject looping segments.
//!
//! Every length is in Unicode scalar values (Python `str` characters), never UTF-8 bytes,
//! except the zlib ratio, which Whisper defines over the UTF-8 bytes.

use std::collections::HashSet;
use std::io::Write;

use serde::{Deserialize, Serialize};

/// Why a generation stopped. Generation writes it next to each output so evaluation can tell a
/// page that ended by itself from one cut off by `max_new_tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model emitted its end-of-sequence token.
    Eos,
    /// A stop string matched.
    Stop,
    /// The token limit was reached: the only case in which the benchmark rule can fire.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FinishReason {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "eos" => Ok(FinishReason::Eos),
            "stop" => Ok(FinishReason::Stop),
            "length" => Ok(FinishReason::Length),
            other => Err(format!("unknown finish reason {other:?}; expected \"eos\", \"stop\" or \"length\"")),
        }
    }
}

/// The rule that flagged a generation; serialised as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The benchmark rule: cut by length and the last `suffix_chars` characters recur.
    SuffixCount,
    Period,
    RepN,
    Zlib,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::SuffixCount => "suffix_count",
            Rule::Period => "period",
            Rule::RepN => "rep_n",
            Rule::Zlib => "zlib",
        }
    }
}

/// Smallest-period repeated suffix as a flagging rule (off by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeriodRule {
    pub enabled: bool,
    /// Longest unit searched, in characters; bounds the cost at `chars × max_period` on text that
    /// does not loop.
    pub max_period: usize,
    /// Flag when the unit repeats at least this many whole times...
    pub min_repeats: usize,
    /// ...and the periodic suffix covers at least this many characters, so that a row of 30
    /// underscores in a form is not a loop.
    pub min_chars: usize,
}

impl Default for PeriodRule {
    fn default() -> Self {
        PeriodRule { enabled: false, max_period: 500, min_repeats: 4, min_chars: 60 }
    }
}

/// rep-n as a flagging rule (off by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepNRule {
    pub enabled: bool,
    /// n-gram order over whitespace tokens; Welleck et al. report rep-4.
    pub n: usize,
    /// Flag when rep-n is strictly above this.
    pub threshold: f64,
}

impl Default for RepNRule {
    fn default() -> Self {
        RepNRule { enabled: false, n: 4, threshold: 0.5 }
    }
}

/// Compression ratio as a flagging rule (off by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZlibRule {
    pub enabled: bool,
    /// Flag when the ratio is strictly above this; Whisper's `compression_ratio_threshold`.
    pub threshold: f64,
}

impl Default for ZlibRule {
    fn default() -> Self {
        ZlibRule { enabled: false, threshold: 2.4 }
    }
}

/// Detector configuration. The default applies the benchmark rule only, so degeneration rates
/// are comparable with the published ones; the other rules are measured either way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Detector {
    /// Benchmark rule: how many trailing characters form the probe (15).
    pub suffix_chars: usize,
    /// Benchmark rule: how many non-overlapping occurrences of the probe make a loop (4).
    pub min_suffix_count: usize,
    pub period: PeriodRule,
    pub rep_n: RepNRule,
    pub zlib: ZlibRule,
    /// The optional rules, like the benchmark rule, fire only on generations cut by the token
    /// limit: a page that ended with EOS is not a runaway loop, however repetitive (tables are).
    pub extras_require_length: bool,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            suffix_chars: 15,
            min_suffix_count: 4,
            period: PeriodRule::default(),
            rep_n: RepNRule::default(),
            zlib: ZlibRule::default(),
            extras_require_length: true,
        }
    }
}

/// The numbers behind a verdict, for every rule whether or not it is enabled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// Length of the text in characters.
    pub chars: usize,
    /// Non-overlapping occurrences of the last `suffix_chars` characters (Python `str.count`).
    pub suffix_count: usize,
    /// Unit length of the longest periodic suffix (0 when no unit repeats at least twice).
    pub period: usize,
    /// Whole repetitions of that unit.
    pub period_repeats: usize,
    /// Characters covered by the periodic suffix, a trailing partial unit included.
    pub period_chars: usize,
    /// rep-n over whitespace tokens (0 when there are fewer than n tokens).
    pub rep_n: f64,
    /// UTF-8 bytes / zlib-compressed bytes (level 6, as Python's `zlib.compress` default).
    pub zlib_ratio: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub degenerate: bool,
    /// The first rule that fired, in the order benchmark, period, rep-n, zlib.
    pub rule: Option<Rule>,
    pub details: Details,
}

impl Detector {
    /// Measures every detector on `text`, whatever the finish reason.
    pub fn measure(&self, text: &str) -> Details {
        let chars: Vec<char> = text.chars().collect();
        let suffix: String = chars[chars.len().saturating_sub(self.suffix_chars)..].iter().collect();
        let (period, period_chars) = periodic_suffix(&chars, self.period.max_period);
        Details {
            chars: chars.len(),
            suffix_count: py_count(text, &suffix),
            period,
            period_repeats: period_chars.checked_div(period).unwrap_or(0),
            period_chars,
            rep_n: rep_n(text, self.rep_n.n),
            zlib_ratio: zlib_ratio(text),
        }
    }

    /// Decides whether a generation is degenerate. Only the benchmark rule is on by default.
    pub fn check(&self, text: &str, finish_reason: FinishReason) -> Verdict {
        let details = self.measure(text);
        let cut = finish_reason == FinishReason::Length;
        let extras = cut || !self.extras_require_length;
        let rule = if cut && details.suffix_count >= self.min_suffix_count {
            Some(Rule::SuffixCount)
        } else if extras
            && self.period.enabled
            && details.period > 0
            && details.period_repeats >= self.period.min_repeats
            && details.period_chars >= self.period.min_chars
        {
            Some(Rule::Period)
        } else if extras && self.rep_n.enabled && details.rep_n > self.rep_n.threshold {
            Some(Rule::RepN)
        } else if extras && self.zlib.enabled && details.zlib_ratio > self.zlib.threshold {
            Some(Rule::Zlib)
        } else {
            None
        };
        Verdict { degenerate: rule.is_some(), rule, details }
    }
}

/// Python's `str.isspace`: Rust's `char::is_whitespace` plus the four ASCII information
/// separators U+001C..U+001F, which Python counts as whitespace and Unicode does not.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Whitespace tokens exactly as Python's `str.split()` with no argument makes them, so that
/// BLEU and rep-n agree with NLTK and the benchmark notebook on every input.
pub fn py_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `text.count(sub)`: non-overlapping occurrences scanning left to right
/// (`"aaaa".count("aa") == 2`); an empty `sub` occurs `len(text) + 1` times.
pub fn py_count(text: &str, sub: &str) -> usize {
    // `str::matches` is leftmost non-overlapping too, and yields chars + 1 empty matches.
    text.matches(sub).count()
}

/// The longest suffix of `chars` that is periodic with a unit of at most `max_period` characters
/// repeated at least twice: returns `(period, covered_chars)`, or `(0, 0)` when there is none.
/// Among periods covering the same length the smallest wins, so `"abab…"` reports 2, not 4.
/// A suffix is periodic with period p when `c[i] == c[i + p]` throughout, which also counts a
/// loop cut off mid-unit by the token limit.
pub fn periodic_suffix(chars: &[char], max_period: usize) -> (usize, usize) {
    let n = chars.len();
    let mut best = (0, 0);
    for p in 1..=max_period.min(n / 2) {
        let mut covered = p;
        while covered < n && chars[n - 1 - covered] == chars[n - 1 - covered + p] {
            covered += 1;
        }
        if covered >= 2 * p && covered > best.1 {
            best = (p, covered);
            if covered == n {
                break; // nothing longer exists, and ties go to the smaller period
            }
        }
    }
    best
}

/// rep-n (Welleck et al. 2019): `1 − |unique n-grams| / |n-grams|` over whitespace tokens;
/// 0 when the text has fewer than `n` tokens (or `n` is 0).
pub fn rep_n(text: &str, n: usize) -> f64 {
    let tokens: Vec<&str> = py_split(text).collect();
    if n == 0 || tokens.len() < n {
        return 0.0;
    }
    let total = tokens.len() - n + 1;
    let unique: HashSet<&[&str]> = tokens.windows(n).collect();
    1.0 - unique.len() as f64 / total as f64
}

/// Whisper's compression ratio, `len(b) / len(zlib.compress(b))` with `b` the UTF-8 bytes, at
/// zlib's default level 6. The pure-Rust zlib-rs backend may pick different matches than C zlib
/// on some inputs, so the ratio can differ from Python's in the last digits.
pub fn zlib_ratio(text: &str) -> f64 {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    enc.write_all(text.as_bytes()).expect("in-memory zlib");
    let compressed = enc.finish().expect("in-memory zlib");
    text.len() as f64 / compressed.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use FinishReason::{Eos, Length, Stop};

    fn det() -> Detector {
        Detector::default()
    }

    #[test]
    fn py_count_is_non_overlapping() {
        // Values from CPython 3.11.
        assert_eq!(py_count("aaaa", "aa"), 2);
        assert_eq!(py_count("aaaaa", "aa"), 2);
        assert_eq!(py_count("abababa", "aba"), 2);
        assert_eq!(py_count("abc", ""), 4);
        assert_eq!(py_count("", ""), 1);
        assert_eq!(py_count("ação", ""), 5, "empty pattern counts chars, not bytes");
        assert_eq!(py_count("ab", "abc"), 0);
    }

    #[test]
    fn py_split_matches_python() {
        // "a\x1cb\u00a0c  d\u3000e\n".split() == ['a', 'b', 'c', 'd', 'e']
        assert_eq!(py_split("a\u{1c}b\u{a0}c  d\u{3000}e\n").collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
        assert_eq!(py_split("  ").count(), 0);
        // U+200B (zero-width space) is not whitespace in Python either.
        assert_eq!(py_split("a\u{200b}b").count(), 1);
    }

    #[test]
    fn character_loop_fires() {
        let text = format!("Texto normal. {}", "a".repeat(300));
        let v = det().check(&text, Length);
        assert!(v.degenerate);
        assert_eq!(v.rule, Some(Rule::SuffixCount));
        assert_eq!(v.details.suffix_count, 20, "300 a's hold 20 non-overlapping runs of 15");
        assert_eq!((v.details.period, v.details.period_repeats, v.details.period_chars), (1, 300, 300));
    }

    #[test]
    fn word_loop_fires() {
        let text = format!("Recebemos o documento e {}", "o documento ".repeat(40));
        let v = det().check(&text, Length);
        assert_eq!(v.rule, Some(Rule::SuffixCount));
        assert_eq!(v.details.period, "o documento ".len());
        assert_eq!(v.details.period_repeats, 40);
        // 4-grams over "o documento o documento ...": only two distinct.
        assert!(v.details.rep_n > 0.9, "{}", v.details.rep_n);
        assert!(v.details.zlib_ratio > 2.4);
    }

    #[test]
    fn line_loop_fires() {
        let text = format!("CERTIDÃO\n{}", "Processo nº 123/2020 — arquivado.\n".repeat(12));
        let v = det().check(&text, Length);
        assert_eq!(v.rule, Some(Rule::SuffixCount));
        assert_eq!(v.details.period, "Processo nº 123/2020 — arquivado.\n".chars().count());
        assert_eq!(v.details.period_repeats, 12);
    }

    #[test]
    fn json_field_loop_fires_even_cut_mid_unit() {
        let unit = "\"header\": \"OFÍCIO\", ";
        let text = format!("{{\"text\": \"x\",\n{}\"hea", unit.repeat(10));
        let v = det().check(&text, Length);
        assert!(v.degenerate);
        // The suffix `", "header": "hea`-ish probe occurs once per unit.
        assert_eq!(v.details.suffix_count, 10);
        assert_eq!(v.details.period, unit.chars().count());
        assert_eq!(v.details.period_repeats, 10);
        assert_eq!(v.details.period_chars, 10 * unit.chars().count() + 4);
    }

    #[test]
    fn loop_finished_by_eos_or_stop_does_not_fire() {
        let text = "o documento ".repeat(40);
        for reason in [Eos, Stop] {
            let v = det().check(&text, reason);
            assert!(!v.degenerate, "{reason}");
            // The 15-char probe spans 1.25 units of 12, so occurrences are 2 units apart.
            assert_eq!(v.details.suffix_count, 20, "measured anyway");
        }
    }

    #[test]
    fn suffix_seen_three_times_does_not_fire() {
        let text = "Fim da página. ".repeat(3);
        let v = det().check(&text, Length);
        assert_eq!(v.details.suffix_count, 3);
        assert!(!v.degenerate);
        let text = "Fim da página. ".repeat(4);
        assert!(det().check(&text, Length).degenerate);
    }

    #[test]
    fn long_normal_text_does_not_fire() {
        let text = "Aos vinte e três dias do mês de março de dois mil e vinte, na sede da Prefeitura \
            Municipal de São José, reuniram-se os membros da comissão para deliberar sobre o \
            processo licitatório nº 45/2020. Após a leitura da ata anterior, o presidente \
            apresentou as propostas recebidas, que foram analisadas uma a uma. Nada mais havendo \
            a tratar, foi lavrada a presente ata, que vai assinada por todos os presentes.";
        let mut d = det();
        d.period.enabled = true;
        d.rep_n.enabled = true;
        d.zlib.enabled = true;
        let v = d.check(text, Length);
        assert!(!v.degenerate, "{v:?}");
        assert_eq!(v.details.suffix_count, 1);
        assert_eq!(v.details.rep_n, 0.0);
        assert!(v.details.zlib_ratio < 2.4);
    }

    #[test]
    fn unicode_counts_chars_not_bytes() {
        // 15 chars of "ção" (3 chars, 4 bytes) = "çãoçãoçãoçãoção"; the byte-based probe
        // would cover 15 bytes, i.e. a misaligned 3.75 units.
        let text = format!("Relatório: {}", "ção".repeat(20));
        let d = det().measure(&text);
        assert_eq!(d.chars, 11 + 60);
        assert_eq!(d.suffix_count, 4, "60 chars hold four 15-char probes");
        assert_eq!((d.period, d.period_repeats), (3, 20));
        // CJK: each char is 3 bytes.
        let text = "文件编号".repeat(10);
        let d = det().measure(&text);
        assert_eq!(d.chars, 40);
        assert_eq!(d.suffix_count, 2, "probe of 15 chars = 3.75 units, 40 chars hold two");
        assert_eq!((d.period, d.period_chars), (4, 40));
    }

    #[test]
    fn short_and_empty_texts() {
        // A text shorter than the probe is its own probe: counted once, as in Python.
        let d = det().measure("abc");
        assert_eq!(d.suffix_count, 1);
        let d = det().measure("");
        assert_eq!((d.chars, d.suffix_count, d.period, d.rep_n), (0, 1, 0, 0.0));
        assert_eq!(d.zlib_ratio, 0.0);
        assert!(!det().check("", Length).degenerate);
    }

    #[test]
    fn periodic_suffix_prefers_smallest_unit_and_needs_two_repeats() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(periodic_suffix(&chars("abababab"), 500), (2, 8));
        assert_eq!(periodic_suffix(&chars("xyzabcabcab"), 500), (3, 8));
        assert_eq!(periodic_suffix(&chars("abcd"), 500), (0, 0));
        assert_eq!(periodic_suffix(&chars("xabcabc"), 2), (0, 0), "unit longer than max_period");
    }

    #[test]
    fn optional_rules_fire_when_enabled() {
        // A loop too short for the benchmark probe to recur 4 times.
        let text = format!("{}{}", "Lorem ipsum dolor sit amet consectetur. ", "ab ".repeat(12));
        assert!(!det().check(&text, Length).degenerate);
        let mut d = det();
        d.period.enabled = true;
        d.period.min_chars = 30;
        let v = d.check(&text, Length);
        assert_eq!((v.rule, v.details.period, v.details.period_repeats), (Some(Rule::Period), 3, 12));
        assert!(!d.check(&text, Eos).degenerate, "extras require a length finish by default");
        d.extras_require_length = false;
        assert!(d.check(&text, Eos).degenerate);

        let mut d = det();
        d.rep_n.enabled = true;
        d.rep_n.n = 2;
        let text = "um dois um dois um dois um dois três";
        let v = d.check(text, Length);
        // bigrams: 8, unique: "um dois", "dois um", "dois três" = 3 -> 1 - 3/8
        assert_eq!(v.details.rep_n, 1.0 - 3.0 / 8.0);
        assert_eq!(v.rule, Some(Rule::RepN));

        let mut d = det();
        d.zlib.enabled = true;
        d.suffix_chars = 200; // keep the benchmark rule quiet
        let v = d.check(&"x y ".repeat(30), Length);
        assert_eq!(v.rule, Some(Rule::Zlib));
    }

    #[test]
    fn zlib_ratio_is_close_to_python() {
        // len(s.encode()) / len(zlib.compress(s.encode())) with CPython's zlib 1.2.13.
        assert_eq!(zlib_ratio(""), 0.0, "zlib.compress(b'') is 8 bytes");
        assert_eq!(zlib_ratio("a"), 1.0 / 9.0);
        // zlib-rs chooses matches differently from C zlib on repetitive input: within 10% here
        // and on every fixture of ladder-eval's tests/fixtures/metrics.json.
        let cases: [(&str, usize, f64); 3] = [
            ("a", 400, 400.0 / 14.0),
            ("hello world ", 50, 600.0 / 27.0),
            ("\"header\": \"OFÍCIO\", ", 40, 840.0 / 38.0),
        ];
        for (unit, times, python) in cases {
            let ratio = zlib_ratio(&unit.repeat(times));
            assert!((ratio - python).abs() / python < 0.1, "{unit:?}: {ratio} vs {python}");
        }
    }

    #[test]
    fn serde_names() {
        assert_eq!(serde_json::to_string(&Length).unwrap(), "\"length\"");
        assert_eq!(serde_json::from_str::<FinishReason>("\"eos\"").unwrap(), Eos);
        assert_eq!("stop".parse::<FinishReason>().unwrap(), Stop);
        assert!("max_tokens".parse::<FinishReason>().is_err());
        let v = det().check(&"a".repeat(100), Length);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["rule"], "suffix_count");
        assert_eq!(json["details"]["suffix_count"], 6);
        let d: Detector = serde_json::from_str(r#"{"min_suffix_count": 5, "zlib": {"enabled": true}}"#).unwrap();
        assert_eq!((d.min_suffix_count, d.suffix_chars, d.zlib.threshold), (5, 15, 2.4));
        assert!(serde_json::from_str::<Detector>(r#"{"suffix": 5}"#).is_err());
    }
}
