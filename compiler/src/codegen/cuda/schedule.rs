//! Which reductions of a kernel read the image's large inputs, and whether they can all be done
//! in one pass over them, channel block by channel block (docs/cuda.md, "One pass over the
//! inputs").
//!
//! A *large* input is a per-image tensor over `k` and at least one spatial axis, without a class
//! axis (`A`, `G`: `[k,h,w]`): its channels are contiguous runs of the same length, so a block
//! of channels is one contiguous range that the block copies to shared memory with wide loads.
//! The reductions that read a large input form the *channel phase*. It runs block by block when
//! each of them is
//! - *per channel* (`k` kept: `sum[h,w](A)`), computed for the block's channels, or
//! - *across channels* (`k` reduced: `sum[k](w * A)`), accumulated over the blocks,
//!
//! and reads, besides inputs, only results that are complete when it runs: per-channel results
//! of the same phase (the block's channels are done first, in node order), and *early*
//! reductions, which depend on no large input (`max[k](w)` of Opti-CAM's softmax) and run
//! before the phase. Every other reduction runs after it. A program that does not fit this
//! shape (a per-channel reduction of an across-channel result, `pc1`) keeps the direct schedule:
//! one stage per reduction, each reading the inputs from global memory.

use crate::axes::{Axis, AxisSet};
use crate::ir::{InputKind, Kernel, NodeId, Op};

/// The channel-block schedule of a kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Channels {
    /// Reductions that run before the channel phase, in node order.
    pub early: Vec<NodeId>,
    /// The channel phase, in node order.
    pub phase: Vec<NodeId>,
    /// Reductions after the phase, in node order.
    pub late: Vec<NodeId>,
    /// The large inputs the phase reads, staged in shared memory in this order.
    pub staged: Vec<u32>,
}

impl Channels {
    /// Whether `id` is an across-channel reduction of the phase (accumulated over blocks).
    pub fn accumulates(&self, kernel: &Kernel, id: NodeId) -> bool {
        self.phase.contains(&id) && across(kernel, id)
    }
}

fn across(kernel: &Kernel, id: NodeId) -> bool {
    matches!(kernel.node(id).op, Op::Reduce(_, axes, _) if axes.contains(Axis::K))
}

/// A per-image tensor over channels and space, without classes.
pub fn large(kernel: &Kernel, input: u32) -> bool {
    let input = &kernel.inputs[input as usize];
    input.kind == InputKind::PerImage
        && input.ty.contains(Axis::K)
        && !input.ty.contains(Axis::C)
        && input.ty != AxisSet::SCALAR.with(Axis::K)
}

/// What the elementwise expression of a stage reads: inputs, and scratch results (where the
/// expression stops).
struct Reads {
    inputs: Vec<u32>,
    results: Vec<NodeId>,
}

fn reads(kernel: &Kernel, scratch: &[NodeId], operand: NodeId) -> Reads {
    let mut seen = vec![false; kernel.nodes.len()];
    let mut stack = vec![operand];
    let mut found = Reads {
        inputs: Vec::new(),
        results: Vec::new(),
    };
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id.index()], true) {
            continue;
        }
        if scratch.contains(&id) {
            found.results.push(id);
            continue;
        }
        if let Op::Input(i) = kernel.node(id).op {
            found.inputs.push(i);
        }
        stack.extend(kernel.node(id).op.operands());
    }
    found
}

