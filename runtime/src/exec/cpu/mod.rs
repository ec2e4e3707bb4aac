//! The CPU backend: the kernel lowered to Cranelift IR (`camc_compiler::codegen::clif`), compiled
//! in memory by Cranelift's JIT for this machine, and run over a batch's images in parallel with
//! rayon. The code is specialized to one dataset's sizes ([`Dims`]); see docs/backends.md.

mod helpers;

use super::{check_batch, check_scaled_batch, Batch, Data, ExecError, Executor, ImageSink};
use crate::dims::Dims;
use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::codegen::clif::{self, Sizes};
use camc_compiler::ir::Kernel;
use cranelift_codegen::ir::{UserExternalName, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, DataDescription, Linkage, Module};
use rayon::prelude::*;
use std::sync::{Mutex, TryLockError};

/// `fn(inputs, out, scratch)`, see `camc_compiler::codegen::clif`.
type KernelFn = unsafe extern "C" fn(*const *const f32, *mut f32, *mut u8);
/// The same with the post-processing: returns the map's number of non-finite values.
type ScaledFn = unsafe extern "C" fn(*const *const f32, *mut f32, *mut u8) -> i64;

pub struct CpuExecutor {
    kernel: Kernel,
    dims: Dims,
    raw: Compiled<KernelFn>,
    /// The function with the post-processing to the size last asked for, compiled on demand.
    scaled: Option<([usize; 2], Compiled<ScaledFn>)>,
    /// One set of buffers per rayon thread, kept from image to image and batch to batch: a
    /// worker's buffers are allocated (and their pages faulted in) once.
    workers: Vec<Mutex<Worker>>,
}

/// A compiled function and the JIT module owning its machine code.
struct Compiled<F> {
    function: F,
    scratch_bytes: usize,
    /// Freed on drop.
    module: Option<JITModule>,
}

impl<F> Drop for Compiled<F> {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: callers of `function` borrow the executor, which owns `self`, so no call
            // is in flight, and the pointer is dropped with `self`.
            unsafe { module.free_memory() };
        }
    }
}

fn backend(message: impl ToString) -> ExecError {
    ExecError::Backend {
        backend: "cpu",
        message: message.to_string(),
    }
}

/// The JIT module holding the compiled kernel (with the post-processing to `size` if given),
/// the kernel's address and its scratch size.
fn compile(
    kernel: &Kernel,
    dims: Dims,
    size: Option<[usize; 2]>,
) -> Result<(JITModule, *const u8, usize), ExecError> {
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
    let target = module.target_config();
    let lowered = match size {
        None => clif::lower(kernel, sizes, target),
        Some(size) => clif::lower_scaled(kernel, sizes, size, target),
    }
    .map_err(backend)?;
    let mut function = lowered.function;
    for import in &lowered.imports {
        let id = module
            .declare_function(import.name, Linkage::Import, &import.signature)
            .map_err(backend)?;
        function
            .params
            .reset_user_func_name(import.name_ref, UserExternalName::new(0, id.as_u32()));
    }
    for data in lowered.data {
        let id = module.declare_anonymous_data(false, false).map_err(backend)?;
        let mut description = DataDescription::new();
        description.define(data.bytes.into_boxed_slice());
        description.set_align(16);
        module.define_data(id, &description).map_err(backend)?;
        function
            .params
            .reset_user_func_name(data.name_ref, UserExternalName::new(1, id.as_u32()));
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
        let (module, address, scratch_bytes) = compile(kernel, dims, None)?;
        // SAFETY: the function was defined with `clif::signature(_, false)` under the target's
        // default calling convention, which is `extern "C"`'s on this machine.
        let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(address) };
        Ok(CpuExecutor {
            kernel: kernel.clone(),
            dims,
            raw: Compiled {
                function,
                scratch_bytes,
                module: Some(module),
            },
            scaled: None,
            workers: (0..rayon::current_num_threads().max(1))
                .map(|_| Mutex::default())
                .collect(),
        })
    }

    /// The function post-processing to `size`, compiled on first use.
    fn scaled(&mut self, size: [usize; 2]) -> Result<&Compiled<ScaledFn>, ExecError> {
        if self
            .scaled
            .as_ref()
            .is_none_or(|(compiled_for, _)| *compiled_for != size)
        {
            let (module, address, scratch_bytes) = compile(&self.kernel, self.dims, Some(size))?;
            // SAFETY: defined with `clif::signature(_, true)`, as in `new`.
            let function = unsafe { std::mem::transmute::<*const u8, ScaledFn>(address) };
            let compiled = Compiled {
                function,
                scratch_bytes,
                module: Some(module),
            };
            self.scaled = Some((size, compiled));
        }
        Ok(&self.scaled.as_ref().expect("compiled above").1)
    }
}

