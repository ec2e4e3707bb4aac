//! The CUDA C writer: one [`Kernel`] to a standalone `.cu` file for NVRTC (no headers), with
//! `extern "C" __global__` entry points whose ABI is documented in docs/cuda.md:
//!
//! ```c
//! extern "C" __global__ void camc_NAME_DTYPE(
//!     const T0* in0, ..., const Tm* inm,  // the kernel's inputs in order, image-major
//!     float* out,                         // n images of the output type, or of out_h × out_w
//!     float* scratch,                     // gridDim.x * scratch_floats(k,d,h,w) floats
//!     int* bad,                           // n counts of non-finite values (out_h > 0), or NULL
//!     int n, int c, int k, int d, int h, int w,  // c = 1 without a class axis, d = 1 in 2-D
//!     int out_h, int out_w);              // 0, 0: the raw map; else post-processed (docs/run.md)
//! ```
//! Launch with `blockDim.x` = the threads the file was written for ([`threads_for`]: 512 by
//! default) and any `gridDim.x` ≥ 1: a block takes image `blockIdx.x`, then
//! every `gridDim.x`-th image after it. All of one image's work is done by one block: each
//! reduction is a stage whose results go to that block's scratch slice, every other value is
//! recomputed where it is used (inputs read straight from global memory), and the output stage
//! writes `out` (for an `[h,w]` map with `out_h > 0`: to scratch, then min-max, bilinear resize
//! and min-max by the same block, into `out`). The reductions that read an image's large inputs
//! (`A`, `G`) run in one pass over them, channel block by channel block from shared memory, where
//! the program allows it (schedule.rs, blocks.rs); otherwise each reads them from global memory.

mod blocks;
mod expand;
mod pc1;
mod prelude;
mod schedule;
mod stage;

use crate::axes::{Axis, AxisSet};
use crate::dims::Dims;
use crate::dtype::Dtype;
use crate::ir::{Kernel, NodeId, Op};
use std::fmt::Write;

/// Threads per block of [`write`], and the most [`threads_for`] gives.
pub const THREADS: u32 = 512;

/// The fewest threads per block [`threads_for`] gives: two warps.
pub const MIN_THREADS: u32 = 64;

/// Threads per block for images of these sizes (docs/cuda.md, "Launch shape"): enough that the
/// largest per-image tensor gives each thread 8 values, a power of two from [`MIN_THREADS`] to
/// [`THREADS`]. Small maps (a few channels of 7×7) get fewer, idle-free threads; large ones
/// the default 512.
pub fn threads_for(dims: &Dims) -> u32 {
    let values = dims.c.max(1) * dims.k.max(1) * dims.d.max(1) * dims.h.max(1) * dims.w.max(1);
    let wanted = (values / 8).max(1).next_power_of_two();
    u32::try_from(wanted)
        .unwrap_or(THREADS)
        .clamp(MIN_THREADS, THREADS)
}

/// The element type of an input pointer in the generated C (16-bit types are read as bits);
/// `None` for types a kernel does not read as stored.
fn c_type(dtype: Dtype) -> Option<&'static str> {
    match dtype {
        Dtype::F32 => Some("float"),
        Dtype::F16 => Some("camc_f16"),
        Dtype::Bf16 => Some("camc_bf16"),
        Dtype::I64 => Some("long long"),
        Dtype::I32 => Some("int"),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("variant {got:?} has {} dtypes for a kernel of {expected} inputs", got.len())]
    VariantArity { expected: usize, got: Vec<Dtype> },
    #[error("variant {got:?}: kernel inputs are f32, f16, bf16, i64 or i32")]
    VariantDtype { got: Vec<Dtype> },
    #[error("{threads} threads per block: a power of two from 32 to 1024")]
    Threads { threads: u32 },
}

/// A written `.cu` file.
#[derive(Clone, Debug)]
pub struct Source {
    pub text: String,
    /// One entry point per requested variant, in order.
    pub entries: Vec<String>,
    /// What each block keeps in scratch memory, in slice order.
    pub scratch: Vec<Slot>,
}

