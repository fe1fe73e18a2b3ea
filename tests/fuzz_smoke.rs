//! A fuzz smoke on stable Rust, run by CI: the inputs of the `fuzz/` targets (cargo-fuzz needs
//! nightly, which this toolchain lacks) as thousands of seeded mutations of valid inputs. Each
//! parser must return a value or an error, never panic. Crashes found by `cargo fuzz` belong in
//! `SEEDS` as regressions.

use ladder_data::degeneration::{Detector, FinishReason};

/// Valid inputs the mutations start from, plus past crash reproducers.
const SEEDS: [&str; 6] = [
    r#"{"prompt": "Olá", "completion": " mundo"}"#,
    r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
    r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "assistant", "content": "c"}], "rejected": "r"}"#,
    r#"{"text": "日本語 — ação"}"#,
    r#"{"prompt": "p", "reference": "r"}"#,
    "",
];

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, inserts, deletes and duplicates bytes of `seed`.
pub(crate) fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                v.remove(at);
            }
            _ => {
                let end = (at + rng.below(16)).min(v.len());
                let chunk = v[at.min(end)..end].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

#[test]
fn row_parser_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..20_000 {
        let bytes = mutate(SEEDS[i % SEEDS.len()].as_bytes(), &mut rng);
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let _ = ladder_data::parse_row(&value);
        }
    }
}

#[test]
fn safetensors_reader_never_panics() {
    let valid = std::fs::read(crate::util::fixtures().join("qwen2-tiny-lora-peft/adapter_model.safetensors")).unwrap();
    let header_len = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..3_000 {
        // Mutate the header region mostly: that is where the parser's decisions are.
        let mut bytes = valid.clone();
        let head = mutate(&bytes[..header_len.min(bytes.len())], &mut rng);
        bytes.splice(..header_len, head);
        if rng.below(4) == 0 {
            bytes.truncate(rng.below(bytes.len() + 1));
        }
        if let Ok(file) = ladder_model::TensorFile::from_bytes(std::path::Path::new("fuzz.safetensors"), bytes) {
            let keys: Vec<String> = file.keys().map(str::to_string).collect();
            for key in keys {
                let _ = file.get(&key, None);
            }
        }
    }
}

#[test]
fn degeneration_detector_never_panics() {
    let detector = Detector::default();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let texts: [&[u8]; 4] = [b"ab", "Certid\u{e3}o n\u{ba} 12, ".as_bytes(), "\u{65e5}\u{672c}".as_bytes(), b"{\"header\": \"X\", "];
    for i in 0..5_000 {
        let unit = mutate(texts[i % texts.len()], &mut rng);
        let repeated: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * (1 + rng.below(40))).collect();
        let text = String::from_utf8_lossy(&repeated);
        for reason in [FinishReason::Length, FinishReason::Eos] {
            let _ = detector.check(&text, reason);
        }
    }
}
