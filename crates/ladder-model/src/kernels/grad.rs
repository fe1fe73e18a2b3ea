//! The fused kernels under autodiff: each forward records one node whose backward pass calls
//! the hand-written gradient in [`super::cpu`]. The state kept for the backward pass is the
//! inputs (which the unfused graph kept too) plus, for RMSNorm and attention, one f32 per row.
//!
//! Inputs are kept through Burn's checkpointer, so gradient checkpointing
//! (`Device::gradient_checkpointing`) works through these kernels: RMSNorm, SwiGLU and RoPE
//! are memory-bound, and with checkpointing their outputs are not kept but recomputed in the
//! backward pass (their `Retro*` forward), from the outputs of the matrix products around
//! them, which are kept.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Flex};
use std::sync::Arc;

use super::{attention, cpu};
use super::{AdamWStep, FusedOps};

type Tracked<C> = FloatTensor<Autodiff<Flex, C>>;

/// Registers each computed gradient whose parent is tracked (`Some` node id).
fn register(grads: &mut Gradients, pairs: impl IntoIterator<Item = (Option<NodeId>, Option<FlexTensor>)>) {
    for (node, grad) in pairs {
        if let (Some(node), Some(grad)) = (node, grad) {
            grads.register::<Flex>(node, grad);
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let gate: FlexTensor = checkpointer.retrieve_node_output(ops.state.0);
        let up: FlexTensor = checkpointer.retrieve_node_output(ops.state.1);
        let (dg, du) = cpu::swiglu_backward(&gate, &up, &dout);
        register(grads, [(gate_node.map(|n| n.id), Some(dg)), (up_node.map(|n| n.id), Some(du))]);
    }
}

#[derive(Debug)]
struct RetroSwiglu {
    gate: NodeId,
    up: NodeId,
}

impl RetroForward for RetroSwiglu {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let gate: FlexTensor = states.get_state(&self.gate);
        let up: FlexTensor = states.get_state(&self.up);
        states.save(out, cpu::swiglu_forward(&gate, &up));
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = (NodeId, NodeId, Arc<Vec<f32>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let (x, weight, inv) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x);
        let weight: FlexTensor = checkpointer.retrieve_node_output(weight);
        let (dx, dw) = cpu::rms_norm_backward(&x, &weight, &inv, &dout);
        register(grads, [(x_node.map(|n| n.id), Some(dx)), (w_node.map(|n| n.id), Some(dw))]);
    }
}

#[derive(Debug)]
struct RetroRmsNorm {
    x: NodeId,
    weight: NodeId,
    eps: f32,
}

impl RetroForward for RetroRmsNorm {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let x: FlexTensor = states.get_state(&self.x);
        let weight: FlexTensor = states.get_state(&self.weight);
        states.save(out, cpu::rms_norm_forward(&x, &weight, self.eps).0);
    }
}

#[derive(Debug)]
struct AttentionBackward;

#[derive(Clone, Debug)]
struct AttentionState {
    q: NodeId,
    k: NodeId,
    v: NodeId,
    /// The additive mask: a constant shared by every layer.
    bias: FlexTensor,
    scale: f32,
    lse: Arc<Vec<f32>>,
}

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let (q, k, v): (FlexTensor, FlexTensor, FlexTensor) =
            (checkpointer.retrieve_node_output(s.q), checkpointer.retrieve_node_output(s.k), checkpointer.retrieve_node_output(s.v));
        let (dq, dk, dv) = attention::backward(&q, &k, &v, &s.bias, s.scale, &s.lse, &dout);
        register(grads, [(q_node, dq), (k_node, dk), (v_node, dv)].map(|(node, grad)| (node.map(|n| n.id), Some(grad))));
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let (cos, sin) = ops.state;
        register(grads, [(x_node.map(|n| n.id), Some(cpu::rope(&dout, &cos, &sin, true)))]);
    }
}

/// The cos/sin tables are constants shared by every layer, so they are held, not checkpointed.
#[derive(Debug)]
struct RetroRope {
    x: NodeId,
    cos: FlexTensor,
    sin: FlexTensor,
}

impl RetroForward for RetroRope {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let x: FlexTensor = states.get_state(&self.x);
        states.save(out, cpu::rope(&x, &self.cos, &self.sin, false));
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [x_node, w_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state.0);
        let w: FlexTensor = checkpointer.retrieve_node_output(ops.state.1);
        let needs = cpu::LinearNeeds { x: x_node.is_some(), w: w_node.is_some(), a: false, b: false };
        let [dx, dw, _, _] = cpu::linear_backward(&x, &w, None, &dout, needs);
        register(grads, [(x_node.map(|n| n.id), dx), (w_node.map(|n| n.id), dw)]);
    }
}