impl Source {
    /// Floats of scratch memory each block needs for these axis sizes: the slots' sum, rounded
    /// up to even so that every block's slice starts 8-byte aligned (accumulators are f64).
    pub fn scratch_floats(&self, size: impl Fn(Axis) -> usize) -> usize {
        let floats: usize = self.scratch.iter().map(|slot| slot.floats(&size)).sum();
        floats.next_multiple_of(2)
    }
}

/// One slice of a block's scratch memory.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Slot {
    /// A reduction's result, of this type.
    Values(AxisSet),
    /// The running f64 state (two values) of an across-channel reduction to this type, while
    /// its channel blocks are added up (schedule.rs).
    Accumulator(AxisSet),
    /// `pc1[axis]` of a tensor over `positions` and `axis`: the projection (one value per
    /// position), then in f64 the matrix, its Gram matrix and three vectors (see `pc1.rs`).
    Pc1 { positions: AxisSet, axis: Axis },
}

fn product(ty: AxisSet, size: &impl Fn(Axis) -> usize) -> usize {
    ty.iter().map(size).product()
}

impl Slot {
    pub fn floats(&self, size: impl Fn(Axis) -> usize) -> usize {
        match *self {
            Slot::Values(ty) => product(ty, &size),
            Slot::Accumulator(ty) => 4 * product(ty, &size),
            Slot::Pc1 { positions, axis } => {
                let (rows, cols) = (product(positions, &size), size(axis));
                let m = rows.min(cols);
                rows + 2 * rows * cols + 2 * m * m + 6 * m + 2
            }
        }
    }

    /// The size as a C expression over the kernel's `K, D, H, W`.
    pub(crate) fn c_size(&self) -> String {
        match *self {
            Slot::Values(ty) => size_expr(ty),
            Slot::Accumulator(ty) => format!("4*{}", size_expr(ty)),
            Slot::Pc1 { positions, axis } => format!(
                "camc_pc1_floats({}, {})",
                size_expr(positions),
                axis.name().to_uppercase()
            ),
        }
    }
}

/// The entry point for inputs of these dtypes: `camc_NAME_f32` when every input has one dtype,
/// else one dtype name per input (`camc_NAME_f16_f32`).
pub fn entry_name(kernel: &Kernel, dtypes: &[Dtype]) -> String {
    let name: String = kernel
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let suffix = match dtypes.first() {
        None => "f32".to_string(),
        Some(first) if dtypes.iter().all(|d| d == first) => first.name().to_string(),
        Some(_) => dtypes.iter().map(|d| d.name()).collect::<Vec<_>>().join("_"),
    };
    format!("camc_{name}_{suffix}")
}

/// The variants `camc emit --target cuda` writes: all inputs f32, all f16, all bf16.
pub fn uniform_variants(kernel: &Kernel) -> Vec<Vec<Dtype>> {
    [Dtype::F32, Dtype::F16, Dtype::Bf16]
        .map(|d| vec![d; kernel.inputs.len()])
        .into_iter()
        .collect()
}

/// How a kernel's reductions are laid out in stages (docs/cuda.md).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// One pass over the large inputs where the program allows it: the reductions that read
    /// them run channel block by channel block on a copy in shared memory (schedule.rs).
    #[default]
    OnePass,
    /// One stage per reduction, each reading the inputs from global memory (what every program
    /// that does not fit the one-pass shape gets; kept for comparison in the GPU benchmark).
    Direct,
}

/// Writes the `.cu` file with one entry point per variant (a dtype per input), for blocks of
/// [`THREADS`].
pub fn write(kernel: &Kernel, variants: &[Vec<Dtype>]) -> Result<Source, Error> {
    write_for(kernel, variants, THREADS)
}

/// [`write`] for blocks of `threads` (a power of two from 32 to 1024; see [`threads_for`]).
pub fn write_for(kernel: &Kernel, variants: &[Vec<Dtype>], threads: u32) -> Result<Source, Error> {
    write_scheduled(kernel, variants, threads, Schedule::OnePass)
}

