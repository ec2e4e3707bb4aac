//! camc runtime, the execution engine: cache readers, batches, executors (interpreter, Cranelift
//! JIT, CUDA), post-processing and the kernel store. It depends on the compiler, never the
//! reverse; evaluation, metrics and search live above it in `camc-analysis`.

pub mod batch;
pub mod cache;
pub mod emit;
pub mod exec;
pub mod heatmap_file;
pub mod interp;
pub mod output;
mod pc1;
pub mod postprocess;
pub mod program;
pub mod run;
