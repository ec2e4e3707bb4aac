//! Lowering of a kernel to one Cranelift function that computes the program for one image
//! (see docs/backends.md). The sizes of the axes are constants: a function is specialized to
//! one dataset's sizes, so every loop bound and stride is an immediate.
//!
//! The function's signature is `fn(inputs: *const *const f32, out: *mut f32, scratch: *mut u8)`:
//! `inputs[i]` points at input `i` of the image (f32, canonical layout), `out` at the image's
//! result, `scratch` at [`Lowered::scratch_bytes`] bytes aligned to 16 that the function uses for
//! intermediate buffers. It calls the functions of [`Lowered::imports`], which the caller must
//! link: `expf`, `logf`, `powf`, `tanhf` (f32 → f32, with Rust's `f32` semantics),
//! `camc_helper` (see [`HELPER`]) and `camc_contract` (see [`CONTRACT`]).
//!
//! [`lower_scaled`] adds the post-processing (docs/run.md) to the function: it then returns the
//! number of non-finite values of the map as an `i64`, writes the resized map to `out`, and
//! reads its resize taps from a data object the caller must define ([`Lowered::data`]).

mod contract;
mod emit;
mod fuse;
mod nest;
mod plan;
mod postprocess;
mod reduce;
mod values;

pub use contract::Gemm;
pub use plan::{HelperOp, Place};
pub use postprocess::Scale;

use crate::axes::{Axis, AxisSet};
use crate::dims::Dims;
use crate::ir::{Info, Kernel};
use cranelift_codegen::ir::types;
use cranelift_codegen::ir::{AbiParam, Function, Signature, UserExternalNameRef, UserFuncName};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};

/// The runtime helper: `camc_helper(x, out, op, ty, axes, c, k, d, h, w)`, all `i64`: computes
/// the [`HelperOp`] `op` of the f32 tensor `x` of type `ty` over `axes` (bit `i` is
/// `Axis::ALL[i]`) into `out`, for those sizes. `index` and `size` read no `x`.
pub const HELPER: &str = "camc_helper";

/// The runtime's matrix product: `camc_contract(a, b, c, m, n, k, rs_a, cs_a, rs_b, cs_b, rs_c,
/// cs_c)`, all `i64`: the f32 [`Gemm`] `c = a · b` with those sizes and strides (in elements),
/// overwriting `c`.
pub const CONTRACT: &str = "camc_contract";

/// The scalar libm functions the code may call, each `f32 -> f32` except `powf` (two f32).
pub const LIBM: [&str; 4] = ["expf", "logf", "powf", "tanhf"];

/// Bits of an axis set as the helper reads them: bit `i` is `Axis::ALL[i]`.
pub fn axis_bits(ty: AxisSet) -> u8 {
    Axis::ALL
        .iter()
        .enumerate()
        .filter(|(_, a)| ty.contains(**a))
        .map(|(i, _)| 1u8 << i)
        .sum()
}

/// The inverse of [`axis_bits`].
pub fn axes_from_bits(bits: u8) -> AxisSet {
    Axis::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(AxisSet::SCALAR, |set, (_, a)| set.with(*a))
}

/// A function the lowered code calls; the caller links it by `name`.
#[derive(Clone, Debug)]
pub struct Import {
    pub name: &'static str,
    pub signature: Signature,
    /// How the function refers to it (its user external name).
    pub name_ref: UserExternalNameRef,
}

/// Read-only bytes the lowered code reads; the caller defines them (aligned to 16) and links
/// them by `name_ref`, as `cranelift_module` does for data objects (namespace 1).
#[derive(Clone, Debug)]
pub struct DataObject {
    pub name_ref: UserExternalNameRef,
    pub bytes: Vec<u8>,
}

