//! Collating sequences into a right-padded batch. Padding carries segment id `u32::MAX` (the
//! model's `PAD_SEGMENT`), so no real token attends to it, and it is never a target.

use crate::packing::Packed;

/// Row-major `[batch_size, seq_len]` host arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub input_ids: Vec<u32>,
    pub targets: Vec<bool>,
    pub position_ids: Vec<u32>,
    pub segment_ids: Vec<u32>,
    pub batch_size: usize,
    pub seq_len: usize,
    pub n_targets: usize,
    /// The rows' images, row by row: `[patches, patch_dim]` pixel values, row-major, and
    /// each image's `(t, h, w)` grid (both empty for text).
    pub pixel_values: Vec<f32>,
    pub grids: Vec<[usize; 3]>,
}

pub const PAD_SEGMENT: u32 = u32::MAX;

pub fn collate(seqs: &[Packed], pad_id: u32) -> Batch {
    let seq_len = seqs.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
    let n = seqs.len() * seq_len;
    let mut b = Batch {
        input_ids: Vec::with_capacity(n),
        targets: Vec::with_capacity(n),
        position_ids: Vec::with_capacity(n),
        segment_ids: Vec::with_capacity(n),
        batch_size: seqs.len(),
        seq_len,
        n_targets: 0,
        pixel_values: Vec::new(),
        grids: Vec::new(),
    };
    for s in seqs {
        let pad = seq_len - s.input_ids.len();
        b.input_ids.extend(s.input_ids.iter().copied().chain(std::iter::repeat_n(pad_id, pad)));
        b.targets.extend(s.targets.iter().copied().chain(std::iter::repeat_n(false, pad)));
        b.position_ids.extend(s.position_ids.iter().copied().chain(std::iter::repeat_n(0, pad)));
        b.segment_ids.extend(s.segment_ids.iter().copied().chain(std::iter::repeat_n(PAD_SEGMENT, pad)));
        for image in &s.images {
            b.pixel_values.extend_from_slice(&image.pixel_values);
            b.grids.push(image.grid_thw);
        }
    }
    b.n_targets = b.targets.iter().filter(|t| **t).count();
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sft::Example;

    #[test]
    fn pads_right_and_masks_padding() {
        let a = Packed::from(Example { input_ids: vec![1, 2, 3], targets: vec![false, true, true], images: Vec::new() });
        let b = Packed::from(Example { input_ids: vec![4], targets: vec![false], images: Vec::new() });
        let batch = collate(&[a, b], 0);
        assert_eq!((batch.batch_size, batch.seq_len, batch.n_targets), (2, 3, 2));
        assert_eq!(batch.input_ids, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(batch.segment_ids[4..], [PAD_SEGMENT, PAD_SEGMENT]);
        assert!(!batch.targets[4] && !batch.targets[5]);
    }
}
