//! A JSONL line → `ladder_data::parse_row`: any input gives a row or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            let _ = ladder_data::parse_row(&value);
        }
    }
});
