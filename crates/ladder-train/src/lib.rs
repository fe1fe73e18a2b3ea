//! Training for `ladder`: losses, AdamW and schedules, the one training loop every stage
//! shares, checkpoints, metrics and progress display, and the jobs built on them (`sft`,
//! `logprobs`, `generate`).

pub mod checkpoint;
pub mod device;
pub mod error;
pub mod generate;
pub mod logprobs;
pub mod loss;
pub mod metrics;
pub mod objective;
pub mod optim;
mod progress;
pub mod schedule;
pub mod setup;
pub mod sft;
pub mod trainer;

pub use error::{Result, TrainError};
pub use objective::{LossOutput, Objective, Sft};
pub use optim::{AdamW, AdamWConfig};
pub use schedule::SchedulerKind;
pub use trainer::{train, LoopConfig, Summary};
