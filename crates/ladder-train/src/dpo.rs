//! `ladder dpo`: direct preference optimisation through the shared loop, with TRL's
//! `DPOTrainer` semantics (losses, tokenisation, metric names) and three reference policies.
//!
//! Departures from TRL, each on purpose:
//! - chosen and rejected share one pass over the prompt (`prompt | chosen | rejected` in one
//!   row, see [`ladder_model::Tokens::shared_prefix`]), so long prompts are paid once;
//! - the LM head runs only at completion positions ([`crate::loss::selected_logprobs`]);
//! - with gradient accumulation, losses are normalised by the whole optimizer step (pairs,
//!   chosen tokens), not averaged per micro-batch.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::activation::{log_sigmoid, relu};
use burn::tensor::{Device, Tensor, TensorData};
use ladder_data::{preference_ids, preference_ids_with_images, read_rows, ImageConfig, Preprocessed, ReadOptions, Row, Tokenizer};
use ladder_model::{Decoder, ForwardMode, Tokens, PAD_SEGMENT};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io, Result, TrainError};
use crate::loss::{group_sums, selected_logprobs};
use crate::model::LanguageModel;
use crate::objective::{LossOutput, Objective};
use crate::stage::{self, Method, StageJob};
use crate::trainer::Summary;

/// The preference loss (TRL's `loss_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// `−log σ(βΔ)`; with label smoothing ε, cDPO's `−(1−ε) log σ(βΔ) − ε log σ(−βΔ)`.
    Sigmoid,
    /// IPO: `(Δ̄ − 1/(2β))²` on length-normalised log-ratios.
    Ipo,
    /// SLiC's hinge: `relu(1 − βΔ)`.
    Hinge,
    /// Robust DPO: `(−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε)`.
    Robust,
}

impl FromStr for DpoLoss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sigmoid" => Ok(DpoLoss::Sigmoid),
            "ipo" => Ok(DpoLoss::Ipo),
            "hinge" => Ok(DpoLoss::Hinge),
            "robust" => Ok(DpoLoss::Robust),
            _ => Err(format!("unknown loss {s:?}; expected sigmoid, ipo, hinge or robust")),
        }
    }
}

impl std::fmt::Display for DpoLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            DpoLoss::Sigmoid => "sigmoid",
            DpoLoss::Ipo => "ipo",
            DpoLoss::Hinge => "hinge",
            DpoLoss::Robust => "robust",
        };
        f.write_str(name)
    }
}

/// Where the reference log-probabilities come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// The policy with its (new) LoRA adapter switched off: the base, no second copy.
    AdapterOff,
    /// A frozen copy of the starting model (base + `--adapter` when continuing one).
    Frozen,
    /// The starting model's log-probs, computed once before training and cached on disk.
    Precomputed,
}

impl FromStr for ReferenceKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "adapter-off" => Ok(ReferenceKind::AdapterOff),
            "frozen" => Ok(ReferenceKind::Frozen),
            "precomputed" => Ok(ReferenceKind::Precomputed),
            _ => Err(format!("unknown reference {s:?}; expected adapter-off, frozen or precomputed")),
        }
    }
}

/// The DPO half of a job's options.
#[derive(Clone, Debug, Serialize)]
pub struct DpoSettings {
    pub beta: f64,
    pub loss: DpoLoss,
    pub label_smoothing: f64,
    /// Weight of the chosen completion's mean NLL added to the loss (RPO).
    pub sft_weight: f64,
    pub reference: ReferenceKind,
    /// Cache folder for precomputed reference log-probs.
    pub reference_cache: PathBuf,
    /// Longest prompt kept whole.
    pub max_prompt_len: Option<usize>,
    /// Cut long prompts from the left instead of skipping their pairs.
    pub truncate_prompts: bool,
}

/// Everything `ladder dpo` needs, resolved from flags and `--config`.
#[derive(Clone, Debug, Serialize)]
pub struct DpoJob {
    #[serde(flatten)]
    pub stage: StageJob,
    #[serde(flatten)]
    pub dpo: DpoSettings,
}

