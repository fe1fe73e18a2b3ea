//! AdamW with 8-bit moments, as torchao's `AdamW8bit` (after bitsandbytes, Dettmers et al.
//! 2021, "8-bit Optimizers via Block-wise Quantization"): a quarter of AdamW's state.
//!
//! Each moment is stored as one byte per element plus one f32 scale per block of 256: the
//! block's largest magnitude. A byte indexes a 256-entry map of values in [-1, 1] (the first
//! moment) or [0, 1] (the second) spaced on a "dynamic" scale, dense near zero and sparse near
//! one, so that small values keep their relative precision. A step decodes a block's moments
//! to f32, updates the parameter with them exactly as f32 AdamW would, and encodes the new
//! moments to the nearest map entries.
//!
//! The map and the rounding follow torchao 0.18 (`create_dynamic_map`, `quantize_8bit_with_qmap`)
//! and are tested against values it produced (`scripts/make_adamw8bit_fixtures.py`).

use std::sync::OnceLock;

use rayon::prelude::*;

use super::cpu::vectorised;
use super::AdamWStep;

/// Elements per quantization block (torchao's default).
pub const BLOCK: usize = 256;

/// Parameters with fewer elements keep f32 moments, as in torchao and bitsandbytes: their
/// state is small, and a few blocks' worth of rounding is not worth it.
pub const MIN_ELEMENTS: usize = 4096;

/// Blocks per rayon task.
const TASK_BLOCKS: usize = 64;

/// Whether a parameter of `n` elements gets 8-bit moments (torchao's rule: at least
/// [`MIN_ELEMENTS`], a whole number of blocks).
pub fn quantizes(n: usize) -> bool {
    n >= MIN_ELEMENTS && n.is_multiple_of(BLOCK)
}

/// One moment of one parameter: a byte per element, a scale per block.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
}

impl Quantized {
    /// All zeros (scale 0), as a new optimizer starts.
    pub fn zeros(n: usize) -> Self {
        Quantized { codes: vec![0; n], scales: vec![0.0; n.div_ceil(BLOCK)] }
    }
}

/// A parameter's two moments, 8-bit.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments8bit {
    /// The first moment, on the signed map.
    pub m: Quantized,
    /// The second moment, on the unsigned map.
    pub v: Quantized,
}

impl Moments8bit {
    pub fn zeros(n: usize) -> Self {
        Moments8bit { m: Quantized::zeros(n), v: Quantized::zeros(n) }
    }
}

/// torchao's `create_dynamic_map(signed)` with 7 exponent bits and 8 bits in all, sorted, in
/// f32 as torch computes it: for each decade `10^(i-6)`, i = 0..6, the midpoints of an even
/// split of [0.1, 1] into 2^i (signed, both signs) or 2^(i+1) (unsigned) parts, plus 0 and 1.
pub fn map(signed: bool) -> &'static [f32; 256] {
    &codebook(signed).values
}

/// A map and, for encoding, where its search lands for each of the 65,536 values of an f32's
/// top 16 bits (sign, exponent, 7 bits of mantissa).
///
/// torchao's binary search takes eight dependent steps per value, twice per element. Starting
/// from the table's entry for the value's bucket, the same answer is one comparison away for
/// both maps (`steps`, computed when the table is built): a bucket spans under 1% of its
/// values' magnitude, and no bucket holds more than one entry past its start. Timed on this
/// kernel alone, the two versions were within the VM's noise; the table stays because its
/// cost does not grow with the search's depth.
struct Codebook {
    values: [f32; 256],
    start: Box<[u8; 1 << 16]>,
    /// The most entries past its start that any bucket holds: the steps [`Codebook::encode`]
    /// takes, the same number for every value, so that no branch depends on the data.
    steps: usize,
}

