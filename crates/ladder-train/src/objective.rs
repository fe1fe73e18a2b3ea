//! What a training step minimises. One loop ([`crate::trainer::train`]) serves every stage;
//! each stage supplies an [`Objective`]: [`Sft`] here, [`crate::dpo::Dpo`] for preferences.

use burn::tensor::Tensor;
use ladder_data::{collate, Batch, Packed};
use ladder_model::{Decoder, ForwardMode, Tokens};

use crate::loss::selected_logprobs;
use crate::model::LanguageModel;

/// The loss of a micro-batch and the numbers worth logging.
pub struct LossOutput {
    /// Scalar loss, already divided by the step's normaliser, so the gradients of the
    /// micro-batches of one optimizer step add up to the gradient of the step's mean loss.
    pub loss: Tensor<1>,
    /// Extra metrics, also divided by the step's normalisers, so that summing them over the
    /// step's micro-batches gives the step's value (e.g. DPO rewards), `(name, value)`.
    pub metrics: Vec<(&'static str, f64)>,
}

/// A training objective over items of type `Item` (a tokenised example, a preference pair...)
/// for models of type `M`.
pub trait Objective<M: LanguageModel = Decoder> {
    type Item: Clone;
    /// The normalisers of one optimizer step (SFT: its target tokens), computed over all of
    /// the step's items before any micro-batch runs, so gradient accumulation gives the same
    /// update as one large batch.
    type Norm;

    fn norm(&self, items: &[&Self::Item]) -> Self::Norm;

    /// Tokens an item feeds through the model (for throughput).
    fn tokens(&self, item: &Self::Item) -> usize;

    /// The positions an item's longest sequence needs (text rows; `None` when unknown, as for
    /// image rows, whose multimodal positions are not their length). The loop refuses an item
    /// that needs more than the model's `max_position_embeddings`, naming its origin.
    fn positions(&self, _item: &Self::Item) -> Option<usize> {
        None
    }

    /// Where an item came from (`file:line`), for errors about a batch.
    fn origin(&self, _item: &Self::Item) -> Option<String> {
        None
    }

    /// Loss of `items`, divided by the step's `norm`.
    fn loss(&self, model: &M, items: &[Self::Item], norm: &Self::Norm, mode: ForwardMode) -> LossOutput;

    /// The progress bar's extra text for a step's metrics (e.g. DPO accuracy and margin).
    fn progress(&self, _metrics: &[(&'static str, f64)]) -> String {
        String::new()
    }
}

/// Supervised fine-tuning: mean next-token cross-entropy over target tokens, for text and
/// vision-language models alike (an item's images travel with its tokens).
pub struct Sft {
    pub pad_id: u32,
}

impl<M: LanguageModel> Objective<M> for Sft {
    type Item = Packed;
    type Norm = f64;

    fn norm(&self, items: &[&Packed]) -> f64 {
        let targets: usize = items.iter().map(|i| i.targets.iter().skip(1).filter(|t| **t).count()).sum();
        targets.max(1) as f64
    }

    fn tokens(&self, item: &Packed) -> usize {
        item.input_ids.len()
    }

    fn loss(&self, model: &M, items: &[Packed], norm: &f64, mode: ForwardMode) -> LossOutput {
        let mut batch: Batch = collate(items, self.pad_id);
        let pixel_values = std::mem::take(&mut batch.pixel_values);
        let tokens = Tokens::new(&batch.input_ids, batch.batch_size, batch.seq_len)
            .positions(&batch.position_ids)
            .segments(&batch.segment_ids);
        // Only target positions reach the LM head and the softmax (prompt tokens are no
        // targets by default, and their vocabulary logits would be thrown away).
        let (sources, next): (Vec<usize>, Vec<u32>) = batch
            .targets
            .iter()
            .enumerate()
            .filter(|&(i, &is_target)| is_target && i % batch.seq_len > 0)
            .map(|(i, _)| (i - 1, batch.input_ids[i]))
            .unzip();
        let hidden = model.hidden_states(&tokens, pixel_values, &batch.grids, mode);
        let (logp, _) = selected_logprobs(model.decoder(), hidden, &sources, &next, mode);
        LossOutput {
            loss: logp.sum().neg() / *norm,
            metrics: Vec::new(),
        }
    }
}