/// A tokenised preference pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// `file:line` of its row.
    pub origin: String,
    pub prompt: Vec<u32>,
    /// Chosen completion ids as TRL 1.16 tokenizes them (`ladder_data::preference_ids`, as
    /// `ladder logprobs`): EOS appended to text, the template's end of turn for a conversation.
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// Reference log-probs `(chosen, rejected)` when precomputed.
    pub reference: Option<(f64, f64)>,
    /// The prompt's images, in the order of its image tokens (none for text).
    pub images: Vec<Arc<Preprocessed>>,
}

/// Tokenised pairs and the counts worth reporting.
#[derive(Debug, Default)]
pub struct Prepared {
    pub pairs: Vec<Pair>,
    pub skipped_rows: usize,
    pub skipped_long_prompts: usize,
    pub truncated_prompts: usize,
    pub truncated_completions: usize,
}

/// Reads and tokenises preference rows; bad rows stop the job with their `file:line` unless
/// `skip_bad_rows`, and long prompts are skipped or cut as configured. Rows with images need
/// `images`, a vision-language model's image processor; a missing or unreadable image stops
/// the job naming its row.
pub fn prepare(job: &DpoJob, tok: &Tokenizer, images: Option<&ImageConfig>) -> Result<Prepared> {
    let mut out = Prepared::default();
    let skip = job.stage.skip_bad_rows;
    for path in &job.stage.data {
        let dataset = read_rows(path, &ReadOptions { skip_bad_rows: skip })?;
        out.skipped_rows += dataset.skipped;
        for row in &dataset.rows {
            let origin = format!("{}:{}", row.origin.file.display(), row.origin.line);
            let pixels = match images {
                _ if row.value.images().is_empty() => Vec::new(),
                Some(cfg) => crate::vlm::row_images(row, cfg)?,
                None => return Err(crate::vlm::text_model_error(row)),
            };
            let counts: Vec<usize> = images.map_or(Vec::new(), |cfg| pixels.iter().map(|p| p.num_tokens(cfg.merge_size)).collect());
            let pair = match &row.value {
                Row::Preference { prompt, chosen, rejected, .. } => check_pair(chosen, rejected)
                    .and_then(|()| {
                        let (p, c, r) = match pixels.is_empty() {
                            true => preference_ids(tok, prompt, chosen, rejected),
                            false => preference_ids_with_images(tok, prompt, chosen, rejected, &counts),
                        }
                        .map_err(|e| e.to_string())?;
                        if p.is_empty() {
                            return Err("the prompt encodes to no tokens, so nothing predicts the first completion token".into());
                        }
                        Ok(Pair { origin: origin.clone(), prompt: p, chosen: c, rejected: r, reference: None, images: pixels.clone() })
                    }),
                _ => Err("`ladder dpo` needs {\"prompt\",\"chosen\",\"rejected\"} rows".to_string()),
            };
            match pair {
                Ok(pair) => {
                    if let Some(pair) = fit(pair, &job.stage, &job.dpo, &mut out) {
                        out.pairs.push(pair);
                    }
                }
                Err(message) if skip => {
                    tracing::warn!("{origin}: {message} (skipped)");
                    out.skipped_rows += 1;
                }
                Err(message) => return Err(TrainError::Invalid(format!("{origin}: {message}"))),
            }
        }
    }
    if out.skipped_long_prompts > 0 {
        tracing::warn!(
            skipped = out.skipped_long_prompts,
            max_prompt_len = ?job.dpo.max_prompt_len,
            "pairs skipped: prompt longer than --max-prompt-len (--truncate-prompts keeps their last tokens instead)"
        );
    }
    if out.truncated_prompts + out.truncated_completions > 0 {
        tracing::warn!(prompts = out.truncated_prompts, completions = out.truncated_completions, "truncated to fit");
    }
    if out.pairs.is_empty() {
        return Err(TrainError::Invalid("no preference pairs left to train on".into()));
    }
    Ok(out)
}

fn check_pair(chosen: &str, rejected: &str) -> std::result::Result<(), String> {
    if chosen.trim().is_empty() {
        return Err("\"chosen\" is empty".into());
    }
    if rejected.trim().is_empty() {
        return Err("\"rejected\" is empty".into());
    }
    if chosen == rejected {
        return Err("\"chosen\" and \"rejected\" are identical, so the pair carries no preference".into());
    }
    Ok(())
}

