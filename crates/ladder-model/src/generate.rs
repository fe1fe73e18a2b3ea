//! Batched autoregressive generation, as transformers' `GenerationMixin.generate` does it for
//! greedy search and sampling: logits processors in transformers' order (repetition penalty,
//! then temperature, top-k, top-p), EOS ids, stop strings and `max_new_tokens`.
//!
//! Prompts of different lengths are left-padded into one batch and each row keeps its own
//! positions (0 at its first real token), so a row's tokens equal running it alone. The
//! [`KvCache`] belongs to this function, not the model (style point 6). Finished rows leave
//! the batch. Where this differs from transformers:
//! - sampling draws from a `rand` `StdRng` seeded per row, so samples are reproducible and do
//!   not depend on the batch a row lands in, but are not torch's samples;
//! - the repetition penalty sees only the row's real tokens: transformers' batched, padded
//!   runs also penalise the pad token (unbatched runs agree with this);
//! - stop strings are searched in the decoded text (special tokens skipped) and the text is
//!   cut before the earliest one, as vLLM does; the ids keep the token that completed it.

use std::collections::HashSet;

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::decoder::{Decoder, KvCache, Tokens, PAD_SEGMENT};
use crate::linear::ForwardMode;
use crate::vlm::{Images, VisionLanguageModel};
use crate::weights::host;

/// Decoding options (transformers' `GenerationConfig` names where they exist).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateConfig {
    /// Most tokens generated per row (the EOS token included).
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy search (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens when sampling; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p when sampling; 1 disables.
    pub top_p: f64,
    /// transformers' `repetition_penalty`: seen tokens (prompt included) have positive logits
    /// divided and negative logits multiplied by it; 1 disables.
    pub repetition_penalty: f64,
    /// Stop when the decoded text contains any of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Base seed; row i samples from `StdRng` seeded with [`row_seed`]`(seed, i)`.
    pub seed: u64,
    /// Reuse keys and values through a [`KvCache`] (off: recompute the whole sequence each
    /// step, for checks and benchmarks).
    pub use_cache: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            stop: Vec::new(),
            seed: 0,
            use_cache: true,
        }
    }
}

impl GenerateConfig {
    /// Greedy search unless a positive temperature asks for sampling.
    pub fn sampling(&self) -> bool {
        self.temperature > 0.0
    }

    /// Checks the values, naming the option at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be ≥ 0 (0 is greedy), got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err("stop strings must not be empty".into());
        }
        Ok(())
    }
}

/// Why a row stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It produced an end-of-sequence token.
    Eos,
    /// Its text reached a stop string.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One row's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Decoded new text (special tokens skipped), cut before a stop string.
    pub text: String,
    /// New token ids, a final EOS included.
    pub token_ids: Vec<u32>,
    pub n_tokens: usize,
    pub finish_reason: FinishReason,
}

/// A prompt to continue.
#[derive(Clone, Debug)]
pub struct Request {
    /// Prompt token ids (non-empty).
    pub ids: Vec<u32>,
    /// Seed of this row's sampler; [`row_seed`] of the row's index keeps samples independent
    /// of batching.
    pub seed: u64,
}

/// The sampler seed of row `index` under base `seed` (SplitMix64 of both, so neighbouring
/// rows get unrelated streams).
pub fn row_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-row decoding state.
struct Row {
    seen: HashSet<u32>,
    ids: Vec<u32>,
    rng: rand::rngs::StdRng,
    done: Option<Generation>,
}

/// Generates a continuation of every request as one batch.
///
/// `eos_ids` end a row (config.json's `eos_token_id` list plus the tokenizer's EOS);
/// `decode` turns new ids into text (skipping special tokens) for stop strings and output.
pub fn generate(
    model: &Decoder,
    requests: &[Request],
    config: &GenerateConfig,
    eos_ids: &[u32],
    decode: &dyn Fn(&[u32]) -> String,
    mode: ForwardMode,
) -> Vec<Generation> {
    generate_with(model, requests, config, eos_ids, decode, mode, &mut |_| {})
}