/// [`write_for`] with the stages laid out by `schedule`.
pub fn write_scheduled(
    kernel: &Kernel,
    variants: &[Vec<Dtype>],
    threads: u32,
    schedule: Schedule,
) -> Result<Source, Error> {
    if !(threads.is_power_of_two() && (32..=1024).contains(&threads)) {
        return Err(Error::Threads { threads });
    }
    for variant in variants {
        if variant.len() != kernel.inputs.len() {
            return Err(Error::VariantArity {
                expected: kernel.inputs.len(),
                got: variant.clone(),
            });
        }
        if !variant.iter().all(|d| d.is_input()) {
            return Err(Error::VariantDtype { got: variant.clone() });
        }
    }
    let expanded = expand::expand(kernel)?;
    let scratch_nodes: Vec<NodeId> = expanded
        .ids()
        .filter(|&id| matches!(expanded.node(id).op, Op::Reduce(..) | Op::Pc1(..)))
        .collect();
    let channels = match schedule {
        Schedule::OnePass => schedule::channels(&expanded, &scratch_nodes),
        Schedule::Direct => None,
    };
    let layout = stage::layout(&expanded, &scratch_nodes, channels.as_ref());
    let scratch: Vec<Slot> = layout.iter().map(|slice| slice.slot).collect();
    let mut text = String::new();
    header(&mut text, kernel, &scratch, threads);
    // Redefined, not defined: several files may share one translation unit (the tests' CPU
    // emulation), each with its own block size.
    let _ = writeln!(text, "#undef CAMC_THREADS\n#define CAMC_THREADS {threads}");
    text.push_str(prelude::PRELUDE);
    if scratch.iter().any(|s| matches!(s, Slot::Pc1 { .. })) {
        text.push_str(pc1::PRELUDE);
    }
    text.push('\n');
    stage::body(&mut text, &expanded, &scratch_nodes, channels.as_ref(), &layout);
    let mut entries = Vec::new();
    for variant in variants {
        let entry = entry_name(kernel, variant);
        wrapper(&mut text, &entry, variant);
        entries.push(entry);
    }
    Ok(Source {
        text,
        entries,
        scratch,
    })
}

/// Whether the kernel's entry points can post-process in the kernel (`out_h > 0`): 2-D maps.
pub fn scalable(kernel: &Kernel) -> bool {
    kernel.output_ty() == AxisSet::SCALAR.with(Axis::H).with(Axis::W)
}

fn slot(kernel: &Kernel, id: NodeId) -> Slot {
    let node = kernel.node(id);
    match node.op {
        Op::Pc1(axis, _) => Slot::Pc1 {
            positions: node.ty,
            axis,
        },
        _ => Slot::Values(node.ty),
    }
}

/// Product of the size names of `ty` in C (`k*h*w`, `1` for a scalar).
pub(crate) fn size_expr(ty: AxisSet) -> String {
    let parts: Vec<String> = ty.iter().map(|a| a.name().to_uppercase()).collect();
    if parts.is_empty() {
        "1".into()
    } else {
        parts.join("*")
    }
}

