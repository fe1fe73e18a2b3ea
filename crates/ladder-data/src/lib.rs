//! Datasets for `ladder`: JSONL and Parquet rows in TRL's formats, Hugging Face tokenizers and
//! chat templates, SFT tokenisation with loss masks, packing and batching, and detection of
//! degenerate (looping) generations.

pub mod batch;
pub mod chat_template;
pub mod degeneration;
pub mod error;
pub mod packing;
pub mod rows;
pub mod sft;
pub mod tokenizer;

pub use batch::{collate, Batch, PAD_SEGMENT};
pub use chat_template::{ChatTemplate, Message};
pub use degeneration::{Detector, Details, FinishReason, Rule, Verdict};
pub use error::{DataError, Result};
pub use packing::{pack, Packed};
pub use rows::{parse_row, read_rows, Dataset, Located, Origin, Prompt, ReadOptions, Row};
pub use sft::{completion_ids, tokenize_sft, Example, SftOptions, Tokenized};
pub use tokenizer::Tokenizer;