/// [`generate`], calling `on_token(n)` after each decoding step with the number of tokens
/// that step produced (for progress display).
pub fn generate_with(
    model: &Decoder,
    requests: &[Request],
    config: &GenerateConfig,
    eos_ids: &[u32],
    decode: &dyn Fn(&[u32]) -> String,
    mode: ForwardMode,
    on_token: &mut dyn FnMut(usize),
) -> Vec<Generation> {
    decode_loop(model, None, requests, config, eos_ids, decode, mode, on_token)
}

/// [`generate_with`] for a vision-language model: `images` are the batch's images in the
/// order of their image tokens (row by row). The prompts go through the vision tower once, in
/// the prefill; decoding continues on the language model with the KV cache, whose positions
/// carry on from each row's largest multimodal position (always cached: recomputing would
/// run the vision tower at every step).
#[allow(clippy::too_many_arguments)]
pub fn generate_vlm(
    model: &VisionLanguageModel,
    images: Option<&Images>,
    requests: &[Request],
    config: &GenerateConfig,
    eos_ids: &[u32],
    decode: &dyn Fn(&[u32]) -> String,
    mode: ForwardMode,
    on_token: &mut dyn FnMut(usize),
) -> crate::Result<Vec<Generation>> {
    // Checked before decoding, so a mismatch is an error rather than a panic mid-batch.
    let width = requests.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let (ids, _, segments) = left_padded(requests.iter().map(|r| r.ids.as_slice()), width);
    model.mrope_positions(&Tokens::new(&ids, requests.len(), width).segments(&segments), images.map_or(&[], |i| i.grids))?;
    let prefill = |tokens: &Tokens, cache: &mut KvCache| {
        // Multimodal positions come from the image grids, not from the text positions.
        let tokens = Tokens { positions: None, ..tokens.clone() };
        model.hidden_cached(&tokens, images, cache, mode).expect("checked above")
    };
    let config = GenerateConfig { use_cache: true, ..config.clone() };
    Ok(decode_loop(&model.language_model, Some(&prefill), requests, &config, eos_ids, decode, mode, on_token))
}

/// A first cached pass that replaces the decoder's own (a vision-language model's prefill).
type Prefill<'a> = &'a dyn Fn(&Tokens, &mut KvCache) -> Tensor<3>;

/// The decoding loop; `prefill` replaces the first cached pass (a vision-language model's).
#[allow(clippy::too_many_arguments)]
fn decode_loop(
    model: &Decoder,
    prefill: Option<Prefill>,
    requests: &[Request],
    config: &GenerateConfig,
    eos_ids: &[u32],
    decode: &dyn Fn(&[u32]) -> String,
    mode: ForwardMode,
    on_token: &mut dyn FnMut(usize),
) -> Vec<Generation> {
    assert!(requests.iter().all(|r| !r.ids.is_empty()), "prompts must not be empty");
    let mut rows: Vec<Row> = requests
        .iter()
        .map(|r| Row {
            seen: r.ids.iter().copied().collect(),
            ids: Vec::new(),
            rng: rand::rngs::StdRng::seed_from_u64(r.seed),
            done: None,
        })
        .collect();
    if config.max_new_tokens == 0 || requests.is_empty() {
        return rows.iter().map(|_| finished(Vec::new(), String::new(), FinishReason::Length)).collect();
    }
    let eos: HashSet<u32> = eos_ids.iter().copied().collect();
    let vocab = model.config.vocab_size;
    // Left padding: every row's last real token sits in the last column.
    let width = requests.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let mut active: Vec<usize> = (0..requests.len()).collect();
    let mut cache = KvCache::new(model, requests.len());
    let mut logits = {
        let (ids, positions, segments) = left_padded(requests.iter().map(|r| r.ids.as_slice()), width);
        let tokens = Tokens::new(&ids, requests.len(), width).positions(&positions).segments(&segments);
        if let Some(prefill) = prefill {
            last_logits(model, prefill(&tokens, &mut cache), mode)
        } else if config.use_cache {
            last_logits(model, model.hidden_cached(&tokens, &mut cache, mode), mode)
        } else {
            last_logits(model, model.hidden(&tokens, mode), mode)
        }
    };
    loop {
        let mut next = Vec::with_capacity(active.len());
        for (slot, &r) in active.iter().enumerate() {
            let row = &mut rows[r];
            let scores = &mut logits[slot * vocab..(slot + 1) * vocab];
            let token = choose(scores, row, config);
            row.ids.push(token);
            row.seen.insert(token);
            next.push(token);
            row.done = if eos.contains(&token) {
                Some(finished(row.ids.clone(), decode(&row.ids), FinishReason::Eos))
            } else if let Some(cut) = stop_at(&config.stop, &row.ids, decode) {
                Some(finished(row.ids.clone(), cut, FinishReason::Stop))
            } else if row.ids.len() >= config.max_new_tokens {
                Some(finished(row.ids.clone(), decode(&row.ids), FinishReason::Length))
            } else {
                None
            };
        }
        on_token(next.len());
        let keep: Vec<usize> = (0..active.len()).filter(|&slot| rows[active[slot]].done.is_none()).collect();
        if keep.is_empty() {
            break;
        }
        let tokens: Vec<u32> = keep.iter().map(|&slot| next[slot]).collect();
        active = keep.iter().map(|&slot| active[slot]).collect();
        logits = if config.use_cache {
            cache.retain_rows(&keep);
            let step = Tokens::new(&tokens, tokens.len(), 1);
            last_logits(model, model.hidden_cached(&step, &mut cache, mode), mode)
        } else {
            // Recompute everything: the training forward on prompt + generated so far.
            let seqs: Vec<Vec<u32>> = active.iter().map(|&r| requests[r].ids.iter().chain(&rows[r].ids).copied().collect()).collect();
            let width = seqs.iter().map(Vec::len).max().unwrap_or(0);
            let (ids, positions, segments) = left_padded(seqs.iter().map(Vec::as_slice), width);
            let tokens = Tokens::new(&ids, seqs.len(), width).positions(&positions).segments(&segments);
            last_logits(model, model.hidden(&tokens, mode), mode)
        };
    }
    rows.into_iter().map(|r| r.done.expect("every row finishes")).collect()
}

