//! Common-subexpression elimination: nodes with the same operation on the same operands are
//! one node (`G^2` written twice is computed once). Operands of commutative operations are
//! put in order first, so `a*b` and `b*a` meet.

use super::rewrite::{rewrite, Rewrite};
use crate::ir::{Info, Kernel, NodeId, Op};
use std::collections::HashMap;

pub fn run(kernel: &mut Kernel, _: &Info) {
    let mut seen: HashMap<Key, NodeId> = HashMap::new();
    rewrite(kernel, |b, node| {
        let key = key(&node.op);
        if let Some(&existing) = seen.get(&key) {
            return Rewrite::Replace(existing);
        }
        let op = canonical(node.op);
        let id = b.push(op, node.ty, node.span);
        seen.insert(key, id);
        Rewrite::Replace(id)
    });
}

fn canonical(op: Op) -> Op {
    match op {
        Op::Binary(f, a, b) if f.is_commutative() && b < a => Op::Binary(f, b, a),
        _ => op,
    }
}

/// An operation with its constants as bit patterns, so it can be hashed.
#[derive(Hash, PartialEq, Eq)]
struct Key(String);

fn key(op: &Op) -> Key {
    match canonical(*op) {
        Op::Const(v) => Key(format!("const {:08x}", v.to_bits())),
        other => Key(format!("{other:?}")),
    }
}
