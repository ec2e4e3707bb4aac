//! Dead-code elimination: drops nodes the output does not depend on, and inputs no node reads
//! (so a program that ignores `G` does not require it in the cache).

use crate::ir::{Info, Kernel, Node, NodeId, Op};

pub fn run(kernel: &mut Kernel, info: &Info) {
    let live = &info.live;
    let mut input_map: Vec<Option<u32>> = vec![None; kernel.inputs.len()];
    let mut inputs = Vec::new();
    for (i, node) in kernel.nodes.iter().enumerate() {
        if let (true, Op::Input(index)) = (live[i], node.op) {
            if input_map[index as usize].is_none() {
                input_map[index as usize] = Some(inputs.len() as u32);
                inputs.push(kernel.inputs[index as usize].clone());
            }
        }
    }
    let mut map: Vec<NodeId> = vec![NodeId(u32::MAX); kernel.nodes.len()];
    let mut nodes: Vec<Node> = Vec::new();
    for (i, node) in kernel.nodes.iter().enumerate() {
        if !live[i] {
            continue;
        }
        let op = match node.op {
            Op::Input(index) => Op::Input(input_map[index as usize].expect("live input was numbered")),
            other => other.map_operands(|o| map[o.index()]),
        };
        map[i] = NodeId(nodes.len() as u32);
        nodes.push(Node { op, ..*node });
    }
    kernel.output = map[kernel.output.index()];
    kernel.nodes = nodes;
    kernel.inputs = inputs;
}