/// What [`CpuExecutor::scaling`] found.
enum Scaling<'a> {
    /// The result is not a 2-D map or `size` not `H,W`: nothing touched.
    Unsupported,
    /// No image or an empty size: nothing to compute.
    Empty,
    /// The call, and the values of one map.
    Ready(Call<'a, ScaledFn>, usize),
}

/// One worker's buffers: the kernel's scratch memory, each input's image as f32 where it is
/// read from its file or converted from f16/bf16, halves read from a file, and a map for
/// [`Executor::run_scaled_each`].
#[derive(Default)]
struct Worker {
    scratch: Vec<u128>,
    converted: Vec<Vec<f32>>,
    halves: Vec<u16>,
    map: Vec<f32>,
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
        out.par_chunks_mut(out_len)
            .enumerate()
            .try_for_each(|(image, result)| call.image(batch, image, result).map(drop))
    }

    /// The post-processing compiled into the kernel (`clif::lower_scaled`): each image goes
    /// from the inputs to its resized map in one call, on one thread, with no batch-wide raw
    /// buffer and no second pass.
    fn run_scaled(
        &mut self,
        batch: &Batch<'_>,
        size: &[usize],
        out: &mut [f32],
        bad: &mut [usize],
    ) -> Result<bool, ExecError> {
        let (call, per_image) = match self.scaling(batch, size, out.len(), bad)? {
            Scaling::Unsupported => return Ok(false),
            Scaling::Empty => return Ok(true),
            Scaling::Ready(call, per_image) => (call, per_image),
        };
        out.par_chunks_mut(per_image)
            .zip(bad.par_iter_mut())
            .enumerate()
            .try_for_each(|(image, (result, bad))| {
                *bad = call.image(batch, image, result)? as usize;
                Ok::<_, ExecError>(())
            })?;
        Ok(true)
    }

    /// As [`CpuExecutor::run_scaled`], each map computed into its worker's buffer of one image
    /// and handed to `sink` from there, while it is still in the worker's cache.
    fn run_scaled_each(
        &mut self,
        batch: &Batch<'_>,
        size: &[usize],
        bad: &mut [usize],
        sink: &ImageSink<'_>,
    ) -> Result<bool, ExecError> {
        let out_len = batch.n * size.iter().product::<usize>();
        let (call, per_image) = match self.scaling(batch, size, out_len, bad)? {
            Scaling::Unsupported => return Ok(false),
            Scaling::Empty => return Ok(true),
            Scaling::Ready(call, per_image) => (call, per_image),
        };
        bad.par_iter_mut().enumerate().try_for_each(|(image, bad)| {
            *bad = call.image_to(batch, image, per_image, sink)? as usize;
            Ok::<_, ExecError>(())
        })?;
        Ok(true)
    }
}

impl CpuExecutor {
    /// What the compiled post-processing does with a batch scaled to `size` (`out_len` output
    /// values in all), the batch checked against it where it applies; compiles the function on
    /// first use.
    fn scaling(
        &mut self,
        batch: &Batch<'_>,
        size: &[usize],
        out_len: usize,
        bad: &[usize],
    ) -> Result<Scaling<'_>, ExecError> {
        let hw = AxisSet::SCALAR.with(Axis::H).with(Axis::W);
        let (&[height, width], true) = (size, self.kernel.output_ty() == hw) else {
            return Ok(Scaling::Unsupported);
        };
        check_scaled_batch(&self.kernel, self.dims, batch, [height, width], out_len, bad)?;
        if batch.n == 0 || height * width == 0 {
            return Ok(Scaling::Empty);
        }
        let lens = self.lens();
        self.scaled([height, width])?;
        let compiled = &self.scaled.as_ref().expect("compiled above").1;
        let call = Call {
            function: compiled.function,
            lens,
            scratch_bytes: compiled.scratch_bytes,
            workers: &self.workers,
        };
        Ok(Scaling::Ready(call, height * width))
    }

    /// Values per image of each input.
    fn lens(&self) -> Vec<usize> {
        self.kernel.inputs.iter().map(|i| self.dims.len(i.ty)).collect()
    }

    fn call(&self) -> Call<'_, KernelFn> {
        Call {
            function: self.raw.function,
            lens: self.lens(),
            scratch_bytes: self.raw.scratch_bytes,
            workers: &self.workers,
        }
    }
}