/// Applies `--max-prompt-len` and `--max-seq-len`; `None` when the pair is skipped.
fn fit(mut pair: Pair, stage: &StageJob, dpo: &DpoSettings, counts: &mut Prepared) -> Option<Pair> {
    if let Some(max) = dpo.max_prompt_len.filter(|&m| pair.prompt.len() > m) {
        // Cutting a prompt with images would cut into its image tokens.
        if !dpo.truncate_prompts || max == 0 || !pair.images.is_empty() {
            counts.skipped_long_prompts += 1;
            return None;
        }
        pair.prompt.drain(..pair.prompt.len() - max);
        counts.truncated_prompts += 1;
    }
    if let Some(max) = stage.max_seq_len {
        let room = max.saturating_sub(pair.prompt.len());
        if room == 0 {
            counts.skipped_long_prompts += 1;
            return None;
        }
        if pair.chosen.len() > room || pair.rejected.len() > room {
            pair.chosen.truncate(room);
            pair.rejected.truncate(room);
            counts.truncated_completions += 1;
        }
    }
    Some(pair)
}

/// A micro-batch laid out one pair per row: `prompt | chosen | rejected | padding`, both
/// completions positioned right after the prompt, plus which hidden state predicts each
/// completion token.
struct Layout {
    ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Vec<u32>,
    batch: usize,
    seq: usize,
    /// Flat index of the hidden state predicting each target token.
    sources: Vec<usize>,
    targets: Vec<u32>,
    /// Group of each target: `i` for pair i's chosen tokens, `n + i` for its rejected ones.
    groups: Vec<usize>,
    /// Whether each target belongs to a chosen completion.
    chosen: Vec<bool>,
    /// The prompts' images, pair by pair: pixel values `[patches, patch_dim]` and grids. Each
    /// prompt is in its row once, so its images go through the vision tower once per pair.
    pixel_values: Vec<f32>,
    grids: Vec<[usize; 3]>,
}

impl Layout {
    fn new(pairs: &[Pair], pad_id: u32) -> Self {
        let n = pairs.len();
        let seq = pairs.iter().map(|p| p.prompt.len() + p.chosen.len() + p.rejected.len()).max().unwrap_or(0);
        let mut l = Layout {
            ids: Vec::with_capacity(n * seq),
            positions: Vec::with_capacity(n * seq),
            segments: Vec::with_capacity(n * seq),
            batch: n,
            seq,
            sources: Vec::new(),
            targets: Vec::new(),
            groups: Vec::new(),
            chosen: Vec::new(),
            pixel_values: Vec::new(),
            grids: Vec::new(),
        };
        for (i, pair) in pairs.iter().enumerate() {
            for image in &pair.images {
                l.pixel_values.extend_from_slice(&image.pixel_values);
                l.grids.push(image.grid_thw);
            }
            let (p, c, r) = (pair.prompt.len() as u32, pair.chosen.len() as u32, pair.rejected.len() as u32);
            let row = i * seq;
            l.ids.extend(pair.prompt.iter().chain(&pair.chosen).chain(&pair.rejected));
            l.positions.extend((0..p).chain(p..p + c).chain(p..p + r));
            l.segments.extend((0..p).map(|_| 0).chain((0..c).map(|_| 1)).chain((0..r).map(|_| 2)));
            let pad = seq - (p + c + r) as usize;
            l.ids.extend(std::iter::repeat_n(pad_id, pad));
            l.positions.extend(std::iter::repeat_n(0, pad));
            l.segments.extend(std::iter::repeat_n(PAD_SEGMENT, pad));
            // The first token of each completion is predicted by the last prompt token.
            let last_prompt = row + p as usize - 1;
            for (k, &token) in pair.chosen.iter().enumerate() {
                l.sources.push(if k == 0 { last_prompt } else { row + p as usize + k - 1 });
                l.targets.push(token);
                l.groups.push(i);
                l.chosen.push(true);
            }
            let start = row + (p + c) as usize;
            for (k, &token) in pair.rejected.iter().enumerate() {
                l.sources.push(if k == 0 { last_prompt } else { start + k - 1 });
                l.targets.push(token);
                l.groups.push(n + i);
                l.chosen.push(false);
            }
        }
        l
    }

    fn tokens(&self) -> Tokens<'_> {
        Tokens::new(&self.ids, self.batch, self.seq)
            .positions(&self.positions)
            .segments(&self.segments)
            .shared_prefix()
    }
}

