//! Training for `ladder`: losses, AdamW and schedules, the one training loop every stage
//! shares, checkpoints, metrics and progress display, and the jobs built on them (`sft`, `dpo`,
//! `logprobs`).

pub mod checkpoint;
pub mod device;
pub mod dpo;
pub mod error;
pub mod interrupt;
pub mod lock;
pub mod logprobs;
pub mod loss;
pub mod metrics;
pub mod objective;
pub mod optim;
mod progress;
pub mod schedule;
pub mod setup;
pub mod sft;
pub mod stage;
pub mod trainer;

pub use error::{Result, TrainError};
pub use objective::{LossOutput, Objective, Sft};
pub use optim::{AdamW, AdamWConfig};
pub use schedule::SchedulerKind;
pub use stage::{Method, StageJob};
pub use interrupt::Interrupt;
pub use trainer::{train, LoopConfig, OnNonFinite, Summary};
