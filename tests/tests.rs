//! End-to-end tests: one binary, the real CLI, real Hugging Face fixtures made by
//! `scripts/make_fixtures.py` with transformers and PEFT (see tests/fixtures/README.md).

mod util;

mod chat_trl;
#[cfg(feature = "mpi")]
mod distributed;
mod dpo;
mod errors;
mod eval;
mod fuzz_cli;
mod fuzz_smoke;
mod generation;
#[cfg(feature = "wgpu")]
mod gpu;
mod options;
mod image;
mod pairs;
mod parity;
mod promises;
mod recipe;
mod reliability;
mod training;
mod vlm;
mod vlm_init;
mod vlm_train;