/// Summed completion log-probs of every pair, `[2n]` (chosen then rejected), and the per-token
/// log-probs and mean logits behind them.
fn sequence_logps<M: LanguageModel>(model: &M, layout: &Layout, mode: ForwardMode) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let hidden = model.hidden_states(&layout.tokens(), layout.pixel_values.clone(), &layout.grids, mode);
    let (token_logps, mean_logits) = selected_logprobs(model.decoder(), hidden, &layout.sources, &layout.targets, mode);
    let sums = group_sums(token_logps.clone(), &layout.groups, 2 * layout.batch);
    (sums, token_logps, mean_logits)
}

/// Per-pair loss from the policy-minus-reference log-ratios of chosen and rejected.
///
/// # Shapes
/// - inputs: `[n]`, output: `[n]`
pub fn pair_losses(
    loss: DpoLoss,
    beta: f64,
    label_smoothing: f64,
    chosen_logratio: Tensor<1>,
    rejected_logratio: Tensor<1>,
    chosen_len: Tensor<1>,
    rejected_len: Tensor<1>,
) -> Tensor<1> {
    let eps = label_smoothing;
    match loss {
        DpoLoss::Sigmoid | DpoLoss::Robust => {
            let z = (chosen_logratio - rejected_logratio) * beta;
            let clean = log_sigmoid(z.clone()) * -(1.0 - eps);
            let flipped = log_sigmoid(z.neg()) * eps;
            match loss {
                DpoLoss::Sigmoid => clean - flipped,
                _ => (clean + flipped) / (1.0 - 2.0 * eps),
            }
        }
        DpoLoss::Hinge => relu(((chosen_logratio - rejected_logratio) * beta).neg() + 1.0),
        DpoLoss::Ipo => {
            let delta = chosen_logratio / chosen_len - rejected_logratio / rejected_len;
            (delta - 1.0 / (2.0 * beta)).square()
        }
    }
}

/// The reference the objective compares against during training.
pub enum Reference<M = Decoder> {
    /// The policy itself with adapters off.
    AdapterOff,
    /// A frozen model, forwarded with its adapters on.
    Frozen(Box<M>),
    /// Values stored in each [`Pair`].
    Precomputed,
}

/// The DPO objective, for text and vision-language models alike.
pub struct Dpo<M = Decoder> {
    pub settings: DpoSettings,
    pub reference: Reference<M>,
    pub pad_id: u32,
}

/// The normalisers of one optimizer step.
pub struct DpoNorm {
    pairs: f64,
    chosen_tokens: f64,
    rejected_tokens: f64,
}

fn host(t: Tensor<1>) -> Vec<f64> {
    ladder_model::weights::host(t).into_iter().map(f64::from).collect()
}

impl<M: LanguageModel> Objective<M> for Dpo<M> {
    type Item = Pair;
    type Norm = DpoNorm;

    fn norm(&self, items: &[&Pair]) -> DpoNorm {
        DpoNorm {
            pairs: items.len().max(1) as f64,
            chosen_tokens: items.iter().map(|p| p.chosen.len()).sum::<usize>().max(1) as f64,
            rejected_tokens: items.iter().map(|p| p.rejected.len()).sum::<usize>().max(1) as f64,
        }
    }

    fn tokens(&self, item: &Pair) -> usize {
        item.prompt.len() + item.chosen.len() + item.rejected.len()
    }

    fn origin(&self, item: &Pair) -> Option<String> {
        Some(item.origin.clone())
    }

