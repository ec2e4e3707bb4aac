//! The channel phase of the one-pass schedule (schedule.rs): the image's channels in blocks of
//! `KC`; each block of every staged input is copied once from global memory to shared memory
//! (`camc_stage`: 16-byte loads where aligned, widened to f32), then the phase's reductions run
//! on it in node order: per-channel ones store the block's results, across-channel ones add the
//! block's partial results to their f64 accumulators, which are finished after the last block.
//! When one channel of the staged inputs does not fit in the stage, the block is every channel
//! and the reductions read global memory, as the direct schedule does.

use super::schedule::Channels;
use super::size_expr;
use super::stage::{reduce_finish, reduce_start, Role, Stages, IN, IN2};
use crate::axes::{Axis, AxisSet};
use crate::ir::{NodeId, Op};
use std::fmt::Write;

impl Stages<'_> {
    pub(super) fn channel_phase(&self, out: &mut String, channels: &Channels) {
        let kernel = self.kernel;
        let per_channel: Vec<String> = channels
            .staged
            .iter()
            .map(|&i| size_expr(kernel.inputs[i as usize].ty.minus(AxisSet::SCALAR.with(Axis::K))))
            .collect();
        let phase: Vec<String> = channels.phase.iter().map(|id| format!("%{}", id.0)).collect();
        let staged: Vec<String> = channels.staged.iter().map(|i| format!("in{i}")).collect();
        let _ = writeln!(
            out,
            "        {{ // channel blocks: {} in one pass over {}",
            phase.join(", "),
            staged.join(", ")
        );
        let _ = writeln!(
            out,
            "{IN}const int camc_per = {};",
            per_channel
                .iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        let _ = writeln!(
            out,
            "{IN}const bool camc_staged = camc_per > 0 && camc_per <= CAMC_STAGE;"
        );
        let _ = writeln!(
            out,
            "{IN}const int KC = camc_block_channels(K, camc_per, camc_staged);"
        );
        let accumulated: Vec<NodeId> = channels
            .phase
            .iter()
            .copied()
            .filter(|&id| channels.accumulates(kernel, id))
            .collect();
        self.start_accumulators(out, &accumulated);
        let _ = writeln!(out, "{IN}for (int k0 = 0; k0 < K; k0 += KC) {{");
        let _ = writeln!(out, "{IN}    const int kn = K - k0 < KC ? K - k0 : KC;");
        let mut at = String::from("0");
        for (&i, per) in channels.staged.iter().zip(&per_channel) {
            let _ = writeln!(out, "{IN}    const int st{i} = {at};");
            at = format!("st{i} + kn * ({per})");
        }
        // The previous block's readers are done with the stage (and the accumulators are set).
        let _ = writeln!(out, "{IN}    __syncthreads();");
        let _ = writeln!(out, "{IN}    if (camc_staged) {{");
        for (&i, per) in channels.staged.iter().zip(&per_channel) {
            let _ = writeln!(
                out,
                "{IN2}camc_stage(x{i} + (long long)k0 * ({per}), kn * ({per}), camc_st + st{i});"
            );
        }
        let _ = writeln!(out, "{IN2}__syncthreads();\n{IN}    }}");
        for &id in &channels.phase {
            if let Op::Reduce(op, axes, x) = kernel.node(id).op {
                let role = if axes.contains(Axis::K) {
                    Role::Across
                } else {
                    Role::PerChannel
                };
                self.reduce(out, id, (op, axes, x), role);
            }
        }
        let _ = writeln!(out, "{IN}}}");
        self.finish_accumulators(out, &accumulated);
        let _ = writeln!(out, "{IN}__syncthreads();\n        }}");
    }

    /// Sets each across-channel reduction's accumulators to its starting value.
    fn start_accumulators(&self, out: &mut String, accumulated: &[NodeId]) {
        let kernel = self.kernel;
        for &id in accumulated {
            if let Op::Reduce(op, ..) = kernel.node(id).op {
                let _ = writeln!(
                    out,
                    "{IN}for (int o = threadIdx.x; o < {}; o += CAMC_THREADS) {{ acc{1}[2 * o] = {2}; acc{1}[2 * o + 1] = 0.0; }}",
                    size_expr(kernel.node(id).ty),
                    id.0,
                    reduce_start(op).0
                );
            }
        }
    }

    /// Each across-channel reduction's result from its accumulators, after the last block.
    fn finish_accumulators(&self, out: &mut String, accumulated: &[NodeId]) {
        let kernel = self.kernel;
        for &id in accumulated {
            if let Op::Reduce(op, axes, _) = kernel.node(id).op {
                let _ = writeln!(
                    out,
                    "{IN}for (int o = threadIdx.x; o < {}; o += CAMC_THREADS) {{",
                    size_expr(kernel.node(id).ty)
                );
                let _ = writeln!(
                    out,
                    "{IN2}const int RT = {};\n{IN2}const double a0 = acc{1}[2 * o], a1 = acc{1}[2 * o + 1];",
                    size_expr(axes),
                    id.0
                );
                let _ = writeln!(out, "{IN2}s{}[o] = (float)({});\n{IN}}}", id.0, reduce_finish(op));
            }
        }
    }
}
