//! The IR's invariants, checked once after lowering and after every optimizer pass in debug
//! builds. Backends rely on them and never check again.

use super::{Kernel, NodeId, Op, Role};
use crate::axes::AxisSet;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid IR in `{kernel}` at %{node}: {problem}")]
pub struct Invalid {
    pub kernel: String,
    pub node: u32,
    pub problem: String,
}

/// What the validator learned about a valid kernel: the side table the optimizer's passes and
/// the backends read instead of walking the graph again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// How many nodes use each node as an operand (the output counts as one use).
    pub uses: Vec<u32>,
    /// Whether the output depends on each node.
    pub live: Vec<bool>,
}

impl Info {
    fn of(kernel: &Kernel) -> Info {
        let mut uses = vec![0; kernel.nodes.len()];
        for node in &kernel.nodes {
            for operand in node.op.operands() {
                uses[operand.index()] += 1;
            }
        }
        uses[kernel.output.index()] += 1;
        let mut live = vec![false; kernel.nodes.len()];
        live[kernel.output.index()] = true;
        for (i, node) in kernel.nodes.iter().enumerate().rev() {
            if live[i] {
                for operand in node.op.operands() {
                    live[operand.index()] = true;
                }
            }
        }
        Info { uses, live }
    }
}

/// Checks that operands precede their users, that each node's type follows from its operands',
/// that inputs exist, and that the output is spatial; returns the kernel's [`Info`].
pub fn validate(kernel: &Kernel) -> Result<Info, Invalid> {
    let fail = |node: usize, problem: String| Invalid {
        kernel: kernel.name.clone(),
        node: node as u32,
        problem,
    };
    for (i, node) in kernel.nodes.iter().enumerate() {
        for operand in node.op.operands() {
            if operand.index() >= i {
                return Err(fail(
                    i,
                    format!("operand %{} does not precede its user", operand.0),
                ));
            }
        }
        let ty = |id: NodeId| kernel.nodes[id.index()].ty;
        let expected: AxisSet = match node.op {
            Op::Input(index) => match kernel.inputs.get(index as usize) {
                Some(input) => input.ty,
                None => return Err(fail(i, format!("no input {index}"))),
            },
            Op::Const(_) => AxisSet::SCALAR,
            Op::Unary(_, x) => ty(x),
            Op::Binary(_, a, b) => ty(a).union(ty(b)),
            Op::Select(c, a, b) => ty(c).union(ty(a)).union(ty(b)),
            Op::Reduce(_, axes, x) | Op::Softmax(axes, x) | Op::Normalize(axes, x) => {
                if axes.is_empty() || !axes.is_subset_of(ty(x)) {
                    return Err(fail(
                        i,
                        format!("works over {axes} of an operand typed {}", ty(x)),
                    ));
                }
                match node.op {
                    Op::Reduce(..) => ty(x).minus(axes),
                    _ => ty(x),
                }
            }
            Op::Pc1(axis, x) => {
                let axes = AxisSet::SCALAR.with(axis);
                if !ty(x).contains(axis) || ty(x).len() < 2 {
                    return Err(fail(i, format!("pc1[{axis}] of an operand typed {}", ty(x))));
                }
                ty(x).minus(axes)
            }
            Op::Index(axis) => AxisSet::SCALAR.with(axis),
            Op::Size(_) => AxisSet::SCALAR,
        };
        if node.ty != expected {
            return Err(fail(
                i,
                format!("typed {} but its operands give {expected}", node.ty),
            ));
        }
    }
    match kernel.nodes.get(kernel.output.index()) {
        None => Err(fail(kernel.output.index(), "the output does not exist".into())),
        Some(node) if kernel.role == Role::Map && (node.ty.spatial() != node.ty || node.ty.is_empty()) => {
            Err(fail(
                kernel.output.index(),
                format!("the output is {}, not spatial", node.ty),
            ))
        }
        Some(node) => {
            if let Role::Gradient { wrt, ty } = &kernel.role {
                if node.ty != *ty {
                    return Err(fail(
                        kernel.output.index(),
                        format!("the gradient with respect to `{wrt}` {ty} is typed {}", node.ty),
                    ));
                }
            }
            Ok(Info::of(kernel))
        }
    }
}
