//! Bytes as a safetensors file → `TensorFile`: header parsing and reading every tensor give a
//! value or an error, never a panic or an out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    if let Ok(file) = ladder_model::TensorFile::from_bytes(path, data.to_vec()) {
        let keys: Vec<String> = file.keys().map(str::to_string).collect();
        for key in keys {
            let _ = file.get(&key, None);
        }
    }
});