fn finished(token_ids: Vec<u32>, text: String, finish_reason: FinishReason) -> Generation {
    Generation { n_tokens: token_ids.len(), text, token_ids, finish_reason }
}

/// Rows left-padded to `width`: ids (pad id 0), positions counting from each row's first
/// real token, and segments ([`PAD_SEGMENT`] on padding).
fn left_padded<'a>(rows: impl Iterator<Item = &'a [u32]>, width: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let (mut ids, mut positions, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        let pad = width - row.len();
        ids.extend(std::iter::repeat_n(0, pad).chain(row.iter().copied()));
        positions.extend(std::iter::repeat_n(0, pad).chain(0..row.len() as u32));
        segments.extend(std::iter::repeat_n(PAD_SEGMENT, pad).chain(std::iter::repeat_n(0, row.len())));
    }
    (ids, positions, segments)
}

/// Vocabulary logits of each row's last column, on the host: `[batch * vocab]`.
fn last_logits(model: &Decoder, hidden: Tensor<3>, mode: ForwardMode) -> Vec<f32> {
    let [b, t, h] = hidden.dims();
    let last = hidden.slice([0..b, t - 1..t, 0..h]);
    host(model.logits(last, mode))
}

/// The next token of `row` from its raw logits (modified in place).
fn choose(scores: &mut [f32], row: &mut Row, config: &GenerateConfig) -> u32 {
    if config.repetition_penalty != 1.0 {
        repetition_penalty(scores, &row.seen, config.repetition_penalty as f32);
    }
    if !config.sampling() {
        return argmax(scores);
    }
    let t = config.temperature as f32;
    scores.iter_mut().for_each(|s| *s /= t);
    if config.top_k > 0 {
        top_k(scores, config.top_k);
    }
    if config.top_p < 1.0 {
        top_p(scores, config.top_p);
    }
    sample(scores, &mut row.rng)
}

/// transformers' `RepetitionPenaltyLogitsProcessor`.
pub fn repetition_penalty(scores: &mut [f32], seen: &HashSet<u32>, penalty: f32) {
    for &id in seen {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
        }
    }
}

/// The first index of the largest score (torch's `argmax`).
pub fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