    fn loss(&self, model: &M, pairs: &[Pair], norm: &DpoNorm, mode: ForwardMode) -> LossOutput {
        let n = pairs.len();
        let device = model.device();
        let layout = Layout::new(pairs, self.pad_id);
        let (policy, token_logps, mean_logits) = sequence_logps(model, &layout, mode);
        let reference = match &self.reference {
            Reference::AdapterOff => sequence_logps(model, &layout, ForwardMode { adapters: false, train: false }).0.detach(),
            Reference::Frozen(frozen) => sequence_logps(frozen.as_ref(), &layout, ForwardMode { adapters: true, train: false }).0.detach(),
            Reference::Precomputed => {
                let values: Vec<f32> = pairs
                    .iter()
                    .map(|p| p.reference.expect("precomputed before training").0 as f32)
                    .chain(pairs.iter().map(|p| p.reference.expect("precomputed before training").1 as f32))
                    .collect();
                Tensor::from_data(TensorData::new(values, [2 * n]), &device)
            }
        };
        let logratio = policy.clone() - reference.clone();
        let lengths = |f: fn(&Pair) -> usize| {
            Tensor::<1>::from_data(TensorData::new(pairs.iter().map(|p| f(p) as f32).collect(), [n]), &device)
        };
        let s = &self.settings;
        let per_pair = pair_losses(
            s.loss,
            s.beta,
            s.label_smoothing,
            logratio.clone().narrow(0, 0, n),
            logratio.narrow(0, n, n),
            lengths(|p| p.chosen.len()),
            lengths(|p| p.rejected.len()),
        );
        let mut loss = per_pair.sum() / norm.pairs;
        // Host-side metrics, TRL's names, already divided by the step's normalisers.
        let (pol, refs, logits) = (host(policy), host(reference), host(mean_logits));
        let chosen_mask: Vec<f32> = layout.chosen.iter().map(|&c| c as u8 as f32).collect();
        if s.sft_weight > 0.0 {
            let mask = Tensor::<1>::from_data(TensorData::new(chosen_mask, [layout.targets.len()]), &device);
            let nll = (token_logps * mask).sum().neg() / norm.chosen_tokens;
            loss = loss + nll * s.sft_weight;
        }
        let (mut rc, mut rr, mut acc, mut lc, mut lr) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let (reward_c, reward_r) = (s.beta * (pol[i] - refs[i]), s.beta * (pol[n + i] - refs[n + i]));
            rc += reward_c;
            rr += reward_r;
            acc += (reward_c > reward_r) as u8 as f64;
            lc += pol[i];
            lr += pol[n + i];
        }
        let (mut logits_c, mut logits_r) = (0.0, 0.0);
        for (k, &is_chosen) in layout.chosen.iter().enumerate() {
            if is_chosen {
                logits_c += logits[k];
            } else {
                logits_r += logits[k];
            }
        }
        let p = norm.pairs;
        LossOutput {
            loss,
            metrics: vec![
                ("rewards/chosen", rc / p),
                ("rewards/rejected", rr / p),
                ("rewards/accuracies", acc / p),
                ("rewards/margins", (rc - rr) / p),
                ("logps/chosen", lc / p),
                ("logps/rejected", lr / p),
                ("logits/chosen", logits_c / norm.chosen_tokens),
                ("logits/rejected", logits_r / norm.rejected_tokens),
            ],
        }
    }

    fn progress(&self, metrics: &[(&'static str, f64)]) -> String {
        let get = |name: &str| metrics.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |m| m.1);
        format!(" acc {:.2} margin {:.3}", get("rewards/accuracies"), get("rewards/margins"))
    }
}

/// Reference log-probs `(chosen, rejected)` of every pair in batches, without gradients.
pub fn reference_logps<M: LanguageModel>(model: &M, pairs: &[Pair], pad_id: u32, batch_size: usize, mode: ForwardMode) -> Vec<(f64, f64)> {
    let bar = crate::progress::bar(pairs.len(), 0, "pairs");
    bar.set_prefix("reference");
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let layout = Layout::new(chunk, pad_id);
        let sums = host(sequence_logps(model, &layout, mode).0.detach());
        let n = chunk.len();
        out.extend((0..n).map(|i| (sums[i], sums[n + i])));
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    out
}

/// What the precomputed-reference cache did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// A cache file existed but failed its checks; it was recomputed and replaced.
    Recomputed,
}

/// The cache file: reference log-probs of every pair, keyed and checksummed. Values are the
/// f32 sums the model computed; JSON holds them exactly (an f32 survives serde_json's f64
/// round trip, which may be one f64 ulp off).
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    fingerprint: String,
    chosen: Vec<f32>,
    rejected: Vec<f32>,
    checksum: String,
}

const CACHE_FORMAT: &str = "ladder-reference-logps/1";