#[derive(Debug)]
struct LoraLinearBackward;

#[derive(Clone, Debug)]
struct LoraLinearState {
    x: NodeId,
    w: NodeId,
    a: NodeId,
    b: NodeId,
    /// The product at the adapter's rank, `[n, r]`: b's gradient needs it.
    xa: FlexTensor,
    scale: f32,
    /// The `(seed, keep)` of the adapter input's dropout mask, if any: regenerated, not kept.
    dropout: Option<(u64, f32)>,
}

impl Backward<Flex, 4> for LoraLinearBackward {
    type State = LoraLinearState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [x_node, w_node, a_node, b_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let [x, w, a, b]: [FlexTensor; 4] = [s.x, s.w, s.a, s.b].map(|id| checkpointer.retrieve_node_output(id));
        let needs = cpu::LinearNeeds { x: x_node.is_some(), w: w_node.is_some(), a: a_node.is_some(), b: b_node.is_some() };
        let lora = cpu::LoraFactors { a: &a, b: &b, scale: s.scale, dropout: s.dropout };
        let [dx, dw, da, db] = cpu::linear_backward(&x, &w, Some((&lora, &s.xa)), &dout, needs);
        register(grads, [(x_node, dx), (w_node, dw), (a_node, da), (b_node, db)].map(|(node, grad)| (node.map(|n| n.id), grad)));
    }
}

#[derive(Debug)]
struct TokenLogprobsBackward;

/// What the LM head's backward pass starts from.
#[derive(Clone, Debug)]
enum TokenLogprobsState {
    /// The head is trained: its gradient needs every block's logits, computed again.
    Recompute { hidden: NodeId, weight: NodeId, targets: Arc<Vec<i64>>, lse: Arc<Vec<f32>> },
    /// The head is frozen: each row's gradient direction, computed in the forward pass.
    Directions(FlexTensor),
}

impl Backward<Flex, 2> for TokenLogprobsBackward {
    type State = TokenLogprobsState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [h_node, w_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let (dh, dw) = match ops.state {
            TokenLogprobsState::Recompute { hidden, weight, targets, lse } => {
                let hidden: FlexTensor = checkpointer.retrieve_node_output(hidden);
                let weight: FlexTensor = checkpointer.retrieve_node_output(weight);
                cpu::token_logprobs_backward(&hidden, &weight, &targets, &lse, &dout, w_node.is_some())
            }
            TokenLogprobsState::Directions(directions) => (cpu::token_logprobs_backward_from_directions(directions, &dout), None),
        };
        register(grads, [(h_node.map(|n| n.id), Some(dh)), (w_node.map(|n| n.id), dw)]);
    }
}

#[derive(Debug)]
struct EmbeddingBackward;