/// transformers' `TopKLogitsWarper`: scores below the k-th largest become −∞ (ties with it
/// stay).
pub fn top_k(scores: &mut [f32], k: usize) {
    let k = k.min(scores.len()).max(1);
    let mut sorted: Vec<f32> = scores.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    scores.iter_mut().filter(|s| **s < kth).for_each(|s| *s = f32::NEG_INFINITY);
}

/// transformers' `TopPLogitsWarper`: sorted ascending, tokens whose cumulative probability is
/// ≤ 1 − p become −∞; the most likely token always stays.
pub fn top_p(scores: &mut [f32], p: f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let probs = softmax(scores);
    let mut cumulative = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        cumulative += probs[i];
        if rank + 1 < order.len() && cumulative <= 1.0 - p {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

fn softmax(scores: &[f32]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = scores.iter().map(|&s| (s as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Draws from `softmax(scores)`.
fn sample(scores: &[f32], rng: &mut impl Rng) -> u32 {
    let probs = softmax(scores);
    let mut u: f64 = rng.random::<f64>();
    let mut last = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            last = i;
            if u < *p {
                return i as u32;
            }
            u -= p;
        }
    }
    last as u32
}

/// The text cut before the earliest stop string, if the decoded ids contain one.
fn stop_at(stop: &[String], ids: &[u32], decode: &dyn Fn(&[u32]) -> String) -> Option<String> {
    if stop.is_empty() {
        return None;
    }
    let mut text = decode(ids);
    let cut = stop.iter().filter_map(|s| text.find(s.as_str())).min()?;
    text.truncate(cut);
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, DecoderConfig};
    use crate::weights::random_decoder;
    use burn::tensor::Device;

    fn model() -> Decoder {
        let config = DecoderConfig {
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            ..DecoderConfig::new(Architecture::Qwen2, 40, 32, 48, 2, 4, 2)
        };
        random_decoder(&config, 0.6, 7, &Device::flex())
    }

    /// Token ids as letters, so stop strings have text to match.
    fn letters(ids: &[u32]) -> String {
        ids.iter().map(|&i| char::from(b'a' + (i % 26) as u8)).collect()
    }

    fn requests() -> Vec<Request> {
        [vec![1, 2, 3, 4, 5], vec![6, 7], vec![8, 9, 10]]
            .into_iter()
            .enumerate()
            .map(|(i, ids)| Request { ids, seed: row_seed(3, i as u64) })
            .collect()
    }

    fn run(requests: &[Request], config: &GenerateConfig, eos: &[u32]) -> Vec<Generation> {
        generate(&model(), requests, config, eos, &letters, ForwardMode::default())
    }

    fn greedy(n: usize) -> GenerateConfig {
        GenerateConfig { max_new_tokens: n, ..Default::default() }
    }

    #[test]
    fn processors_follow_transformers() {
        let seen: HashSet<u32> = [0, 1].into();
        let mut s = [2.0, -2.0, 1.0];
        repetition_penalty(&mut s, &seen, 2.0);
        assert_eq!(s, [1.0, -4.0, 1.0]);
        let mut s = [1.0, 3.0, 2.0, 3.0];
        top_k(&mut s, 2);
        assert_eq!(s, [f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY, 3.0]);
        let mut s = [1.0, 3.0, 2.0, 3.0];
        top_k(&mut s, 3);
        assert_eq!(s, [f32::NEG_INFINITY, 3.0, 2.0, 3.0]);
        // probs 0.5, 0.3, 0.2: p = 0.75 keeps the two likeliest (0.2 ≤ 0.25 is removed).
        let mut s = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        top_p(&mut s, 0.75);
        assert!(s[0].is_finite() && s[1].is_finite() && s[2] == f32::NEG_INFINITY);
        let mut s = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        top_p(&mut s, 0.01);
        assert!(s[0].is_finite() && s[1] == f32::NEG_INFINITY, "the likeliest token always stays");
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1, "first maximum, as torch");
    }

    #[test]
    fn cache_equals_recomputing_every_step() {
        let reqs = requests();
        let cached = run(&reqs, &greedy(12), &[]);
        let uncached = run(&reqs, &GenerateConfig { use_cache: false, ..greedy(12) }, &[]);
        assert_eq!(cached, uncached);
        assert!(cached.iter().all(|g| g.n_tokens == 12 && g.finish_reason == FinishReason::Length));
        let sampled = GenerateConfig { temperature: 0.9, top_p: 0.9, top_k: 20, repetition_penalty: 1.2, ..greedy(12) };
        let cached = run(&reqs, &sampled, &[]);
        let uncached = run(&reqs, &GenerateConfig { use_cache: false, ..sampled }, &[]);
        assert_eq!(cached, uncached);
    }

    #[test]
    fn batch_equals_rows_alone() {
        let reqs = requests();
        for config in [greedy(10), GenerateConfig { temperature: 1.0, repetition_penalty: 1.3, ..greedy(10) }] {
            let batched = run(&reqs, &config, &[]);
            for (i, r) in reqs.iter().enumerate() {
                let alone = run(std::slice::from_ref(r), &config, &[]);
                assert_eq!(alone[0], batched[i], "row {i}");
            }
        }
    }

    #[test]
    fn seeds_make_samples_reproducible() {
        let reqs = requests();
        let config = GenerateConfig { temperature: 1.5, ..greedy(16) };
        let a = run(&reqs, &config, &[]);
        assert_eq!(a, run(&reqs, &config, &[]));
        let reseeded: Vec<Request> = reqs.iter().map(|r| Request { seed: r.seed + 1, ..r.clone() }).collect();
        let b = run(&reseeded, &config, &[]);
        assert_ne!(a.iter().map(|g| &g.token_ids).collect::<Vec<_>>(), b.iter().map(|g| &g.token_ids).collect::<Vec<_>>());
        assert_ne!(row_seed(0, 1), row_seed(0, 2));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let reqs = requests();
        let greedy_out = run(&reqs, &greedy(10), &[]);
        let sampled = run(&reqs, &GenerateConfig { temperature: 2.0, top_k: 1, ..greedy(10) }, &[]);
        assert_eq!(greedy_out, sampled);
    }

    #[test]
    fn eos_and_stop_strings_end_rows() {
        let reqs = requests();
        let free = run(&reqs, &greedy(10), &[]);
        // Make row 0's third token an EOS id: every row stops right after its first occurrence
        // of it (row 0 at the latest there), and is unchanged before.
        let eos = free[0].token_ids[2];
        let out = run(&reqs, &greedy(10), &[eos]);
        for (o, f) in out.iter().zip(&free) {
            match f.token_ids.iter().position(|&t| t == eos) {
                Some(p) => {
                    assert_eq!(o.token_ids, f.token_ids[..p + 1]);
                    assert_eq!(o.finish_reason, FinishReason::Eos);
                }
                None => assert_eq!(o, f),
            }
        }
        // A stop string made of row 1's tokens 3-4 cuts its text before them.
        let text = letters(&free[1].token_ids);
        let stop = text[3..5].to_string();
        let cut = text.find(&stop).unwrap();
        let out = run(&reqs, &GenerateConfig { stop: vec![stop.clone()], ..greedy(10) }, &[]);
        assert_eq!(out[1].finish_reason, FinishReason::Stop);
        assert_eq!(out[1].text, text[..cut]);
        assert_eq!(out[1].token_ids, free[1].token_ids[..cut + 2]);
        assert_eq!(serde_json::to_string(&FinishReason::Stop).unwrap(), "\"stop\"");
    }

    #[test]
    fn zero_new_tokens_and_bad_options() {
        let out = run(&requests(), &greedy(0), &[]);
        assert!(out.iter().all(|g| g.n_tokens == 0 && g.finish_reason == FinishReason::Length));
        assert!(GenerateConfig { top_p: 0.0, ..greedy(1) }.validate().unwrap_err().contains("top_p"));
        assert!(GenerateConfig { temperature: -1.0, ..greedy(1) }.validate().is_err());
        let parsed: GenerateConfig = serde_json::from_str(r#"{"max_new_tokens": 3, "stop": ["\n"]}"#).unwrap();
        assert_eq!((parsed.max_new_tokens, parsed.temperature), (3, 0.0));
        assert!(serde_json::from_str::<GenerateConfig>(r#"{"max_tokens": 3}"#).is_err());
    }
}