fn checksum(chosen: &[f32], rejected: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in chosen.iter().chain(rejected) {
        h.update(v.to_le_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fingerprint of everything the reference log-probs depend on: the reference weights (every
/// `.safetensors` file of the model folder, and the adapter's files), whether adapters are on,
/// and the token ids of every pair (which capture the data, the tokenizer, the chat template
/// and the truncation settings).
pub fn fingerprint(model_dir: &Path, adapter: Option<&Path>, adapters_on: bool, pairs: &[Pair]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT.as_bytes());
    let mut files: Vec<PathBuf> = std::fs::read_dir(model_dir)
        .map_err(io(model_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if let Some(a) = adapter {
        files.push(a.join("adapter_model.safetensors"));
        files.push(a.join("adapter_config.json"));
    }
    for file in &files {
        h.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        std::io::copy(&mut f, &mut h).map_err(io(file))?;
    }
    h.update([adapters_on as u8]);
    for p in pairs {
        for part in [&p.prompt, &p.chosen, &p.rejected] {
            h.update((part.len() as u64).to_le_bytes());
            for id in part.iter() {
                h.update(id.to_le_bytes());
            }
        }
        // The token ids do not capture an image's pixels (text pairs hash as before).
        for image in &p.images {
            for g in image.grid_thw {
                h.update((g as u64).to_le_bytes());
            }
            for v in &image.pixel_values {
                h.update(v.to_le_bytes());
            }
        }
    }
    Ok(hex(&h.finalize()))
}

/// Reads a cache file, trusting it only if it parses, carries the expected fingerprint and
/// pair count, and its checksum matches its values.
fn read_cache(path: &Path, fingerprint: &str, n: usize) -> std::result::Result<Vec<(f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: CacheFile = serde_json::from_str(&text).map_err(|e| format!("unreadable ({e})"))?;
    if file.format != CACHE_FORMAT || file.fingerprint != fingerprint {
        return Err("written for other inputs".into());
    }
    if file.chosen.len() != n || file.rejected.len() != n {
        return Err(format!("holds {} pairs, expected {n}", file.chosen.len()));
    }
    if checksum(&file.chosen, &file.rejected) != file.checksum {
        return Err("checksum mismatch (corrupted)".into());
    }
    Ok(file.chosen.into_iter().zip(file.rejected).map(|(c, r)| (c as f64, r as f64)).collect())
}

fn write_cache(path: &Path, fingerprint: &str, values: &[(f64, f64)]) -> Result<()> {
    let (chosen, rejected): (Vec<f32>, Vec<f32>) = values.iter().map(|&(c, r)| (c as f32, r as f32)).unzip();
    let file = CacheFile {
        format: CACHE_FORMAT.into(),
        fingerprint: fingerprint.into(),
        checksum: checksum(&chosen, &rejected),
        chosen,
        rejected,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    Ok(ladder_model::write_atomic(path, &serde_json::to_vec(&file).expect("serialisable"))?)
}

/// What a finished job reports.
#[derive(Clone, Debug, Serialize)]
pub struct DpoReport {
    pub out: PathBuf,
    pub pairs: usize,
    pub skipped_rows: usize,
    pub skipped_long_prompts: usize,
    pub truncated_prompts: usize,
    pub truncated_completions: usize,
    pub reference: ReferenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_cache: Option<CacheOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_cache_file: Option<PathBuf>,
    pub summary: Summary,
}

/// The starting model as the reference sees it: loaded again from `--model` (+ `--adapter`),
/// frozen, so that a resumed run still compares against where training began.
fn starting_model(job: &DpoJob, device: &Device) -> Result<Decoder> {
    let loaded = crate::setup::load(&job.stage.model, job.stage.adapter.as_deref(), device)?;
    Ok(loaded.model.no_grad())
}

/// Runs the job: load, tokenise, set up the reference, train, save. Bad input fails before
/// anything is written. A Qwen2.5-VL model folder trains through the same loop, each pair's
/// images going through the vision tower once (the prompt is shared by both completions).
pub fn run(job: &DpoJob) -> Result<DpoReport> {
    let (_, vision) = crate::vlm::detect(&job.stage.model)?;
    if !job.stage.lora_vision.is_empty() && !vision {
        return Err(TrainError::Invalid("--lora-vision needs a vision-language model (Qwen2.5-VL)".into()));
    }
    let s = &job.dpo;
    let config = serde_json::to_value(job).expect("serialisable");
    let (prepared, (cache, cache_file), summary) = if vision {
        let stage = crate::vlm::load(&job.stage)?;
        let mut prepared = prepare(job, &stage.tokenizer, Some(&stage.images))?;
        let start = || crate::vlm::starting_model(&job.stage, &stage.device);
        let (reference, cache) = reference(job, &mut prepared, &stage.model, stage.resume_dir.is_some(), stage.pad_id, start)?;
        let objective = Dpo { settings: s.clone(), reference, pad_id: stage.pad_id };
        let saver = crate::vlm::VlmSaver { base: &job.stage.model, source_dir: &stage.source_dir, lora: &stage.lora };
        let summary = stage::run_with(&job.stage, stage.model, stage.resume_dir.as_deref(), &stage.device, &saver, &objective, &prepared.pairs, config)?;
        (prepared, cache, summary)
    } else {
        let stage = stage::load(&job.stage)?;
        let mut prepared = prepare(job, &stage.tokenizer, None)?;
        let start = || starting_model(job, &stage.device);
        let (reference, cache) = reference(job, &mut prepared, &stage.model, stage.resume_dir.is_some(), stage.pad_id, start)?;
        let objective = Dpo { settings: s.clone(), reference, pad_id: stage.pad_id };
        let summary = stage::run(&job.stage, stage, &objective, &prepared.pairs, config)?;
        (prepared, cache, summary)
    };
    Ok(DpoReport {
        out: job.stage.out.clone(),
        pairs: prepared.pairs.len(),
        skipped_rows: prepared.skipped_rows,
        skipped_long_prompts: prepared.skipped_long_prompts,
        truncated_prompts: prepared.truncated_prompts,
        truncated_completions: prepared.truncated_completions,
        reference: s.reference,
        reference_cache: cache,
        reference_cache_file: cache_file,
        summary,
    })
}

/// What the reference cache did (hit, miss, written), and its file.
type CacheReport = (Option<CacheOutcome>, Option<PathBuf>);

/// Sets up the reference for `model` (the policy as loaded); `start` loads the starting model
/// again, frozen. A precomputed reference is stored in `prepared`'s pairs, with what its cache
/// did and the cache file.
fn reference<M: LanguageModel>(
    job: &DpoJob,
    prepared: &mut Prepared,
    model: &M,
    resuming: bool,
    pad_id: u32,
    start: impl Fn() -> Result<M>,
) -> Result<(Reference<M>, CacheReport)> {
    let s = &job.dpo;
    tracing::info!(pairs = prepared.pairs.len(), reference = ?s.reference, loss = %s.loss, beta = s.beta, "dpo");
    Ok(match s.reference {
        ReferenceKind::AdapterOff => {
            if job.stage.adapter.is_some() || matches!(job.stage.method, Method::Full) {
                return Err(TrainError::Invalid(
                    "--reference adapter-off needs a new LoRA adapter; use frozen or precomputed".into(),
                ));
            }
            (Reference::AdapterOff, (None, None))
        }
        ReferenceKind::Frozen => (Reference::Frozen(Box::new(start()?)), (None, None)),
        ReferenceKind::Precomputed => {
            // A new adapter starts as the identity (B = 0): its reference is the base.
            let adapters_on = job.stage.adapter.is_some();
            let model_dir = ladder_model::ModelSource::parse(&job.stage.model)?.resolve()?;
            let key = fingerprint(&model_dir, job.stage.adapter.as_deref(), adapters_on, &prepared.pairs)?;
            let path = s.reference_cache.join("reference-logps").join(format!("{key}.json"));
            let (values, cache) = match read_cache(&path, &key, prepared.pairs.len()) {
                Ok(values) => {
                    tracing::info!(path = %path.display(), "reference log-probs: cache hit");
                    (values, CacheOutcome::Hit)
                }
                Err(why) => {
                    let existed = path.exists();
                    if existed {
                        tracing::warn!(path = %path.display(), "reference cache not trusted: {why}; recomputing");
                    }
                    let mode = ForwardMode { adapters: adapters_on, train: false };
                    // Never on trainable weights: each forward would record an autodiff graph
                    // that no backward pass frees (full fine-tuning, 61 pairs: 21 GB RSS).
                    let values = if resuming {
                        reference_logps(&start()?, &prepared.pairs, pad_id, job.stage.train.batch_size, mode)
                    } else {
                        reference_logps(&model.clone().no_grad(), &prepared.pairs, pad_id, job.stage.train.batch_size, mode)
                    };
                    write_cache(&path, &key, &values)?;
                    (values, if existed { CacheOutcome::Recomputed } else { CacheOutcome::Miss })
                }
            };
            for (pair, v) in prepared.pairs.iter_mut().zip(values) {
                pair.reference = Some(v);
            }
            (Reference::Precomputed, (Some(cache), Some(path)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    fn losses(loss: DpoLoss, eps: f64) -> Vec<f32> {
        // Two pairs: log-ratio differences Δ = 2 - (-1) = 3 and 0.5 - 1.5 = -1; lengths 4/2, 1/5.
        let out = pair_losses(loss, 0.5, eps, t(&[2.0, 0.5]), t(&[-1.0, 1.5]), t(&[4.0, 1.0]), t(&[2.0, 5.0]));
        ladder_model::weights::host(out)
    }

    fn log_sigmoid(x: f64) -> f64 {
        -(1.0 + (-x).exp()).ln()
    }

    fn close(a: &[f32], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sigmoid_hinge_ipo_and_robust_by_hand() {
        // βΔ = 1.5 and -0.5.
        close(&losses(DpoLoss::Sigmoid, 0.0), &[-log_sigmoid(1.5), -log_sigmoid(-0.5)]);
        let eps = 0.1;
        let cdpo = |z: f64| -(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
        close(&losses(DpoLoss::Sigmoid, eps), &[cdpo(1.5), cdpo(-0.5)]);
        let robust = |z: f64| (-(1.0 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1.0 - 2.0 * eps);
        close(&losses(DpoLoss::Robust, eps), &[robust(1.5), robust(-0.5)]);
        close(&losses(DpoLoss::Hinge, 0.0), &[0.0, 1.5]);
        // IPO: (2/4 - (-1)/2 - 1)² = 0 and (0.5/1 - 1.5/5 - 1)² = 0.64.
        close(&losses(DpoLoss::Ipo, 0.0), &[0.0, 0.64]);
    }

    #[test]
    fn layout_shares_the_prompt_and_points_each_completion_at_it() {
        let pair = |p: Vec<u32>, c: Vec<u32>, r: Vec<u32>| Pair { origin: String::new(), prompt: p, chosen: c, rejected: r, reference: None, images: Vec::new() };
        let l = Layout::new(&[pair(vec![1, 2], vec![3, 4], vec![5]), pair(vec![6], vec![7], vec![8, 9])], 0);
        assert_eq!((l.batch, l.seq), (2, 5));
        assert_eq!(l.ids, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
        assert_eq!(l.positions, vec![0, 1, 2, 3, 2, 0, 1, 1, 2, 0]);
        assert_eq!(l.segments[..5], [0, 0, 1, 1, 2]);
        assert_eq!(l.segments[9], PAD_SEGMENT);
        // Token 3 and token 5 are both predicted by the last prompt token (index 1); token 4 by 3.
        assert_eq!(l.sources, vec![1, 2, 1, 5, 5, 7]);
        assert_eq!(l.targets, vec![3, 4, 5, 7, 8, 9]);
        assert_eq!(l.groups, vec![0, 0, 2, 1, 3, 3]);
    }

    #[test]
    fn bad_pairs_are_refused() {
        assert!(check_pair("", "x").unwrap_err().contains("\"chosen\" is empty"));
        assert!(check_pair("x", " ").unwrap_err().contains("\"rejected\" is empty"));
        assert!(check_pair("same", "same").unwrap_err().contains("identical"));
        assert!(check_pair("a", "b").is_ok());
    }

    #[test]
    fn cache_is_trusted_only_when_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let values = vec![(-1.5, -2.25), (-0.125, -3.0)];
        write_cache(&path, "abc", &values).unwrap();
        assert_eq!(read_cache(&path, "abc", 2).unwrap(), values);
        assert!(read_cache(&path, "other", 2).unwrap_err().contains("other inputs"));
        assert!(read_cache(&path, "abc", 3).is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("-2.25", "-2.5")).unwrap();
        assert!(read_cache(&path, "abc", 2).unwrap_err().contains("checksum"));
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(read_cache(&path, "abc", 2).unwrap_err().contains("unreadable"));
    }
}
