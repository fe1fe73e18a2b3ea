//! What the loop trains: a text [`Decoder`] or a Qwen2.5-VL [`VisionLanguageModel`]
//! (transformers' `AutoModelForCausalLM` / `AutoModelForImageTextToText`). The objectives only
//! need final hidden states of a batch, with its images, and the language model's head.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ladder_model::{Decoder, ForwardMode, Images, Tokens, VisionLanguageModel};

/// A causal language model the training loop can step: [`Decoder`] or [`VisionLanguageModel`].
pub trait LanguageModel: Module {
    fn device(&self) -> Device;

    /// The text decoder, whose head turns hidden states into logits.
    fn decoder(&self) -> &Decoder;

    /// Final hidden states of `tokens`, with the batch's images: `pixel_values` row-major
    /// `[patches, patch_dim]` and one `(t, h, w)` grid per image, in token order (both empty
    /// for text).
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    fn hidden_states(&self, tokens: &Tokens, pixel_values: Vec<f32>, grids: &[[usize; 3]], mode: ForwardMode) -> Tensor<3>;
}

impl LanguageModel for Decoder {
    fn device(&self) -> Device {
        Decoder::device(self)
    }

    fn decoder(&self) -> &Decoder {
        self
    }

    fn hidden_states(&self, tokens: &Tokens, _pixel_values: Vec<f32>, grids: &[[usize; 3]], mode: ForwardMode) -> Tensor<3> {
        // Image rows are refused for text models when the data is read.
        debug_assert!(grids.is_empty(), "a text decoder was given images");
        self.hidden(tokens, mode)
    }
}

impl LanguageModel for VisionLanguageModel {
    fn device(&self) -> Device {
        self.language_model.device()
    }

    fn decoder(&self) -> &Decoder {
        &self.language_model
    }

    fn hidden_states(&self, tokens: &Tokens, pixel_values: Vec<f32>, grids: &[[usize; 3]], mode: ForwardMode) -> Tensor<3> {
        // Every row's image-token count was checked against its images when it was tokenised,
        // so a mismatch here is a bug, not bad input.
        if grids.is_empty() {
            return self.hidden(tokens, None, mode).expect("text rows have no image tokens");
        }
        let device = LanguageModel::device(self);
        let images = Images::from_host(pixel_values, self.visual.config.patch_dim(), grids, &device).expect("preprocessed with the model's patch size");
        self.hidden(tokens, Some(&images), mode).expect("image tokens match the images")
    }
}