fn header(out: &mut String, kernel: &Kernel, scratch: &[Slot], threads: u32) {
    let scratch_sum: Vec<String> = scratch.iter().map(|slot| slot.c_size().to_lowercase()).collect();
    let scratch_sum = if scratch_sum.is_empty() {
        "0".to_string()
    } else {
        scratch_sum.join(" + ")
    };
    let _ = writeln!(
        out,
        "// camc kernel `{}`: CUDA C for NVRTC, no headers needed.",
        kernel.name
    );
    let _ = writeln!(
        out,
        "// ABI (docs/cuda.md), one entry point per input dtype variant:"
    );
    let _ = writeln!(
        out,
        "//   extern \"C\" __global__ void camc_{}_<dtype>(",
        kernel.name
    );
    for (i, input) in kernel.inputs.iter().enumerate() {
        let _ = writeln!(
            out,
            "//     const T{i}* in{i},  // `{}` {} per image",
            input.name, input.ty
        );
    }
    let scaled = scalable(kernel);
    let out_size = if scaled {
        format!("{} per image, or out_h*out_w", kernel.output_ty())
    } else {
        format!("{} per image", kernel.output_ty())
    };
    let _ = writeln!(out, "//     float* out,  // {out_size}");
    let _ = writeln!(
        out,
        "//     float* scratch,  // gridDim.x * ({scratch_sum}, rounded up to even) floats"
    );
    let _ = writeln!(
        out,
        "//     int* bad,  // n non-finite counts when out_h > 0, or NULL"
    );
    let _ = writeln!(
        out,
        "//     int n, int c, int k, int d, int h, int w,  // c = 1 without classes, d = 1 in 2-D"
    );
    if scaled {
        let _ = writeln!(
            out,
            "//     int out_h, int out_w);  // 0, 0: the raw map; else min-max, resize, min-max"
        );
    } else {
        let _ = writeln!(
            out,
            "//     int out_h, int out_w);  // ignored: only [h,w] maps are post-processed here"
        );
    }
    let _ = writeln!(
        out,
        "// T is float, or camc_f16 / camc_bf16 (16-bit storage, computed in f32)."
    );
    let _ = writeln!(
        out,
        "// Launch: blockDim.x = {threads}, any gridDim.x >= 1 (images are grid-strided),"
    );
    let _ = writeln!(
        out,
        "// no dynamic shared memory. Inputs aligned to their element size; 16-byte aligned runs"
    );
    let _ = writeln!(out, "// are read with 16-byte loads.");
    out.push('\n');
}

fn wrapper(out: &mut String, entry: &str, dtypes: &[Dtype]) {
    let params: Vec<String> = dtypes
        .iter()
        .enumerate()
        .map(|(i, &d)| format!("const {}* in{i}", c_type(d).unwrap_or("float")))
        .collect();
    let args: Vec<String> = (0..dtypes.len()).map(|i| format!("in{i}")).collect();
    let types: Vec<&str> = dtypes.iter().map(|&d| c_type(d).unwrap_or("float")).collect();
    let _ = writeln!(
        out,
        "\nextern \"C\" __global__ void __launch_bounds__(CAMC_THREADS, CAMC_MIN_BLOCKS) {entry}(\n    {}float* out, float* scratch, int* bad, int n, int c, int k, int d, int h, int w, int out_h, int out_w) {{",
        params.iter().map(|p| format!("{p}, ")).collect::<String>()
    );
    let template = if types.is_empty() {
        String::new()
    } else {
        format!("<{}>", types.join(", "))
    };
    let _ = writeln!(
        out,
        "    camc_body{template}({}out, scratch, bad, n, c, k, d, h, w, out_h, out_w);\n}}",
        args.iter().map(|a| format!("{a}, ")).collect::<String>()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_follow_the_largest_tensor_of_an_image() {
        // 8 values a thread, a power of two, from 64 to 512.
        assert_eq!(threads_for(&Dims::new(2, 1, 3, 3)), 64);
        assert_eq!(threads_for(&Dims::new(64, 1, 8, 8)), 512);
        assert_eq!(threads_for(&Dims::new(16, 1, 7, 7)), 128);
        assert_eq!(threads_for(&Dims::new(2048, 1, 7, 7)), 512);
        assert_eq!(threads_for(&Dims::new(5, 1, 7, 7).with_classes(3)), 128);
    }

    #[test]
    fn a_block_size_that_is_not_a_power_of_two_is_refused() {
        let kernel_source = "cam g(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G) * A))";
        let checked = crate::check_source("g", kernel_source);
        let program = checked.program.as_ref().expect("checks");
        let root = program.exported("g").expect("cam");
        let kernel = crate::compile_kernel(
            program,
            root,
            &std::collections::HashMap::new(),
            crate::opt::Level::Exact,
        )
        .expect("compiles");
        for threads in [0, 48, 2048] {
            assert!(matches!(
                write_for(&kernel, &[], threads),
                Err(Error::Threads { .. })
            ));
        }
        let source = write_for(&kernel, &[], 128).expect("writes");
        assert!(source.text.contains("#define CAMC_THREADS 128"));
        assert!(source.text.contains("blockDim.x = 128"));
    }
}
