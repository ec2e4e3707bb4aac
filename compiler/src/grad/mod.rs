//! Reverse-mode differentiation of the IR: for a kernel and one of its inputs, the kernel that
//! computes the gradient of `Σ out_grad · output` with respect to that input, for one image.
//!
//! The backward kernel reads the forward kernel's inputs and one more, [`OUT_GRAD`], typed as the
//! forward output (the gradient of a loss with respect to the raw map); its output has the type
//! of the input it differentiates ([`Role::Gradient`]). It holds a copy of the forward nodes
//! (those the gradient needs survive the optimizer's dead-code pass), then the adjoints, built
//! from the last node back by the rules of `rules.rs`, one per operation. It is an ordinary
//! kernel: optimized by the same passes, compiled by every backend into one fused kernel.
//!
//! Adjoints are kept *lazily broadcast*: the adjoint of a node may lack some of the node's axes
//! (it is then the same along them), so a `sum[k]` hands its operand the adjoint of its result
//! unchanged. Contributions with axes the node lacks (an operand broadcast by a binary op) are
//! summed over those axes before they are added.
//!
//! For an input shared by all images (`head_weight: shared [c,k]`) the kernel gives each image's
//! contribution; the caller sums them over the batch.

mod rules;

use crate::axes::{Axis, AxisSet};
use crate::ir::{Builder, Input, InputKind, Kernel, NodeId, Op, Role};
use crate::ops::{BinaryOp, ReduceOp};
use crate::span::Span;

/// The name of the backward kernel's input holding the gradient with respect to the forward
/// output (not an identifier of the language, so it never collides with a parameter).
pub const OUT_GRAD: &str = "@out_grad";

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GradError {
    #[error("`{name}` is not a tensor input of `{kernel}` (inputs: {inputs})")]
    UnknownInput {
        name: String,
        kernel: String,
        inputs: String,
    },
    #[error("`{op}` is not differentiable: {why}")]
    NotDifferentiable {
        op: &'static str,
        why: &'static str,
        span: Span,
    },
}