/// The channel-block schedule of a kernel whose scratch nodes are `scratch` (in node order), or
/// `None` when it keeps the direct one.
pub fn channels(kernel: &Kernel, scratch: &[NodeId]) -> Option<Channels> {
    let mut operands = Vec::with_capacity(scratch.len());
    for &id in scratch {
        match kernel.node(id).op {
            Op::Reduce(_, _, x) => operands.push(reads(kernel, scratch, x)),
            _ => return None,
        }
    }
    let in_phase: Vec<bool> = operands
        .iter()
        .map(|r| r.inputs.iter().any(|&i| large(kernel, i)))
        .collect();
    if !in_phase.contains(&true) {
        return None;
    }
    // Whether each reduction depends on the phase, directly or through other results.
    let mut after_phase = vec![false; scratch.len()];
    let position = |id: NodeId| scratch.iter().position(|&s| s == id);
    for (at, r) in operands.iter().enumerate() {
        after_phase[at] = in_phase[at]
            || r.results
                .iter()
                .filter_map(|&s| position(s))
                .any(|p| after_phase[p]);
    }
    for (at, r) in operands.iter().enumerate().filter(|(at, _)| in_phase[*at]) {
        let id = scratch[at];
        if let Op::Reduce(_, axes, x) = kernel.node(id).op {
            if !axes.contains(Axis::K) && kernel.node(x).ty.minus(axes).contains(Axis::C) {
                return None;
            }
        }
        let complete = |&s: &NodeId| match position(s) {
            Some(p) if in_phase[p] => !across(kernel, s),
            Some(p) => !after_phase[p],
            None => false,
        };
        if !r.results.iter().all(complete) {
            return None;
        }
    }
    let mut staged: Vec<u32> = operands
        .iter()
        .flat_map(|r| r.inputs.iter().copied())
        .filter(|&i| large(kernel, i))
        .collect();
    staged.sort_unstable();
    staged.dedup();
    let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<NodeId> {
        (0..scratch.len())
            .filter(|&at| keep(at))
            .map(|at| scratch[at])
            .collect()
    };
    Some(Channels {
        early: pick(&|at| !after_phase[at]),
        phase: pick(&|at| in_phase[at]),
        late: pick(&|at| after_phase[at] && !in_phase[at]),
        staged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Kernel;

    fn expanded(name: &str, source: Option<&str>) -> (Kernel, Vec<NodeId>) {
        let checked = match source {
            Some(text) => crate::check_source(name, text),
            None => crate::check_stdlib(name).expect("a stdlib method"),
        };
        let program = checked.program.as_ref().expect("checks");
        let root = program.exported(name).expect("cam");
        let kernel = crate::compile_kernel(
            program,
            root,
            &std::collections::HashMap::new(),
            crate::opt::Level::Exact,
        )
        .expect("compiles");
        let kernel = super::super::expand::expand(&kernel).expect("expands");
        let scratch = kernel
            .ids()
            .filter(|&id| matches!(kernel.node(id).op, Op::Reduce(..) | Op::Pc1(..)))
            .collect();
        (kernel, scratch)
    }

    fn counts(name: &str, source: Option<&str>) -> Option<(usize, usize, usize, Vec<u32>)> {
        let (kernel, scratch) = expanded(name, source);
        channels(&kernel, &scratch).map(|c| (c.early.len(), c.phase.len(), c.late.len(), c.staged))
    }

    #[test]
    fn stdlib_methods_are_split_around_their_channel_phase() {
        // mean[h,w](G), then sum[k] of the weighted A.
        assert_eq!(counts("gradcam", None), Some((0, 2, 0, vec![0, 1])));
        // sum[h,w](A), the weights' sum[h,w], then sum[k].
        assert_eq!(counts("gradcampp", None), Some((0, 3, 0, vec![0, 1])));
        assert_eq!(counts("layercam", None), Some((0, 1, 0, vec![0, 1])));
        // Opti-CAM: softmax[k](w)'s max and sum before (w is [k], not large), normalize's min
        // and max of the map after.
        assert_eq!(counts("opticam", None), Some((2, 1, 2, vec![0])));
        // Recipro-CAM: whether the target is a class (max[c]) before; the logits' sum[k]
        // (classes kept); then softmax[c], the pick and the min-max.
        let (early, phase, late, staged) = counts("reciprocam", None).expect("channel phase");
        assert_eq!((early, phase, staged), (1, 1, vec![0]));
        assert!(late >= 3, "{late}");
        // pc1 keeps the direct schedule.
        assert_eq!(counts("eigencam", None), None);
    }

    #[test]
    fn a_per_channel_reduction_of_an_across_channel_result_keeps_the_direct_schedule() {
        let source = "cam p(A: [k,h,w]) = sum[k](A * mean[h,w](A - mean[k](A)))";
        assert_eq!(counts("p", Some(source)), None);
        // Reductions of the map after the phase are fine.
        let source = "cam q(A: [k,h,w], G: [k,h,w]) = normalize[h,w](sum[k](mean[h,w](G) * A))";
        assert_eq!(counts("q", Some(source)), Some((0, 2, 2, vec![0, 1])));
    }

    #[test]
    fn every_stdlib_method_but_pc1_reads_its_large_inputs_in_the_channel_phase_only() {
        for name in crate::stdlib::names() {
            let (kernel, scratch) = expanded(name, None);
            if scratch
                .iter()
                .any(|&id| matches!(kernel.node(id).op, Op::Pc1(..)))
            {
                continue;
            }
            let plan = channels(&kernel, &scratch).unwrap_or_else(|| panic!("{name}: no phase"));
            for &id in plan.early.iter().chain(&plan.late) {
                if let Op::Reduce(_, _, x) = kernel.node(id).op {
                    let read = reads(&kernel, &scratch, x).inputs;
                    assert!(!read.iter().any(|&i| large(&kernel, i)), "{name}: %{}", id.0);
                }
            }
            let output = reads(&kernel, &scratch, kernel.output).inputs;
            assert!(!output.iter().any(|&i| large(&kernel, i)), "{name}: output");
            let large_inputs: Vec<u32> = (0..kernel.inputs.len() as u32)
                .filter(|&i| large(&kernel, i))
                .collect();
            assert_eq!(plan.staged, large_inputs, "{name}");
        }
    }
}
