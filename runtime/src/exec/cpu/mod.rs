//! The CPU backend: the kernel lowered to Cranelift IR (`camc_compiler::codegen::clif`), compiled
//! in memory by Cranelift's JIT for this machine, and run over a batch's images in parallel with
//! rayon. The code is specialized to one dataset's sizes ([`Dims`]); see docs/backends.md.

mod helpers;

use super::{check_batch, check_scaled_batch, Batch, Data, ExecError, Executor};
use crate::dims::Dims;
use crate::postprocess::Scaler;
use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::codegen::clif::{self, Sizes};
use camc_compiler::ir::Kernel;
use cranelift_codegen::ir::{UserExternalName, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use rayon::prelude::*;

/// `fn(inputs, out, scratch)`, see `camc_compiler::codegen::clif`.
type KernelFn = unsafe extern "C" fn(*const *const f32, *mut f32, *mut u8);

pub struct CpuExecutor {
    kernel: Kernel,
    dims: Dims,
    function: KernelFn,
    scratch_bytes: usize,
    /// Owns the machine code `function` points into; freed on drop.
    module: Option<JITModule>,
}

fn backend(message: impl ToString) -> ExecError {
    ExecError::Backend {
        backend: "cpu",
        message: message.to_string(),
    }
}

/// The JIT module holding the compiled kernel, the kernel's address and its scratch size.
fn compile(kernel: &Kernel, dims: Dims) -> Result<(JITModule, *const u8, usize), ExecError> {
    let mut flags = settings::builder();
    for (name, value) in [
        ("opt_level", "speed"),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
    ] {
        flags.set(name, value).map_err(backend)?;
    }
    let isa = cranelift_native::builder()
        .map_err(backend)?
        .finish(settings::Flags::new(flags))
        .map_err(backend)?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    for (name, address) in helpers::symbols() {
        builder.symbol(name, address);
    }
    let mut module = JITModule::new(builder);
    let sizes = Sizes([dims.k, dims.d, dims.h, dims.w]);
    let lowered = clif::lower(kernel, sizes, module.target_config()).map_err(backend)?;
    let mut function = lowered.function;
    for import in &lowered.imports {
        let id = module
            .declare_function(import.name, Linkage::Import, &import.signature)
            .map_err(backend)?;
        function
            .params
            .reset_user_func_name(import.name_ref, UserExternalName::new(0, id.as_u32()));
    }
    let id = module
        .declare_function("camc_kernel", Linkage::Export, &function.signature)
        .map_err(backend)?;
    function.name = UserFuncName::user(0, id.as_u32());
    let mut context = module.make_context();
    context.func = function;
    module.define_function(id, &mut context).map_err(backend)?;
    module.finalize_definitions().map_err(backend)?;
    let address = module.get_finalized_function(id);
    Ok((module, address, lowered.scratch_bytes))
}

impl CpuExecutor {
    pub fn new(kernel: &Kernel, dims: Dims) -> Result<CpuExecutor, ExecError> {
        let (module, address, scratch_bytes) = compile(kernel, dims)?;
        // SAFETY: the function was defined with `clif::signature` under the target's default
        // calling convention, which is `extern "C"`'s on this machine.
        let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(address) };
        Ok(CpuExecutor {
            kernel: kernel.clone(),
            dims,
            function,
            scratch_bytes,
            module: Some(module),
        })
    }
}

impl Drop for CpuExecutor {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: `run` borrows `self` mutably, so no call of `function` is in flight, and
            // the pointer is dropped with `self`.
            unsafe { module.free_memory() };
        }
    }
}

/// One worker's buffers: the kernel's scratch memory and f32 copies of f16/bf16 inputs.
struct Worker {
    scratch: Vec<u128>,
    converted: Vec<Vec<f32>>,
    pointers: Vec<*const f32>,
}

impl Executor for CpuExecutor {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn run(&mut self, batch: &Batch<'_>, out: &mut [f32]) -> Result<(), ExecError> {
        check_batch(&self.kernel, self.dims, batch, out)?;
        let out_len = self.dims.len(self.kernel.output_ty());
        if batch.n == 0 || out_len == 0 {
            return Ok(());
        }
        let call = self.call();
        out.par_chunks_mut(out_len).enumerate().for_each_init(
            || call.worker(batch),
            |worker, (image, result)| call.image(worker, batch, image, result),
        );
        Ok(())
    }

    /// Each image's post-processing right after its kernel call, on the same thread, while its
    /// map is in cache: no batch-wide raw buffer, no second pass.
    fn run_scaled(
        &mut self,
        batch: &Batch<'_>,
        size: &[usize],
        out: &mut [f32],
        bad: &mut [usize],
    ) -> Result<bool, ExecError> {
        let hw = AxisSet::SCALAR.with(Axis::H).with(Axis::W);
        let (&[height, width], true) = (size, self.kernel.output_ty() == hw) else {
            return Ok(false);
        };
        let raw_len = self.dims.len(hw);
        check_scaled_batch(&self.kernel, self.dims, batch, [height, width], out, bad)?;
        if batch.n == 0 || height * width == 0 {
            return Ok(true);
        }
        let scaler = Scaler::new([self.dims.h, self.dims.w], [height, width]);
        let call = self.call();
        out.par_chunks_mut(height * width)
            .zip(bad.par_iter_mut())
            .enumerate()
            .for_each_init(
                || (call.worker(batch), vec![0.0; raw_len], Vec::new()),
                |(worker, raw, rows), (image, (result, bad))| {
                    call.image(worker, batch, image, raw);
                    *bad = scaler.apply(raw, result, rows);
                },
            );
        Ok(true)
    }
}

impl CpuExecutor {
    fn call(&self) -> Call {
        Call {
            function: self.function,
            lens: self.kernel.inputs.iter().map(|i| self.dims.len(i.ty)).collect(),
            scratch_bytes: self.scratch_bytes,
        }
    }
}

/// What the worker threads need to call the kernel (the executor itself, owning the JIT module,
/// is not shared between threads).
struct Call {
    function: KernelFn,
    /// Values per image of each input.
    lens: Vec<usize>,
    scratch_bytes: usize,
}

impl Call {
    fn worker(&self, batch: &Batch<'_>) -> Worker {
        Worker {
            scratch: vec![0; self.scratch_bytes.div_ceil(16)],
            converted: vec![Vec::new(); batch.inputs.len()],
            pointers: vec![std::ptr::null(); batch.inputs.len()],
        }
    }

    /// Runs the kernel on image `image` of the (checked) batch into `result`.
    fn image(&self, worker: &mut Worker, batch: &Batch<'_>, image: usize, result: &mut [f32]) {
        for (j, (data, &len)) in batch.inputs.iter().zip(&self.lens).enumerate() {
            let range = image * len..(image + 1) * len;
            let converted = &mut worker.converted[j];
            worker.pointers[j] = match data {
                Data::F32(v) => v[range].as_ptr(),
                Data::F16(v) => {
                    converted.clear();
                    converted.extend(v[range].iter().map(|x| x.to_f32()));
                    converted.as_ptr()
                }
                Data::Bf16(v) => {
                    converted.clear();
                    converted.extend(v[range].iter().map(|x| x.to_f32()));
                    converted.as_ptr()
                }
            };
        }
        // SAFETY: `check_batch` checked that every input holds `n` images of its type and
        // `result` one image's output; scratch has the size the lowering asked for.
        unsafe {
            (self.function)(
                worker.pointers.as_ptr(),
                result.as_mut_ptr(),
                worker.scratch.as_mut_ptr().cast(),
            )
        };
    }
}
