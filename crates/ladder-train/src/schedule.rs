//! Learning-rate schedules with transformers' semantics (`get_cosine_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup`, `get_constant_schedule_with_warmup`): the rate used by
//! optimizer step `k` (0-based) is `lr · λ(k)`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Half a cosine from the peak down to 0.
    #[default]
    Cosine,
    /// A straight line down to 0.
    Linear,
    /// The peak rate throughout.
    Constant,
}

/// Linear warmup from 0, then the chosen decay to 0 at `total` steps.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub kind: SchedulerKind,
    pub lr: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    pub fn lr(&self, step: usize) -> f64 {
        self.lr * self.factor(step)
    }

    fn factor(&self, step: usize) -> f64 {
        if step < self.warmup {
            return step as f64 / self.warmup.max(1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = (step - self.warmup) as f64 / span;
        match self.kind {
            SchedulerKind::Constant => 1.0,
            SchedulerKind::Linear => (1.0 - progress).max(0.0),
            SchedulerKind::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_transformers_lambdas() {
        // Values of transformers' lr_lambda for warmup 2, total 10 (computed by hand).
        let s = |kind| Schedule { kind, lr: 1.0, warmup: 2, total: 10 };
        let cos = s(SchedulerKind::Cosine);
        assert_eq!(cos.lr(0), 0.0);
        assert_eq!(cos.lr(1), 0.5);
        assert_eq!(cos.lr(2), 1.0);
        assert!((cos.lr(6) - 0.5).abs() < 1e-12); // halfway through the decay
        assert!(cos.lr(10).abs() < 1e-12);
        let lin = s(SchedulerKind::Linear);
        assert!((lin.lr(4) - 0.75).abs() < 1e-12);
        assert_eq!(s(SchedulerKind::Constant).lr(9), 1.0);
    }
}