impl Backward<Flex, 1> for EmbeddingBackward {
    /// The ids and the table's row count.
    type State = (Arc<Vec<i64>>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [table_node] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let Some(node) = table_node else { return };
        let (ids, vocab) = ops.state;
        let grad = cpu::embedding_backward(&ids, &dout, vocab);
        // A tied table already holds the LM head's gradient, dense and in the same layout
        // (`token_logprobs_backward`). Holding a second handle on this sparse one while
        // autodiff adds the two makes flex add it into the head's gradient, in place: this
        // buffer's unwritten rows are then never touched, and so never take memory.
        let held = grad.clone();
        grads.register::<Flex>(node.id, grad);
        drop(held);
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_swiglu(gate: Tracked<C>, up: Tracked<C>) -> Tracked<C> {
        let out = cpu::swiglu_forward(gate.primitive(), up.primitive());
        let retro = RetroSwiglu { gate: gate.id(), up: up.id() };
        match SwigluBackward.prepare::<C>([gate.node(), up.node()]).memory_bound().retro_forward(retro).parents([&gate, &up]).stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&gate), prep.checkpoint(&up));
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_rms_norm(x: Tracked<C>, weight: Tracked<C>, eps: f32) -> Tracked<C> {
        let (out, inv) = cpu::rms_norm_forward(x.primitive(), weight.primitive(), eps);
        let retro = RetroRmsNorm { x: x.id(), weight: weight.id(), eps };
        match RmsNormBackward.prepare::<C>([x.node(), weight.node()]).memory_bound().retro_forward(retro).parents([&x, &weight]).stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight), Arc::new(inv));
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_attention(q: Tracked<C>, k: Tracked<C>, v: Tracked<C>, bias: Tracked<C>, scale: f32) -> Tracked<C> {
        let (out, lse) = attention::forward(q.primitive(), k.primitive(), v.primitive(), bias.primitive(), scale);
        match AttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = AttentionState {
                    q: prep.checkpoint(&q),
                    k: prep.checkpoint(&k),
                    v: prep.checkpoint(&v),
                    bias: bias.into_primitive(),
                    scale,
                    lse: Arc::new(lse),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_rope(x: Tracked<C>, cos: Tracked<C>, sin: Tracked<C>) -> Tracked<C> {
        let out = cpu::rope(x.primitive(), cos.primitive(), sin.primitive(), false);
        let retro = RetroRope { x: x.id(), cos: cos.primitive().clone(), sin: sin.primitive().clone() };
        match RopeBackward.prepare::<C>([x.node()]).memory_bound().retro_forward(retro).parents([&x]).stateful() {
            OpsKind::Tracked(prep) => prep.finish((cos.into_primitive(), sin.into_primitive()), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_linear(x: Tracked<C>, w: Tracked<C>) -> Tracked<C> {
        let (out, _) = cpu::linear_forward(x.primitive(), w.primitive(), None);
        match LinearBackward.prepare::<C>([x.node(), w.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&w));
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_lora_linear(x: Tracked<C>, w: Tracked<C>, a: Tracked<C>, b: Tracked<C>, scale: f32) -> Tracked<C> {
        lora_linear::<C>(x, w, a, b, None, scale)
    }

    fn fused_lora_dropout_linear(x: Tracked<C>, w: Tracked<C>, a: Tracked<C>, b: Tracked<C>, scale: f32, seed: u64, keep: f32) -> Tracked<C> {
        lora_linear::<C>(x, w, a, b, Some((seed, keep)), scale)
    }

    /// Optimizer arithmetic records no graph: the new values are untracked leaves.
    fn fused_adamw(p: Tracked<C>, g: Tracked<C>, m: Tracked<C>, v: Tracked<C>, step: AdamWStep) -> (Tracked<C>, Tracked<C>, Tracked<C>) {
        let (p, m, v) = cpu::adamw(p.into_primitive(), g.primitive(), m.into_primitive(), v.into_primitive(), step);
        let leaf = <Self as AutodiffBackend>::from_inner;
        (leaf(p), leaf(m), leaf(v))
    }

    fn fused_embedding(table: Tracked<C>, ids: FlexTensor) -> Tracked<C> {
        let ids = cpu::int_values(&ids);
        let out = cpu::embedding_forward(table.primitive(), &ids);
        let vocab = table.primitive().layout().shape()[0];
        match EmbeddingBackward.prepare::<C>([table.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((Arc::new(ids), vocab), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_token_logprobs(hidden: Tracked<C>, weight: Tracked<C>, targets: FlexTensor) -> Tracked<C> {
        let targets = cpu::int_values(&targets);
        // A frozen head (LoRA, DPO) needs only the hidden state's gradient: its direction is
        // computed now, from the softmax already at hand.
        let frozen_head = hidden.is_tracked() && !weight.is_tracked();
        let (out, lse, directions) = cpu::token_logprobs_forward(hidden.primitive(), weight.primitive(), &targets, frozen_head);
        match TokenLogprobsBackward.prepare::<C>([hidden.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = match directions {
                    Some(directions) => TokenLogprobsState::Directions(directions),
                    None => TokenLogprobsState::Recompute {
                        hidden: prep.checkpoint(&hidden),
                        weight: prep.checkpoint(&weight),
                        targets: Arc::new(targets),
                        lse: Arc::new(lse),
                    },
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// [`FusedOps::fused_lora_linear`], with dropout when its `(seed, keep)` is given.
fn lora_linear<C: CheckpointStrategy>(x: Tracked<C>, w: Tracked<C>, a: Tracked<C>, b: Tracked<C>, dropout: Option<(u64, f32)>, scale: f32) -> Tracked<C> {
    let lora = cpu::LoraFactors { a: a.primitive(), b: b.primitive(), scale, dropout };
    let (out, xa) = cpu::linear_forward(x.primitive(), w.primitive(), Some(&lora));
    let xa = xa.expect("the adapter's product");
    match LoraLinearBackward.prepare::<C>([x.node(), w.node(), a.node(), b.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = LoraLinearState {
                x: prep.checkpoint(&x),
                w: prep.checkpoint(&w),
                a: prep.checkpoint(&a),
                b: prep.checkpoint(&b),
                xa,
                scale,
                dropout,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}
