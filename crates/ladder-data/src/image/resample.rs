//! Bicubic resizing of 8-bit images exactly as Pillow's `Image.resize(.., BICUBIC)` does it
//! (`src/libImaging/Resample.c`), reimplemented from its documented algorithm: a separable
//! two-pass convolution (horizontal, then vertical) with the Keys cubic (a = −0.5) widened by
//! the downscale factor, weights normalised per output pixel and then quantised to 22-bit fixed
//! point, each pass rounding and clipping to `u8`. Matching the quantisation and the
//! intermediate rounding is what makes the output bit-identical to PIL's, and hence the pixel
//! values identical to transformers' slow (PIL) image processor, which a float resampler or
//! the `image` crate's filters are not.

/// Fractional bits of the fixed-point weights: 32 bits less 8 for the pixel and 2 of headroom
/// for weights that sum past 1 on the way.
const PRECISION_BITS: u32 = 22;

/// The Keys cubic convolution kernel with a = −0.5, support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output position: the first input index, and fixed-point weights for the inputs from there.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Weights for resampling `in_size` samples to `out_size`. The arithmetic follows Pillow's
/// order of operations (double precision, truncating casts) so every tap and weight agrees.
fn taps(in_size: usize, out_size: usize) -> Taps {
    // Pillow computes the scale from a float box, then widens to double.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let inv = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero, as C's (int) cast does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * inv)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|w| {
                let w = if total != 0.0 { w / total } else { *w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        start.push(xmin);
        weights.push(fixed);
    }
    Taps { start, weights }
}

/// Rounds a fixed-point accumulator (which started at one half) to a clipped byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved 8-bit pixels (`channels` per pixel, row-major) from `w`×`h` to
/// `out_w`×`out_h`. A dimension that does not change is not resampled, as in Pillow.
pub fn resize_bicubic(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    debug_assert_eq!(src.len(), w * h * channels);
    let half = 1i32 << (PRECISION_BITS - 1);
    let horizontal;
    let (cur, cur_w) = if out_w != w {
        let t = taps(w, out_w);
        let mut out = vec![0u8; out_w * h * channels];
        for y in 0..h {
            let row = &src[y * w * channels..(y + 1) * w * channels];
            for xx in 0..out_w {
                for c in 0..channels {
                    let mut acc = half;
                    for (i, k) in t.weights[xx].iter().enumerate() {
                        acc += i32::from(row[(t.start[xx] + i) * channels + c]) * k;
                    }
                    out[(y * out_w + xx) * channels + c] = clip8(acc);
                }
            }
        }
        horizontal = out;
        (horizontal.as_slice(), out_w)
    } else {
        (src, w)
    };
    if out_h == h {
        return cur.to_vec();
    }
    let t = taps(h, out_h);
    let stride = cur_w * channels;
    let mut out = vec![0u8; out_h * stride];
    for yy in 0..out_h {
        for i in 0..stride {
            let mut acc = half;
            for (j, k) in t.weights[yy].iter().enumerate() {
                acc += i32::from(cur[(t.start[yy] + j) * stride + i]) * k;
            }
            out[yy * stride + i] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (n, m) in [(10, 3), (3, 10), (28, 56), (100, 28), (57, 56)] {
            let t = taps(n, m);
            for w in &t.weights {
                let sum: i32 = w.iter().sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= w.len() as i32, "{n}->{m}: {sum}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant_and_identity_is_a_copy() {
        let src = vec![77u8; 13 * 7 * 3];
        assert!(resize_bicubic(&src, 13, 7, 3, 28, 5).iter().all(|v| *v == 77));
        let ramp: Vec<u8> = (0..(5 * 4 * 3)).map(|i| (i * 4) as u8).collect();
        assert_eq!(resize_bicubic(&ramp, 5, 4, 3, 5, 4), ramp);
    }

    #[test]
    fn overshoot_is_clipped() {
        // A hard edge overshoots with a negative-lobed kernel; the result stays in range and
        // keeps the edge's extremes.
        let src: Vec<u8> = (0..8).flat_map(|x| [if x < 4 { 0u8 } else { 255 }]).collect();
        let out = resize_bicubic(&src, 8, 1, 1, 13, 1);
        assert_eq!((out[0], out[12]), (0, 255));
    }
}
