//! The terminal progress bar: steps, loss, learning rate, tokens/s and ETA. Hidden when stderr
//! is not a terminal (schedulers' logs get the `tracing` lines instead).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units starting at `start`; hidden on every rank but 0 when several
/// processes work together.
pub fn bar(total: usize, start: usize, unit: &str) -> ProgressBar {
    if !crate::dist::world().is_root() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let template = format!("{{prefix}} [{{elapsed_precise}}] {{bar:30.cyan/blue}} {{pos}}/{{len}} {unit} {{msg}} (ETA {{eta}})");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    bar
}
