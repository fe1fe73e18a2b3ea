//! Hugging Face decoder-only checkpoints (Llama, Qwen2, Mistral) and the Qwen2.5-VL
//! vision-language model as Burn modules: config, safetensors weights, LoRA adapters in PEFT's
//! format, and model sources (folders or the Hub cache).

pub mod config;
pub mod decoder;
pub mod error;
pub mod generate;
mod io;
pub mod kernels;
pub mod linear;
pub mod peft;
pub mod precision;
pub mod rope;
pub mod source;
pub mod vision;
pub mod vlm;
pub mod weights;

pub use config::{Architecture, DecoderConfig};
pub use decoder::{Decoder, KvCache, Tokens, PAD_SEGMENT};
pub use error::{ModelError, Result};
pub use generate::{generate, FinishReason, GenerateConfig, Generation, Request};
pub use io::{hex, process_alive, remove_stale, temp_path, write_atomic};
pub use linear::{ForwardMode, Linear, Lora};
pub use peft::{AdapterConfig, LoraSettings};
pub use source::ModelSource;
pub use vlm::{load_vlm, random_vlm, random_vlm_tensors, Images, LoadedVlm, VisionLanguageModel, VlmConfig, VlmLora};
pub use weights::{load_decoder, random_decoder, Loaded, StorageDtype, TensorFile};