/// A compiled entry point as the workers call it.
trait Entry: Copy + Send + Sync {
    /// Calls the function; returns the number of non-finite values it reports (0 for a raw
    /// kernel).
    ///
    /// # Safety
    /// The pointers must be valid for the sizes the function was compiled for.
    unsafe fn call(self, inputs: *const *const f32, out: *mut f32, scratch: *mut u8) -> i64;
}

impl Entry for KernelFn {
    unsafe fn call(self, inputs: *const *const f32, out: *mut f32, scratch: *mut u8) -> i64 {
        // SAFETY: as the caller promised.
        unsafe { self(inputs, out, scratch) };
        0
    }
}

impl Entry for ScaledFn {
    unsafe fn call(self, inputs: *const *const f32, out: *mut f32, scratch: *mut u8) -> i64 {
        // SAFETY: as the caller promised.
        unsafe { self(inputs, out, scratch) }
    }
}

/// What the worker threads need to call the kernel (the executor itself, owning the JIT module,
/// is not shared between threads).
struct Call<'a, F> {
    function: F,
    /// Values per image of each input.
    lens: Vec<usize>,
    scratch_bytes: usize,
    workers: &'a [Mutex<Worker>],
}

impl<F: Entry> Call<'_, F> {
    /// Calls `f` with the calling thread's buffers (rayon's threads each have their own); a
    /// thread finding its slot taken (a thread of another pool, or `f` re-entered through the
    /// sink) gets fresh buffers rather than waiting for them.
    fn with_worker<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> R {
        let slot = rayon::current_thread_index().unwrap_or(0) % self.workers.len();
        match self.workers[slot].try_lock() {
            Ok(mut worker) => f(&mut worker),
            Err(TryLockError::Poisoned(poisoned)) => f(&mut poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => f(&mut Worker::default()),
        }
    }

    /// Runs the kernel on image `image` of the (checked) batch into `result`; returns what the
    /// function returns ([`Entry::call`]).
    fn image(&self, batch: &Batch<'_>, image: usize, result: &mut [f32]) -> Result<i64, ExecError> {
        self.with_worker(|worker| self.compute(worker, batch, image, result))
    }

    /// [`Call::image`] into the worker's buffer of one map (`per_image` values), handed to
    /// `sink` from there.
    fn image_to(
        &self,
        batch: &Batch<'_>,
        image: usize,
        per_image: usize,
        sink: &ImageSink<'_>,
    ) -> Result<i64, ExecError> {
        self.with_worker(|worker| {
            let mut map = std::mem::take(&mut worker.map);
            map.resize(per_image, 0.0);
            let bad = self.compute(worker, batch, image, &mut map);
            let sunk = bad.is_ok().then(|| sink(image, &map).map_err(ExecError::Sink));
            worker.map = map;
            sunk.transpose()?;
            bad
        })
    }

    /// [`Call::image`] with the worker's buffers. An input that lies in a file is read from
    /// there into the worker's buffer (positional reads: no page faults, nothing mapped to undo).
    fn compute(
        &self,
        worker: &mut Worker,
        batch: &Batch<'_>,
        image: usize,
        result: &mut [f32],
    ) -> Result<i64, ExecError> {
        let inputs = batch.inputs.len();
        worker.converted.resize_with(inputs, Vec::new);
        let scratch = self.scratch_bytes.div_ceil(16);
        if worker.scratch.len() < scratch {
            worker.scratch.resize(scratch, 0);
        }
        let mut pointers = Vec::with_capacity(inputs);
        for (j, (data, &len)) in batch.inputs.iter().zip(&self.lens).enumerate() {
            // f32 values in memory are read where they lie; anything else is copied.
            if let (Data::F32(values), None) = (*data, batch.file(j)) {
                pointers.push(values[image * len..(image + 1) * len].as_ptr());
                continue;
            }
            let converted = &mut worker.converted[j];
            batch
                .image_f32(j, image, len, converted, &mut worker.halves)
                .map_err(|e| backend(format!("reading input {j} of image {image}: {e}")))?;
            pointers.push(converted.as_ptr());
        }
        // SAFETY: `check_batch` (or `check_scaled_batch`) checked that every input holds `n`
        // images of its type and `result` one image's output (a file's image was read whole);
        // scratch has at least the size the lowering asked for.
        Ok(unsafe {
            self.function.call(
                pointers.as_ptr(),
                result.as_mut_ptr(),
                worker.scratch.as_mut_ptr().cast(),
            )
        })
    }
}
