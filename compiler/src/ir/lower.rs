//! Typed program → IR: inlines every call, resolves `let`s, and turns scalar parameters with a
//! value (a default, or one set by the user) into constants.

use super::{Builder, Input, InputKind, Kernel, NodeId, Op, Role};
use crate::axes::{Axis, AxisSet};
use crate::ops::{BinaryOp, ReduceOp};
use crate::span::Span;
use crate::typed::{ExprKind, FuncId, Program};
use std::collections::HashMap;

/// Inlining may multiply a program's size; past this many nodes it is refused.
pub const MAX_NODES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error("`{name}` is not a scalar parameter of `{cam}`")]
    UnknownKnob { name: String, cam: String },
    #[error("`{cam}` grows past {MAX_NODES} operations once its calls are inlined")]
    TooLarge { cam: String, span: Span },
}

/// Lowers the function `root` (a `cam`) with the scalar parameter values in `knobs`, which
/// override defaults. Parameters without a value become inputs.
pub fn lower(program: &Program, root: FuncId, knobs: &HashMap<String, f32>) -> Result<Kernel, LowerError> {
    let function = program.function(root);
    for name in knobs.keys() {
        let scalar = function
            .params
            .iter()
            .any(|p| &p.name == name && p.ty.is_scalar());
        if !scalar {
            return Err(LowerError::UnknownKnob {
                name: name.clone(),
                cam: function.name.clone(),
            });
        }
    }
    let mut lowering = Lowering {
        program,
        builder: Builder::default(),
        inputs: Vec::new(),
        root_name: &function.name,
    };
    let mut args = Vec::with_capacity(function.params.len());
    for param in &function.params {
        let value = knobs.get(&param.name).copied().or(param.default);
        let node = match value {
            Some(v) => lowering.push(Op::Const(v), AxisSet::SCALAR, param.span)?,
            None => {
                let kind = if param.shared {
                    InputKind::Shared
                } else {
                    InputKind::PerImage
                };
                lowering.inputs.push(Input {
                    name: param.name.clone(),
                    ty: param.ty,
                    kind,
                    span: param.span,
                });
                let index = lowering.inputs.len() as u32 - 1;
                lowering.push(Op::Input(index), param.ty, param.span)?
            }
        };
        args.push(node);
    }
    let output = lowering.inline(root, &args)?;
    Ok(Kernel {
        name: function.name.clone(),
        inputs: lowering.inputs,
        nodes: lowering.builder.nodes,
        output,
        role: Role::Map,
    })
}

struct Lowering<'a> {
    program: &'a Program,
    builder: Builder,
    inputs: Vec<Input>,
    root_name: &'a str,
}

impl Lowering<'_> {
    fn push(&mut self, op: Op, ty: AxisSet, span: Span) -> Result<NodeId, LowerError> {
        if self.builder.nodes.len() >= MAX_NODES {
            return Err(LowerError::TooLarge {
                cam: self.root_name.to_string(),
                span,
            });
        }
        Ok(self.builder.push(op, ty, span))
    }

    /// `pick[axis](x, index)` as `sum[axis](where(index[axis] == index, x, 0))`, NaN where no
    /// position of the axis equals `index` (out of range, or not a whole number).
    fn pick(
        &mut self,
        axis: Axis,
        x: NodeId,
        index: NodeId,
        ty: AxisSet,
        span: Span,
    ) -> Result<NodeId, LowerError> {
        let axes = AxisSet::SCALAR.with(axis);
        let scalar = AxisSet::SCALAR;
        let index_ty = self.builder.nodes[index.index()].ty;
        let x_ty = self.builder.nodes[x.index()].ty;
        let position = self.push(Op::Index(axis), axes, span)?;
        let hit = self.push(
            Op::Binary(BinaryOp::Eq, position, index),
            index_ty.with(axis),
            span,
        )?;
        let zero = self.push(Op::Const(0.0), scalar, span)?;
        let chosen = self.push(Op::Select(hit, x, zero), x_ty.union(index_ty), span)?;
        let picked = self.push(Op::Reduce(ReduceOp::Sum, axes, chosen), ty, span)?;
        let found = self.push(Op::Reduce(ReduceOp::Max, axes, hit), index_ty, span)?;
        let nan = self.push(Op::Const(f32::NAN), scalar, span)?;
        self.push(Op::Select(found, picked, nan), ty, span)
    }

    /// Emits the body of `func` with its parameters bound to `args` (missing trailing
    /// arguments take their defaults); returns the node of its result. Recursion depth is the
    /// depth of the call graph, which the type checker keeps acyclic.
    fn inline(&mut self, func: FuncId, args: &[NodeId]) -> Result<NodeId, LowerError> {
        let function = self.program.function(func);
        let mut params = args.to_vec();
        for param in &function.params[args.len()..] {
            let default = param.default.expect("checked: omitted arguments have defaults");
            params.push(self.push(Op::Const(default), AxisSet::SCALAR, param.span)?);
        }
        let mut values: Vec<NodeId> = Vec::with_capacity(function.exprs.len());
        for expr in &function.exprs {
            let at = |id: crate::typed::ExprId| values[id.index()];
            let op = match &expr.kind {
                ExprKind::Const(v) => Op::Const(*v),
                ExprKind::Param(i) => {
                    values.push(params[*i as usize]);
                    continue;
                }
                ExprKind::Let(i) => {
                    values.push(at(function.lets[*i as usize].value));
                    continue;
                }
                ExprKind::Call(callee, call_args) => {
                    let call_args: Vec<NodeId> = call_args.iter().map(|&a| at(a)).collect();
                    let result = self.inline(*callee, &call_args)?;
                    values.push(result);
                    continue;
                }
                ExprKind::Clamp(x, lo, hi) => {
                    let (x, lo, hi) = (at(*x), at(*lo), at(*hi));
                    let low_ty = self.builder.nodes[x.index()]
                        .ty
                        .union(self.builder.nodes[lo.index()].ty);
                    let raised = self.push(Op::Binary(BinaryOp::Max, x, lo), low_ty, expr.span)?;
                    Op::Binary(BinaryOp::Min, raised, hi)
                }
                ExprKind::Unary(op, x) => Op::Unary(*op, at(*x)),
                ExprKind::Binary(op, a, b) => Op::Binary(*op, at(*a), at(*b)),
                ExprKind::Select(c, a, b) => Op::Select(at(*c), at(*a), at(*b)),
                ExprKind::Reduce(op, axes, x) => Op::Reduce(*op, *axes, at(*x)),
                ExprKind::Softmax(axes, x) => Op::Softmax(*axes, at(*x)),
                ExprKind::Normalize(axes, x) => Op::Normalize(*axes, at(*x)),
                ExprKind::Pc1(axis, x) => Op::Pc1(*axis, at(*x)),
                ExprKind::Size(axes) => Op::Size(*axes),
                ExprKind::Index(axis) => Op::Index(*axis),
                ExprKind::Pick(axis, x, index) => {
                    let node = self.pick(*axis, at(*x), at(*index), expr.ty, expr.span)?;
                    values.push(node);
                    continue;
                }
            };
            let node = self.push(op, expr.ty, expr.span)?;
            values.push(node);
        }
        Ok(values[function.result.index()])
    }
}
