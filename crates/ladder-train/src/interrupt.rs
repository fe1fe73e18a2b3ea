//! Stopping a run cleanly: the binary's signal handlers set an [`Interrupt`], and the training
//! loop checks it at each step boundary, saves a checkpoint and returns
//! [`crate::TrainError::Interrupted`] (the binary exits with 75, `EX_TEMPFAIL`: resumable).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared "stop at the next step boundary" request. The default is never set.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Wraps a flag that signal handlers set (`signal_hook::flag::register`).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Interrupt(flag)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
