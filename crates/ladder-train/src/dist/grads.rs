//! Trainable parameters and their gradients as one flat f32 buffer, the form the collectives
//! move (DDP's flattened gradient buckets). The layout is the module's visiting order, which is
//! the same on every rank, so no names travel.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use sha2::{Digest, Sha256};

use super::World;

/// Sums a step's gradients over every rank, in one flat buffer: each rank ends with the same
/// summed gradients. A trainable parameter that got no gradient on any rank (a vision tower a
/// text-only step never touched) still gets none, as in one process; one that got a gradient on
/// some ranks only is summed with zeros for the others. A world of one returns `grads` as is.
pub fn sum_gradients<M: Module>(world: &World, model: &M, grads: GradientsParams) -> GradientsParams {
    if world.size() == 1 {
        return grads;
    }
    let t0 = std::time::Instant::now();
    let (grads, mut flat, flags) = pack(model, grads);
    let t1 = std::time::Instant::now();
    world.sum_f32(&mut flat);
    let t2 = std::time::Instant::now();
    let grads = unpack(model, grads, &flat, flags);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(bytes = 4 * flat.len(), pack_ms = ms(t1 - t0), allreduce_ms = ms(t2 - t1), unpack_ms = ms(t2.elapsed()), "gradients summed");
    grads
}

/// Takes every trainable parameter's gradient out of `grads` into one buffer: the values in
/// visiting order (zeros where a parameter has none), then one presence flag per parameter,
/// starting at the returned index.
fn pack<M: Module>(model: &M, grads: GradientsParams) -> (GradientsParams, Vec<f32>, usize) {
    let mut pack = Pack { grads, values: Vec::new(), present: Vec::new() };
    model.visit(&mut pack);
    let Pack { grads, mut values, present } = pack;
    let flags = values.len();
    values.extend(present);
    (grads, values, flags)
}

/// Registers the gradients of a [`pack`]ed buffer back into `grads`, for the parameters whose
/// presence flag (from index `flags` on) is set.
fn unpack<M: Module>(model: &M, grads: GradientsParams, flat: &[f32], flags: usize) -> GradientsParams {
    let mut unpack = Unpack { grads, flat, at: 0, presence: flags, index: 0 };
    model.visit(&mut unpack);
    unpack.grads
}

/// Bytes one [`sum_gradients`] call moves per rank (values and presence flags, f32).
pub fn gradient_bytes<M: Module>(model: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.0 += t.shape().num_elements() + 1;
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0 * 4
}

/// A checksum of every trainable weight (sha256 of their f32 values in visiting order, first 8
/// bytes), to check that the ranks start, and end, from the same weights.
pub fn trainable_checksum<M: Module>(model: &M) -> u64 {
    struct Hash(Sha256);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                for v in ladder_model::weights::host(t.inner()) {
                    self.0.update(v.to_le_bytes());
                }
            }
        }
    }
    let mut h = Hash(Sha256::new());
    model.visit(&mut h);
    let digest = h.0.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Takes every trainable parameter's gradient out of `grads` into `values` (zeros where absent),
/// with a presence flag per parameter.
struct Pack {
    grads: GradientsParams,
    values: Vec<f32>,
    present: Vec<f32>,
}

impl ModuleVisitor for Pack {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        match self.grads.remove::<D>(param.id) {
            Some(g) => {
                self.values.extend(ladder_model::weights::host(g));
                self.present.push(1.0);
            }
            None => {
                self.values.extend(std::iter::repeat_n(0.0, t.shape().num_elements()));
                self.present.push(0.0);
            }
        }
    }
}

/// Puts the summed gradients back, in the same order [`Pack`] took them.
struct Unpack<'a> {
    grads: GradientsParams,
    flat: &'a [f32],
    /// Next value to read.
    at: usize,
    /// Where the presence flags start, and the next parameter's index among them.
    presence: usize,
    index: usize,
}

impl ModuleVisitor for Unpack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let shape = t.shape();
        let n = shape.num_elements();
        if self.flat[self.presence + self.index] > 0.0 {
            let values = self.flat[self.at..self.at + n].to_vec();
            let grad = Tensor::<D>::from_data(TensorData::new(values, shape), &t.inner().device());
            self.grads.register::<D>(param.id, grad);
        }
        self.at += n;
        self.index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// The buffer round trip keeps each gradient exactly, and a trainable parameter without a
    /// gradient (here all but one) still has none afterwards.
    #[test]
    fn pack_then_unpack_restores_the_gradients_and_their_absence() {
        let device = Device::flex().autodiff();
        let config = crate::bench::shape("tiny", 16).unwrap();
        let model = ladder_model::random_decoder(&config, 0.02, 0, &device);
        let q = &model.layers[0].self_attn.q_proj.weight;
        let loss = (q.val() * q.val()).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let want = ladder_model::weights::host(grads.get::<2>(q.id).expect("q_proj has a gradient"));
        let (emptied, flat, flags) = pack(&model, grads);
        assert!(emptied.is_empty(), "pack takes every gradient");
        assert_eq!(flags, model.num_params());
        assert_eq!(flat.len() * 4, gradient_bytes(&model));
        assert_eq!(flat[flags..].iter().sum::<f32>(), 1.0, "one parameter had a gradient");
        let back = unpack(&model, emptied, &flat, flags);
        assert_eq!(back.len(), 1);
        assert_eq!(ladder_model::weights::host(back.get::<2>(q.id).unwrap()), want);
    }
}