impl Codebook {
    fn new(values: [f32; 256]) -> Self {
        // A bucket's lowest and highest value: its smallest and largest bits when positive,
        // the other way round when negative.
        let ends = |bucket: u32| {
            let (first, last) = (f32::from_bits(bucket << 16), f32::from_bits((bucket << 16) | 0xFFFF));
            if bucket & 0x8000 == 0 { (first, last) } else { (last, first) }
        };
        let start: Box<[u8; 1 << 16]> = (0..1u32 << 16).map(|bucket| search(ends(bucket).0, &values)).collect::<Vec<u8>>().try_into().expect("65,536 buckets");
        let steps = (0..1u32 << 16).map(|bucket| (search(ends(bucket).1, &values) - start[bucket as usize]) as usize).max().unwrap_or(0);
        Codebook { values, start, steps }
    }

    /// [`encode`], through the table.
    #[inline(always)]
    fn encode(&self, x: f32) -> u8 {
        let map = &self.values;
        // NaN shares its bucket with infinity, but fails every comparison of the search: it
        // starts from entry 0 (a select rather than an early return).
        let mut code = usize::from(self.start[(x.to_bits() >> 16) as usize]) * usize::from(!x.is_nan());
        for _ in 0..self.steps {
            code += usize::from(code < 255 && x >= map[(code + 1).min(255)]);
        }
        round(x, code, map)
    }
}

fn codebook(signed: bool) -> &'static Codebook {
    static SIGNED: OnceLock<Codebook> = OnceLock::new();
    static UNSIGNED: OnceLock<Codebook> = OnceLock::new();
    let cell = if signed { &SIGNED } else { &UNSIGNED };
    cell.get_or_init(|| Codebook::new(dynamic_map(signed)))
}

fn dynamic_map(signed: bool) -> [f32; 256] {
    // Python's `10 ** (i - 6)`, cast to f32 when it multiplies an f32 tensor.
    const DECADES: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut values = vec![0.0f32, 1.0];
    for (i, &decade) in DECADES.iter().enumerate() {
        let parts = if signed { 1 << i } else { 1 << (i + 1) };
        let bounds = linspace(0.1, 1.0, parts + 1);
        for pair in bounds.windows(2) {
            let mean = (pair[0] + pair[1]) / 2.0;
            values.push(decade as f32 * mean);
            if signed {
                values.push(-(decade as f32) * mean);
            }
        }
    }
    values.sort_by(f32::total_cmp);
    values.try_into().expect("256 entries")
}

/// `torch.linspace(start, end, steps)` in f32: the first half counted up from `start`, the
/// second down from `end`, each with one rounding (torch's CPU kernel fuses the multiply-add;
/// rounding twice puts 48 of 257 values one unit in the last place off).
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| if i < half { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - i - 1) as f32, end) })
        .collect()
}

/// The index of the map entry nearest `x` (ties upwards), as torchao's branch-free binary
/// search followed by its rounding step. [`Codebook::encode`] gives the same, faster.
#[cfg(test)]
fn encode(x: f32, map: &[f32; 256]) -> u8 {
    round(x, search(x, map) as usize, map)
}

/// The last entry not above `x` (entry 0 when all are), as torchao's binary search finds it.
fn search(x: f32, map: &[f32; 256]) -> u8 {
    let mut code = 0usize;
    for bit in [128, 64, 32, 16, 8, 4, 2, 1] {
        if x >= map[code + bit] {
            code += bit;
        }
    }
    code as u8
}

/// torchao's rounding: up to the next entry when `x` is at least halfway to it.
#[inline(always)]
fn round(x: f32, code: usize, map: &[f32; 256]) -> u8 {
    let up = (code + 1).min(255);
    (code + usize::from(x - map[code] >= (map[up] - map[code]) * 0.5) * (up - code)) as u8
}

/// Encodes one block: its scale is its largest magnitude (at least 1e-12), each value the
/// nearest map entry to `value / scale`. `values` is left divided by the scale.
///
/// The largest magnitude and the divisions run over the whole block first, in vector
/// registers; only the table search goes one value at a time.
#[inline(always)]
fn encode_block(values: &mut [f32; BLOCK], book: &Codebook, codes: &mut [u8; BLOCK]) -> f32 {
    let scale = values.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-12);
    for x in values.iter_mut() {
        *x /= scale;
    }
    for (code, &x) in codes.iter_mut().zip(values.iter()) {
        *code = book.encode(x);
    }
    scale
}

