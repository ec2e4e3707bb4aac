//! Stages that all start with a loop over the channels share that loop. Grad-CAM++'s
//! `sum[h,w](A)`, `sum[h,w](alpha * relu(G))` and the final `sum[k](weights * A)` become one
//! loop over k: a channel's A and G are read while they are still in cache, instead of A, then G,
//! then A again over the whole image.
//!
//! A stage joins the group when its nest starts with a loop over `k` alone that is not its
//! innermost loop, and every value it reads from an earlier stage of the group is complete for
//! channel `k` once that stage's iteration `k` is done: a map, or a reduction without an
//! accumulator buffer, whose type has `k`. Accumulator buffers are filled before the shared loop
//! and turned into results after it.

use super::emit::Cx;
use super::nest::{is_load, Mode, Nest};
use super::plan::Stage;
use super::reduce::Job;
use crate::axes::{Axis, AxisSet};
use crate::ir::NodeId;
use cranelift_codegen::ir::Value;

/// A stage ready to emit.
pub(super) enum Prepared {
    Map { nest: Nest, node: NodeId, base: Value },
    Reduce { job: Job, node: NodeId },
    Helper(Stage),
}

impl Prepared {
    fn nest(&self) -> Option<&Nest> {
        match self {
            Prepared::Map { nest, .. } => Some(nest),
            Prepared::Reduce { job, .. } => Some(&job.nest),
            Prepared::Helper(_) => None,
        }
    }

    /// The node whose value the stage stores.
    fn node(&self) -> Option<NodeId> {
        match self {
            Prepared::Map { node, .. } | Prepared::Reduce { node, .. } => Some(*node),
            Prepared::Helper(_) => None,
        }
    }

    /// Whether the nest's outer loop is over `k` alone and can be shared.
    fn channel_outer(&self) -> bool {
        let Some(nest) = self.nest() else { return false };
        let k = AxisSet::SCALAR.with(Axis::K);
        let shares = nest.depth() >= 2 && nest.dims[0].axes == k;
        match self {
            Prepared::Reduce { job, .. } => shares && job.suffix != Some(0),
            _ => shares,
        }
    }

    /// Whether the stage's value for channel `k` is final after its iteration `k`.
    fn complete_per_channel(&self, cx: &Cx) -> bool {
        let Some(node) = self.node() else { return false };
        let has_k = cx.kernel.node(node).ty.contains(Axis::K);
        match self {
            Prepared::Map { .. } => has_k,
            Prepared::Reduce { job, .. } => has_k && job.acc.is_none(),
            Prepared::Helper(_) => false,
        }
    }
}

impl Cx<'_, '_> {
    pub(super) fn prepare(&mut self, stage: Stage) -> Prepared {
        match stage {
            Stage::Map { node, dst } => {
                let ty = self.kernel.node(node).ty;
                let nest = Nest::new(self.kernel, self.plan, self.sizes, node, ty, &[ty]);
                let base = self.base(dst);
                Prepared::Map { nest, node, base }
            }
            Stage::Reduce { node, acc } => match self.prepare_reduce(node, acc) {
                Some(job) => Prepared::Reduce { job, node },
                None => Prepared::Helper(stage),
            },
            Stage::Helper { .. } | Stage::Contract { .. } => Prepared::Helper(stage),
        }
    }

    /// Emits the stages, sharing channel loops where [`Prepared::channel_outer`] allows.
    pub(super) fn emit_stages(&mut self, stages: &[Stage]) {
        let prepared: Vec<Prepared> = stages.iter().map(|s| self.prepare(*s)).collect();
        let mut i = 0;
        while i < prepared.len() {
            let mut end = i + 1;
            if prepared[i].channel_outer() {
                while end < prepared.len() && self.joins(&prepared[i..end], &prepared[end]) {
                    end += 1;
                }
            }
            if end - i >= 2 {
                self.emit_shared(&prepared[i..end]);
            } else {
                self.emit_alone(&prepared[i]);
            }
            i = end;
        }
    }

    fn joins(&self, group: &[Prepared], next: &Prepared) -> bool {
        let Some(nest) = next.nest() else { return false };
        next.channel_outer()
            && nest.nodes.iter().all(|&id| {
                !is_load(self.kernel, self.plan, nest.root, id)
                    || group
                        .iter()
                        .find(|p| p.node() == Some(id))
                        .is_none_or(|p| p.complete_per_channel(self))
            })
    }

    fn emit_alone(&mut self, stage: &Prepared) {
        match stage {
            Prepared::Helper(Stage::Helper { node, op }) => self.helper_stage(*node, *op),
            Prepared::Helper(Stage::Contract { node, a, b, gemm }) => {
                self.contract_stage(*node, *a, *b, *gemm)
            }
            Prepared::Helper(_) => {}
            _ => {
                self.prologue(stage);
                if let Some(nest) = stage.nest() {
                    let env = self.env0(nest);
                    self.body(stage, 0, env);
                }
                self.epilogue(stage);
            }
        }
    }

    fn emit_shared(&mut self, group: &[Prepared]) {
        for stage in group {
            self.prologue(stage);
        }
        let channels = self.sizes.size(Axis::K);
        self.counted(0, channels, 1, Vec::new(), |cx, k, carried| {
            for stage in group {
                let Some(nest) = stage.nest() else { continue };
                let mut env = cx.env0(nest);
                cx.compute(nest, &mut env, 0, Mode::Scalar);
                cx.advance(nest, &mut env, 0, k);
                cx.body(stage, 1, env);
            }
            carried
        });
        for stage in group {
            self.epilogue(stage);
        }
    }

    fn prologue(&mut self, stage: &Prepared) {
        if let Prepared::Reduce { job, .. } = stage {
            self.reduce_prologue(job);
        }
    }

    fn epilogue(&mut self, stage: &Prepared) {
        if let Prepared::Reduce { job, .. } = stage {
            self.reduce_epilogue(job);
        }
    }

    /// The stage's loops from level `from` on.
    fn body(&mut self, stage: &Prepared, from: usize, env: super::nest::Env) {
        match stage {
            Prepared::Map { nest, node, base } => {
                let (node, base) = (*node, *base);
                let ty = self.kernel.node(node).ty;
                self.run_from(nest, from, env, &mut |cx, nest, env, mode, carried| {
                    let value = env.vals[&node];
                    let offset = env.offset(nest, ty);
                    cx.store(mode, value, base, offset, 4);
                    carried
                });
            }
            Prepared::Reduce { job, .. } => self.reduce_body(job, from, env),
            Prepared::Helper(_) => {}
        }
    }
}
