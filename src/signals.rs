//! Signals of a training run (flag-based handlers from `signal-hook`; no code runs in the
//! handler itself). SIGTERM, SIGINT and SIGUSR1 ask the loop to checkpoint at the next step
//! boundary and stop (exit 75, resumable); a second SIGINT exits at once with 130, which is
//! safe because checkpoints are renamed into place only when complete. SIGUSR1 is what Slurm
//! sends ahead of a time limit (`--signal=USR1@N`): the job is then requeued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ladder_train::Interrupt;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::flag;

/// Exit code of a run stopped by a signal after its checkpoint was saved (`EX_TEMPFAIL`).
pub const EXIT_RESUMABLE: u8 = 75;
/// Exit code of a second Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_SECOND_INTERRUPT: i32 = 130;

pub struct Signals {
    pub interrupt: Interrupt,
    requeue: Arc<AtomicBool>,
}

/// Installs the handlers.
pub fn install() -> std::io::Result<Signals> {
    let stop = Arc::new(AtomicBool::new(false));
    let requeue = Arc::new(AtomicBool::new(false));
    // Registered before the flag itself, so it sees the mark of an earlier signal.
    flag::register_conditional_shutdown(SIGINT, EXIT_SECOND_INTERRUPT, Arc::clone(&stop))?;
    flag::register(SIGINT, Arc::clone(&stop))?;
    flag::register(SIGTERM, Arc::clone(&stop))?;
    flag::register(SIGUSR1, Arc::clone(&requeue))?;
    flag::register(SIGUSR1, Arc::clone(&stop))?;
    Ok(Signals { interrupt: Interrupt::from_flag(stop), requeue })
}

impl Signals {
    /// After a signal stop: under Slurm, after SIGUSR1, puts the job back in the queue.
    pub fn requeue_if_asked(&self) {
        if !self.requeue.load(Ordering::SeqCst) {
            return;
        }
        let Ok(job) = std::env::var("SLURM_JOB_ID") else { return };
        match std::process::Command::new("scontrol").args(["requeue", &job]).status() {
            Ok(s) if s.success() => tracing::info!(job, "requeued with scontrol"),
            Ok(s) => tracing::warn!(job, "scontrol requeue failed ({s})"),
            Err(e) => tracing::warn!(job, "cannot run scontrol to requeue: {e}"),
        }
    }
}
