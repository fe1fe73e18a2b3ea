//! Datasets for `ladder`: JSONL and Parquet rows in TRL's formats, Hugging Face tokenizers and
//! chat templates, SFT tokenisation with loss masks, packing and batching, and detection of
//! degenerate (looping) generations; images for Qwen2-VL-style models (PIL-exact
//! preprocessing, rows with images, prompts with expanded image placeholders).

pub mod batch;
pub mod chat_template;
pub mod degeneration;
pub mod error;
pub mod image;
pub mod packing;
pub mod placeholders;
pub mod rows;
pub mod sft;
pub mod tokenizer;
pub mod vision;

pub use batch::{collate, Batch, PAD_SEGMENT};
pub use chat_template::{ChatTemplate, Message};
pub use degeneration::{Detector, Details, FinishReason, Rule, Verdict};
pub use error::{DataError, Result};
pub use self::image::{image_tokens, preprocess, smart_resize, Fit, FitCounts, ImageConfig, ImageSource, Preprocessed, RgbImage};
pub use packing::{pack, Packed};
pub use rows::{head_json_lines, parse_prompt_row, parse_row, read_json_lines, read_rows, Dataset, Located, Origin, Prompt, ReadOptions, Row};
pub use sft::{completion_ids, completion_tail, preference_ids, tokenize_sft, Example, SftOptions, Tokenized};
pub use tokenizer::Tokenizer;
pub use placeholders::{IMAGE_BLOCK, IMAGE_PAD};
pub use vision::{load_images, preference_ids_with_images, prompt_ids_with_images, tokenize_sft_with_images};