/// One AdamW step on `p` with gradient `g` and 8-bit moments: the arithmetic of the f32
/// kernel (decoupled decay first, then the moments, the bias-corrected update), on moments
/// decoded from and encoded back to `moments`.
///
/// # Panics
/// If the lengths disagree, or are not a whole number of blocks.
pub fn step(p: &mut [f32], g: &[f32], moments: &mut Moments8bit, s: AdamWStep) {
    let n = p.len();
    assert!(g.len() == n && moments.m.codes.len() == n && moments.v.codes.len() == n, "parameter, gradient and moments of different lengths");
    assert!(n.is_multiple_of(BLOCK), "{n} elements: not a whole number of blocks (see `quantizes`)");
    let f = |x: f64| x as f32;
    // The moments' weights `1 − β` are rounded to f32 from f64, as torch rounds `lerp`'s
    // Python-float weight: `1 − β2` taken in f32 is 1.3e-5 off, and so is every second moment.
    let (decay, rate1, rate2, eps, step_size, bias2_sqrt, grad_scale) =
        (f(s.decay), f(1.0 - s.beta1), f(1.0 - s.beta2), f(s.eps), f(s.step_size), f(s.bias2_sqrt), f(s.grad_scale));
    let (signed, unsigned) = (codebook(true), codebook(false));
    let task = TASK_BLOCKS * BLOCK;
    let Moments8bit { m, v } = moments;
    p.par_chunks_mut(task)
        .zip(g.par_chunks(task))
        .zip(m.codes.par_chunks_mut(task).zip(m.scales.par_chunks_mut(TASK_BLOCKS)))
        .zip(v.codes.par_chunks_mut(task).zip(v.scales.par_chunks_mut(TASK_BLOCKS)))
        .for_each(|(((p, g), (m_codes, m_scales)), (v_codes, v_scales))| vectorised(#[inline(always)] || {
            let (mut m_block, mut v_block) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
            let blocks = p.chunks_exact_mut(BLOCK).zip(g.chunks_exact(BLOCK)).zip(m_codes.chunks_exact_mut(BLOCK)).zip(v_codes.chunks_exact_mut(BLOCK));
            for ((((p, g), m_codes), v_codes), (m_scale, v_scale)) in blocks.zip(m_scales.iter_mut().zip(v_scales.iter_mut())) {
                let m_codes: &mut [u8; BLOCK] = m_codes.try_into().expect("a whole block");
                let v_codes: &mut [u8; BLOCK] = v_codes.try_into().expect("a whole block");
                // Decode: table lookups, one value at a time.
                for ((m, v), (&mc, &vc)) in m_block.iter_mut().zip(v_block.iter_mut()).zip(m_codes.iter().zip(v_codes.iter())) {
                    *m = signed.values[usize::from(mc)];
                    *v = unsigned.values[usize::from(vc)];
                }
                // Update: element-wise arithmetic over the block, in vector registers.
                let (ms, vs) = (*m_scale, *v_scale);
                for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(m_block.iter_mut().zip(v_block.iter_mut())) {
                    let g = g * grad_scale;
                    // torch's `lerp` (weight < 0.5), as torchao updates its moments.
                    let m_new = *m * ms + rate1 * (g - *m * ms);
                    let v_new = *v * vs + rate2 * (g * g - *v * vs);
                    *p = *p * decay - m_new / (v_new.sqrt() / bias2_sqrt + eps) * step_size;
                    *m = m_new;
                    *v = v_new;
                }
                *m_scale = encode_block(&mut m_block, signed, m_codes);
                *v_scale = encode_block(&mut v_block, unsigned, v_codes);
            }
        }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_sorted_bounded_and_hold_zero_and_one() {
        for signed in [true, false] {
            let map = map(signed);
            assert!(map.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
            assert_eq!(map[255], 1.0);
            assert!(map.contains(&0.0));
            assert_eq!(map[0] < 0.0, signed);
        }
    }

    /// torchao's `AdamW8bit` (lr 1e-3, weight decay 0.01), four steps on a 4,096-element
    /// parameter whose 16 blocks get gradients of magnitudes 1e-4 to 1 (from
    /// `scripts/make_adamw8bit_fixtures.py`). Each step starts from torchao's state after the
    /// previous one, so that a rounding difference does not carry over.
    #[test]
    fn steps_match_torchao() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/expected/adamw8bit.safetensors");
        let file = crate::TensorFile::open(&path).unwrap();
        let get = |key: &str| file.get(key, None).unwrap_or_else(|e| panic!("{key}: {e}")).data;
        for (signed, key) in [(true, "qmap_signed"), (false, "qmap_unsigned")] {
            assert_eq!(map(signed).to_vec(), get(key), "{key}");
        }
        let quantized = |name: &str, t: usize| Quantized {
            codes: get(&format!("big.{name}.codes.{t}")).iter().map(|&c| c as u8).collect(),
            scales: get(&format!("big.{name}.scale.{t}")),
        };
        let (lr, weight_decay, beta1, beta2) = (1e-3, 0.01, 0.9f64, 0.999f64);
        let (mut p, mut moments) = (get("big.init"), Moments8bit::zeros(4096));
        for t in 1..=4 {
            let s = AdamWStep {
                decay: 1.0 - lr * weight_decay,
                beta1,
                beta2,
                eps: 1e-8,
                step_size: lr / (1.0 - beta1.powi(t)),
                bias2_sqrt: (1.0 - beta2.powi(t)).sqrt(),
                grad_scale: 1.0,
            };
            step(&mut p, &get(&format!("big.grad.{t}")), &mut moments, s);
            let expected = get(&format!("big.param.{t}"));
            let worst = p.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-7, "step {t}: parameter {worst} from torchao's");
            for (name, ours) in [("exp_avg", &moments.m), ("exp_avg_sq", &moments.v)] {
                let theirs = quantized(name, t as usize);
                for (block, (a, b)) in ours.scales.iter().zip(&theirs.scales).enumerate() {
                    assert!((a - b).abs() <= 1e-6 * b.abs(), "step {t}: {name} scale of block {block}: {a} against {b}");
                }
                // Every code equal: no value of this run lies within rounding of a midpoint.
                let differ = ours.codes.iter().zip(&theirs.codes).filter(|(a, b)| a != b).count();
                assert_eq!(differ, 0, "step {t}: {name}: {differ} codes differ from torchao's");
            }
            // The next step starts from torchao's state.
            p = expected;
            moments = Moments8bit { m: quantized("exp_avg", t as usize), v: quantized("exp_avg_sq", t as usize) };
        }
    }

    /// The table's encoding equals the binary search's for every value near every entry, and
    /// for a million random bit patterns (any sign, magnitude, infinities and NaNs included).
    #[test]
    fn the_table_encodes_as_the_binary_search() {
        for signed in [true, false] {
            let book = codebook(signed);
            let near = book.values.iter().flat_map(|&e| {
                let b = e.to_bits();
                [e, f32::from_bits(b.wrapping_add(1)), f32::from_bits(b.wrapping_sub(1)), -e, e * 0.5, e * 1.5]
            });
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            let random = std::iter::repeat_with(move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                f32::from_bits(state as u32)
            });
            for x in near.chain(random.take(1_000_000)) {
                assert_eq!(book.encode(x), encode(x, &book.values), "{x} ({:#x})", x.to_bits());
            }
        }
    }

    #[test]
    fn encoding_picks_the_nearest_entry() {
        let map = map(true);
        for i in 0..2000 {
            let x = -1.0 + i as f32 / 1000.0;
            let code = encode(x, map) as usize;
            let nearest = (0..256).min_by(|&a, &b| (map[a] - x).abs().total_cmp(&(map[b] - x).abs())).unwrap();
            assert!((map[code] - x).abs() <= (map[nearest] - x).abs(), "{x}: code {code} ({}) but {nearest} ({}) is nearer", map[code], map[nearest]);
        }
    }
}