pub struct Lowered {
    pub function: Function,
    pub imports: Vec<Import>,
    pub data: Vec<DataObject>,
    pub scratch_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ClifError {
    #[error("the CPU backend needs every axis to have at least one element, got sizes {0:?}")]
    EmptyAxis([usize; 5]),
    #[error("too large for the CPU backend: {0}")]
    TooLarge(String),
    #[error("the post-processing needs an [h,w] result, the program's is {0}")]
    NotAMap(AxisSet),
    #[error("internal compiler error: the generated Cranelift IR is invalid: {0}")]
    Verify(String),
}

/// The signature of a kernel function under `call_conv`: `(inputs, out, scratch)`. With the
/// post-processing it returns the number of non-finite values, and when it keeps the raw map
/// too, a fourth pointer says where that goes.
pub fn signature(call_conv: CallConv, scale: Option<Scale>) -> Signature {
    let mut sig = Signature::new(call_conv);
    let pointers = if scale.is_some_and(|s| s.keep_raw) { 4 } else { 3 };
    for _ in 0..pointers {
        sig.params.push(AbiParam::new(types::I64));
    }
    if scale.is_some() {
        sig.returns.push(AbiParam::new(types::I64));
    }
    sig
}

/// The target an `emit --target clif` shows when no machine is at hand: x86-64 System V.
pub fn default_target() -> TargetFrontendConfig {
    TargetFrontendConfig {
        default_call_conv: CallConv::SystemV,
        pointer_width: target_lexicon::PointerWidth::U64,
        page_size_align_log2: 12,
    }
}

/// Lowers `kernel` (with its validator [`Info`]) for `sizes`; the result is verified.
pub fn lower(
    kernel: &Kernel,
    info: &Info,
    sizes: Dims,
    target: TargetFrontendConfig,
) -> Result<Lowered, ClifError> {
    lower_with(kernel, info, sizes, None, target)
}

/// Lowers `kernel`, an `[h,w]` program, for `sizes` with the post-processing to `size` fused in;
/// with `keep_raw`, the function also writes the sanitized map at feature resolution.
pub fn lower_scaled(
    kernel: &Kernel,
    info: &Info,
    sizes: Dims,
    size: [usize; 2],
    keep_raw: bool,
    target: TargetFrontendConfig,
) -> Result<Lowered, ClifError> {
    let ty = kernel.output_ty();
    if ty != AxisSet::SCALAR.with(Axis::H).with(Axis::W) {
        return Err(ClifError::NotAMap(ty));
    }
    let scale = Scale {
        from: [sizes.size(Axis::H), sizes.size(Axis::W)],
        to: size,
        keep_raw,
    };
    lower_with(kernel, info, sizes, Some(scale), target)
}

fn lower_with(
    kernel: &Kernel,
    info: &Info,
    sizes: Dims,
    scale: Option<Scale>,
    target: TargetFrontendConfig,
) -> Result<Lowered, ClifError> {
    if sizes.array().contains(&0) {
        return Err(ClifError::EmptyAxis(sizes.array()));
    }
    if let Some(Scale {
        from: [h, _],
        to: [oh, ow],
        ..
    }) = scale
    {
        if oh == 0 || ow == 0 {
            return Err(ClifError::EmptyAxis([1, 1, 1, oh, ow]));
        }
        // The post-processing's buffers and tap offsets are byte offsets held in i32.
        match oh.max(h).checked_mul(ow) {
            Some(n) if n <= i32::MAX as usize / 8 => {}
            _ => {
                return Err(ClifError::TooLarge(format!(
                    "maps of {oh}×{ow} (from {h} rows); the limit is {} values",
                    i32::MAX as usize / 8
                )))
            }
        }
    }
    // Sizes whose product overflows would overflow the plan's buffer sizes: refuse them first.
    let limit = i32::MAX as usize / 8;
    let too_large = |what: String| ClifError::TooLarge(format!("{what}; the limit is {limit}"));
    let fits = sizes
        .array()
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .is_some();
    if !fits || sizes.array().iter().any(|&s| s > limit) {
        let [c, k, d, h, w] = sizes.array();
        return Err(too_large(format!(
            "sizes c, k, d, h, w = {c}, {k}, {d}, {h}, {w}"
        )));
    }
    let plan = plan::plan(kernel, info, sizes);
    let walked = plan::largest_walked(kernel, &plan, sizes);
    if walked > limit {
        let [c, k, d, h, w] = sizes.array();
        return Err(too_large(format!(
            "a tensor of {walked} values per image (c, k, d, h, w = {c}, {k}, {d}, {h}, {w})"
        )));
    }
    let mut function = Function::with_name_signature(
        UserFuncName::user(0, 0),
        signature(target.default_call_conv, scale),
    );
    let linked = emit::build(&mut function, kernel, &plan, sizes, scale, target);
    let flags = cranelift_codegen::settings::Flags::new(cranelift_codegen::settings::builder());
    cranelift_codegen::verify_function(&function, &flags).map_err(|e| ClifError::Verify(e.to_string()))?;
    Ok(Lowered {
        function,
        imports: linked.imports,
        data: linked.data,
        scratch_bytes: plan.scratch_bytes + scale.map_or(0, |s| s.scratch_bytes()),
    })
}

/// The function as Cranelift's text format, with a header naming the sizes.
pub fn text(kernel: &Kernel, lowered: &Lowered, sizes: Dims) -> String {
    let [c, k, d, h, w] = sizes.array();
    let classes = if c > 1 { format!("c={c}, ") } else { String::new() };
    let mut out = format!(
        "; camc kernel `{}` for {classes}k={k}, d={d}, h={h}, w={w}; scratch {} bytes\n",
        kernel.name, lowered.scratch_bytes
    );
    for import in &lowered.imports {
        out.push_str(&format!("; {} = {}\n", import.name_ref, import.name));
    }
    for data in &lowered.data {
        out.push_str(&format!(
            "; {} = {} bytes of resize taps\n",
            data.name_ref,
            data.bytes.len()
        ));
    }
    out.push_str(&lowered.function.display().to_string());
    out
}
