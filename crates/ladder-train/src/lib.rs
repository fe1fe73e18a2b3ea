//! Training for `ladder`: losses, AdamW and schedules, the one training loop every stage
//! shares, checkpoints, metrics and progress display, and the jobs built on them (`sft`, `dpo`,
//! `logprobs`, `generate`, `init`, `bench`).

pub mod bench;
pub mod checkpoint;
pub mod cuda_probe;
pub mod device;
pub mod dist;
pub mod dpo;
pub mod error;
pub mod evaluate;
pub mod fingerprint;
pub mod init;
pub mod generate;
pub mod interrupt;
pub mod lock;
pub mod logprobs;
pub mod merge;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod optim;
pub mod pairs;
pub mod precision;
pub mod option_error;
pub mod options;
pub mod outputs;
mod progress;
pub mod schedule;
pub mod setup;
pub mod sft;
pub mod stage;
pub mod trainer;
pub mod vlm;

pub use error::{Result, TrainError};
pub use model::LanguageModel;
pub use objective::{LossOutput, Objective, Sft};
pub use optim::{AdamW, AdamWConfig, OptimizerKind};
pub use schedule::SchedulerKind;
pub use stage::{Method, StageJob};
pub use interrupt::Interrupt;
pub use trainer::{train, LoopConfig, OnNonFinite, Summary};
