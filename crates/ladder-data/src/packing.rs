//! Packing short examples into full sequences (first-fit decreasing). Each example keeps its
//! own positions (restarting at 0) and segment id, so the model's attention stays inside it —
//! the same result as unpacked training, at less padding.

use std::sync::Arc;

use crate::image::Preprocessed;
use crate::sft::Example;

/// One training sequence: one or several examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub input_ids: Vec<u32>,
    pub targets: Vec<bool>,
    pub position_ids: Vec<u32>,
    pub segment_ids: Vec<u32>,
    /// The images of its examples, in token order.
    pub images: Vec<Arc<Preprocessed>>,
}

impl From<Example> for Packed {
    fn from(e: Example) -> Self {
        let n = e.input_ids.len() as u32;
        Packed {
            input_ids: e.input_ids,
            targets: e.targets,
            position_ids: (0..n).collect(),
            segment_ids: vec![0; n as usize],
            images: e.images,
        }
    }
}

impl Packed {
    fn push(&mut self, e: &Example) {
        let segment = self.segment_ids.last().map_or(0, |s| s + 1);
        self.input_ids.extend(&e.input_ids);
        self.targets.extend(&e.targets);
        self.position_ids.extend(0..e.input_ids.len() as u32);
        self.segment_ids.extend(std::iter::repeat_n(segment, e.input_ids.len()));
        self.images.extend(e.images.iter().cloned());
    }
}

/// Packs whole examples into sequences of at most `max_seq_len` tokens, longest first, each
/// into the first sequence with room. Deterministic; an example longer than `max_seq_len`
/// gets a sequence of its own.
pub fn pack(examples: &[Example], max_seq_len: usize) -> Vec<Packed> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].input_ids.len()));
    let mut bins: Vec<Packed> = Vec::new();
    for i in order {
        let e = &examples[i];
        match bins.iter_mut().find(|b| b.input_ids.len() + e.input_ids.len() <= max_seq_len) {
            Some(bin) => bin.push(e),
            None => bins.push(Packed::from(e.clone())),
        }
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: usize, start: u32) -> Example {
        Example { input_ids: (start..start + n as u32).collect(), targets: (0..n).map(|i| i > 0).collect(), images: Vec::new() }
    }

    #[test]
    fn packs_without_losing_or_overflowing() {
        let examples = vec![ex(5, 0), ex(3, 100), ex(2, 200), ex(6, 300), ex(4, 400)];
        let packed = pack(&examples, 8);
        assert!(packed.iter().all(|p| p.input_ids.len() <= 8));
        let total: usize = packed.iter().map(|p| p.input_ids.len()).sum();
        assert_eq!(total, 20);
        assert_eq!(packed.len(), 3);
        // 6+2, 5+3, 4: positions restart and segments count up inside each sequence.
        assert_eq!(packed[0].position_ids, vec![0, 1, 2, 3, 4, 5, 0, 1]);
        assert_eq!(packed[0].segment_ids, vec![0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(packed[0].input_ids[6..], [200, 201]);
        assert!(!packed[0].targets[6], "the first token of each example is not a target");
    }
}
