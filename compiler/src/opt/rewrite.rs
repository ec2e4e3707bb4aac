//! Rebuilding a kernel node by node, with some nodes replaced by others: the mechanism that
//! every pass except dead-code elimination shares.

use crate::ir::{Builder, Kernel, Node, NodeId};

/// What a pass makes of a node whose operands are already rewritten.
pub enum Rewrite {
    /// Keep the node (with its rewritten operands).
    Keep,
    /// Use this already-built node instead.
    Replace(NodeId),
}

/// Rebuilds `kernel`: `decide` sees each node (operands remapped into the new arena) and the
/// new arena so far, and may push nodes into it.
pub fn rewrite(kernel: &mut Kernel, mut decide: impl FnMut(&mut Builder, &Node) -> Rewrite) {
    let mut builder = Builder::default();
    let mut map: Vec<NodeId> = Vec::with_capacity(kernel.nodes.len());
    for node in &kernel.nodes {
        let node = Node {
            op: node.op.map_operands(|o| map[o.index()]),
            ..*node
        };
        let id = match decide(&mut builder, &node) {
            Rewrite::Keep => builder.push(node.op, node.ty, node.span),
            Rewrite::Replace(id) => {
                debug_assert_eq!(
                    builder.nodes[id.index()].ty,
                    node.ty,
                    "a replacement keeps the type"
                );
                id
            }
        };
        map.push(id);
    }
    kernel.output = map[kernel.output.index()];
    kernel.nodes = builder.nodes;
}

/// The constant value of a node, if it is one.
pub fn constant(builder: &Builder, id: NodeId) -> Option<f32> {
    match builder.nodes[id.index()].op {
        crate::ir::Op::Const(v) => Some(v),
        _ => None,
    }
}