/// The backward kernel of `kernel` with respect to its input `wrt` (not yet optimized).
pub fn backward(kernel: &Kernel, wrt: &str) -> Result<Kernel, GradError> {
    let Some(index) = kernel.inputs.iter().position(|i| i.name == wrt) else {
        return Err(GradError::UnknownInput {
            name: wrt.to_string(),
            kernel: kernel.name.clone(),
            inputs: kernel
                .inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let mut tape = Tape::new(kernel, index as u32);
    let seed_input = tape.inputs.len() as u32;
    tape.inputs.push(Input {
        name: OUT_GRAD.to_string(),
        ty: kernel.output_ty(),
        kind: InputKind::PerImage,
        span: kernel.node(kernel.output).span,
    });
    let seed = tape.push(Op::Input(seed_input), kernel.output_ty(), kernel.output);
    if tape.needs[kernel.output.index()] {
        tape.adjoint[kernel.output.index()] = Some(seed);
    }
    for id in kernel.ids().rev() {
        if let Some(g) = tape.adjoint[id.index()] {
            rules::propagate(&mut tape, id, g)?;
        }
    }
    let input = &kernel.inputs[index];
    let gradients: Vec<NodeId> = kernel
        .ids()
        .filter(|&id| kernel.node(id).op == Op::Input(index as u32))
        .filter_map(|id| tape.adjoint[id.index()])
        .collect();
    let span = input.span;
    let mut total = match gradients.first() {
        Some(&g) => g,
        None => tape.b.push(Op::Const(0.0), AxisSet::SCALAR, span),
    };
    for &g in &gradients[gradients.len().min(1)..] {
        let ty = tape.ty(total).union(tape.ty(g));
        total = tape.b.push(Op::Binary(BinaryOp::Add, total, g), ty, span);
    }
    let output = tape.broadcast(total, input.ty, span);
    Ok(Kernel {
        name: format!("{}_grad_{wrt}", kernel.name),
        inputs: tape.inputs,
        nodes: tape.b.nodes,
        output,
        role: Role::Gradient {
            wrt: wrt.to_string(),
            ty: input.ty,
        },
    })
}

/// The backward kernel under construction. Forward node `i` keeps id `i` in it.
pub(crate) struct Tape<'k> {
    pub forward: &'k Kernel,
    pub b: Builder,
    inputs: Vec<Input>,
    /// Whether the forward node depends on the input being differentiated.
    needs: Vec<bool>,
    /// The adjoint of each forward node so far (lazily broadcast: typed a subset of the node's).
    adjoint: Vec<Option<NodeId>>,
}

impl<'k> Tape<'k> {
    fn new(forward: &'k Kernel, wrt: u32) -> Tape<'k> {
        let mut needs = vec![false; forward.nodes.len()];
        for (i, node) in forward.nodes.iter().enumerate() {
            needs[i] = node.op == Op::Input(wrt) || node.op.operands().any(|x| needs[x.index()]);
        }
        Tape {
            forward,
            b: Builder {
                nodes: forward.nodes.clone(),
            },
            inputs: forward.inputs.clone(),
            needs,
            adjoint: vec![None; forward.nodes.len()],
        }
    }

    pub fn ty(&self, id: NodeId) -> AxisSet {
        self.b.nodes[id.index()].ty
    }

    /// Pushes a node spanned like forward node `at`.
    pub fn push(&mut self, op: Op, ty: AxisSet, at: NodeId) -> NodeId {
        let span = self.forward.node(at).span;
        self.b.push(op, ty, span)
    }

    pub fn constant(&mut self, value: f32, at: NodeId) -> NodeId {
        self.push(Op::Const(value), AxisSet::SCALAR, at)
    }

    /// `a op b`, typed by broadcasting.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId, at: NodeId) -> NodeId {
        let ty = self.ty(a).union(self.ty(b));
        self.push(Op::Binary(op, a, b), ty, at)
    }

    /// `op` over `axes` of `x`. `x` may lack some of them (a lazily broadcast adjoint): a sum
    /// then counts each value once per element along them; any other reduction ignores them.
    pub fn reduce(&mut self, op: ReduceOp, axes: AxisSet, x: NodeId, at: NodeId) -> NodeId {
        let present = AxisSet::of(
            &axes
                .iter()
                .filter(|&a| self.ty(x).contains(a))
                .collect::<Vec<_>>(),
        );
        let absent = axes.minus(present);
        let mut result = x;
        if !present.is_empty() {
            let ty = self.ty(x).minus(present);
            result = self.push(Op::Reduce(op, present, x), ty, at);
        }
        if op == ReduceOp::Sum && !absent.is_empty() {
            let count = self.push(Op::Size(absent), AxisSet::SCALAR, at);
            result = self.binary(BinaryOp::Mul, result, count, at);
        }
        result
    }

    pub fn select(&mut self, cond: NodeId, then: NodeId, otherwise: NodeId, at: NodeId) -> NodeId {
        let ty = self.ty(cond).union(self.ty(then)).union(self.ty(otherwise));
        self.push(Op::Select(cond, then, otherwise), ty, at)
    }

    /// Adds `contribution`, the gradient of forward node `x` through its user `from`, to the
    /// adjoint of `x`: summed over the axes of `from` that `x` lacks (counting each value once
    /// per element along an axis the lazily broadcast contribution lacks); nothing when `x`
    /// does not depend on the differentiated input.
    pub fn accumulate(&mut self, x: NodeId, contribution: NodeId, from: NodeId) {
        if !self.needs[x.index()] {
            return;
        }
        let spread = self.ty(contribution).union(self.forward.node(from).ty);
        let extra = spread.minus(self.forward.node(x).ty);
        let c = self.reduce(ReduceOp::Sum, extra, contribution, x);
        self.adjoint[x.index()] = Some(match self.adjoint[x.index()] {
            None => c,
            Some(previous) => self.binary(BinaryOp::Add, previous, c, x),
        });
    }

    /// Whether forward node `x` depends on the differentiated input.
    pub fn needs(&self, x: NodeId) -> bool {
        self.needs[x.index()]
    }

    /// `x` made to have every axis of `ty` (it has a subset): `x + 0 · index[a]()` for each
    /// missing axis `a` (an index is finite, so this adds exact zeros).
    fn broadcast(&mut self, mut x: NodeId, ty: AxisSet, span: Span) -> NodeId {
        let missing: Vec<Axis> = ty.minus(self.ty(x)).iter().collect();
        if missing.is_empty() {
            return x;
        }
        let zero = self.b.push(Op::Const(0.0), AxisSet::SCALAR, span);
        for axis in missing {
            let along = AxisSet::SCALAR.with(axis);
            let index = self.b.push(Op::Index(axis), along, span);
            let zeros = self.b.push(Op::Binary(BinaryOp::Mul, zero, index), along, span);
            let widened = self.ty(x).union(along);
            x = self.b.push(Op::Binary(BinaryOp::Add, x, zeros), widened, span);
        }
        x
    }
}
