//! What a training step minimises. One loop ([`crate::trainer::train`]) serves every stage;
//! each stage supplies an [`Objective`] (SFT here; DPO builds on the same trait).

use burn::tensor::Tensor;
use ladder_data::{collate, Batch, Packed};
use ladder_model::{Decoder, ForwardMode, Tokens};

use crate::loss::target_logprobs;

/// The loss of a micro-batch and the numbers worth logging.
pub struct LossOutput {
    /// Scalar loss, already divided by the step's normaliser, so the gradients of the
    /// micro-batches of one optimizer step add up to the gradient of the step's mean loss.
    pub loss: Tensor<1>,
    /// Extra metrics summed over the step's micro-batches (e.g. DPO rewards), `(name, value)`.
    pub metrics: Vec<(&'static str, f64)>,
}

/// A training objective over items of type `Item` (a tokenised example, a preference pair...).
pub trait Objective {
    type Item: Clone;

    /// How much an item weighs in the step's mean (SFT: its target tokens).
    fn weight(&self, item: &Self::Item) -> usize;

    /// Tokens an item feeds through the model (for throughput).
    fn tokens(&self, item: &Self::Item) -> usize;

    /// Loss of `items`, divided by `norm` (the total weight of the optimizer step).
    fn loss(&self, model: &Decoder, items: &[Self::Item], norm: f64, mode: ForwardMode) -> LossOutput;
}

/// Supervised fine-tuning: mean next-token cross-entropy over target tokens.
pub struct Sft {
    pub pad_id: u32,
}

impl Objective for Sft {
    type Item = Packed;

    fn weight(&self, item: &Packed) -> usize {
        item.targets.iter().skip(1).filter(|t| **t).count()
    }

    fn tokens(&self, item: &Packed) -> usize {
        item.input_ids.len()
    }

    fn loss(&self, model: &Decoder, items: &[Packed], norm: f64, mode: ForwardMode) -> LossOutput {
        let batch: Batch = collate(items, self.pad_id);
        let tokens = Tokens::new(&batch.input_ids, batch.batch_size, batch.seq_len)
            .positions(&batch.position_ids)
            .segments(&batch.segment_ids);
        let logits = model.forward(&tokens, mode);
        let logp = target_logprobs(logits, &batch.input_ids, &batch.targets, &model.device());
        LossOutput {
            loss: logp.sum().neg() / norm,
            metrics: Vec::new(),
        }
    }
}
