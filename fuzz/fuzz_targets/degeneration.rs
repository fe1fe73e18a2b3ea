//! Any text → the degeneration detector: a verdict for every finish reason, never a panic.
#![no_main]

use ladder_data::{Detector, FinishReason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let detector = Detector::default();
    let _ = detector.measure(text);
    for reason in [FinishReason::Eos, FinishReason::Stop, FinishReason::Length] {
        let _ = detector.check(text, reason);
    }
});
