//! A micro-batch of pairs laid out for one forward pass: chosen and rejected share the prompt.

use burn::tensor::Tensor;
use ladder_model::{ForwardMode, Tokens, PAD_SEGMENT};

use crate::loss::{group_sums, selected_logprobs};
use crate::model::LanguageModel;

use super::Pair;

/// A micro-batch laid out one pair per row: `prompt | chosen | rejected | padding`, both
/// completions positioned right after the prompt, plus which hidden state predicts each
/// completion token.
pub(super) struct Layout {
    pub(super) ids: Vec<u32>,
    pub(super) positions: Vec<u32>,
    pub(super) segments: Vec<u32>,
    pub(super) batch: usize,
    pub(super) seq: usize,
    /// Flat index of the hidden state predicting each target token.
    pub(super) sources: Vec<usize>,
    pub(super) targets: Vec<u32>,
    /// Group of each target: `i` for pair i's chosen tokens, `n + i` for its rejected ones.
    pub(super) groups: Vec<usize>,
    /// Whether each target belongs to a chosen completion.
    pub(super) chosen: Vec<bool>,
    /// The prompts' images, pair by pair: pixel values `[patches, patch_dim]` and grids. Each
    /// prompt is in its row once, so its images go through the vision tower once per pair.
    pub(super) pixel_values: Vec<f32>,
    pub(super) grids: Vec<[usize; 3]>,
}

impl Layout {
    pub(super) fn new(pairs: &[Pair], pad_id: u32) -> Self {
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
pub(super) fn sequence_logps<M: LanguageModel>(model: &M, layout: &Layout, mode: ForwardMode) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let hidden = model.hidden_states(&layout.tokens(), layout.pixel_values.clone(), &layout.grids, mode);
    let (token_logps, mean_logits) = selected_logprobs(model.decoder(), hidden, &layout.sources, &layout.targets, mode);
    let sums = group_sums(token_logps.clone(), &layout.groups, 2 * layout.batch);
    (sums, token_logps, mean_logits)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
