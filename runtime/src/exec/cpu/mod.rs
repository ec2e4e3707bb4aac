//! The CPU backend: the kernel lowered to Cranelift IR (`camc_compiler::codegen::clif`), compiled
//! in memory by Cranelift's JIT for this machine, and run over a batch's images in parallel with
//! rayon. The code is specialized to one dataset's sizes ([`Dims`]); see docs/backends.md.

mod helpers;

use super::{ExecError, Executor, Maps, Outputs, Sink, Spec};
use crate::batch::{Batch, Data};
use crate::postprocess::host_maps;
use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::codegen::clif;
use camc_compiler::dims::Dims;
use camc_compiler::ir::{InputKind, Kernel};
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
/// The same, also writing the sanitized raw map through the fourth pointer.
type ScaledRawFn = unsafe extern "C" fn(*const *const f32, *mut f32, *mut u8, *mut f32) -> i64;

pub struct CpuExecutor {
    spec: Spec,
    compiled: Compiled,
    /// One set of buffers per rayon thread, kept from image to image and batch to batch: a
    /// worker's buffers are allocated (and their pages faulted in) once.
    workers: Vec<Mutex<Worker>>,
}

/// The entry point compiled for the executor's [`Outputs`].
#[derive(Copy, Clone)]
enum Entry {
    /// The raw map; the post-processing, where asked for, on the host (results that are not
    /// 2-D maps).
    Raw(KernelFn),
    /// The post-processed map, computed in the function.
    Scaled(ScaledFn),
    /// Both maps, computed in the function.
    ScaledKeepingRaw(ScaledRawFn),
}

/// A compiled function and the JIT module owning its machine code.
struct Compiled {
    entry: Entry,
    scratch_bytes: usize,
    /// Freed on drop.
    module: Option<JITModule>,
}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: callers of `entry` borrow the executor, which owns `self`, so no call is
            // in flight, and the pointer is dropped with `self`.
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

/// The JIT module holding the compiled kernel (with the post-processing to `size` if given,
/// keeping the raw map too with `keep_raw`), the kernel's address and its scratch size.
fn compile(
    kernel: &Kernel,
    dims: Dims,
    size: Option<[usize; 2]>,
    keep_raw: bool,
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
    let target = module.target_config();
    // The validator's table of the kernel (and a kernel built by hand that is not valid IR is
    // an error here, not a wrong function).
    let info = camc_compiler::ir::validate(kernel).map_err(backend)?;
    let lowered = match size {
        None => clif::lower(kernel, &info, dims, target),
        Some(size) => clif::lower_scaled(kernel, &info, dims, size, keep_raw, target),
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
    /// Compiles `kernel` for `dims` and `outputs`: a 2-D map post-processed to `H,W` gets the
    /// post-processing compiled into the function (each image goes from the inputs to its
    /// resized map in one call, on one thread); any other result is computed raw and
    /// post-processed on the host.
    pub fn new(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<CpuExecutor, ExecError> {
        let spec = Spec::new(kernel, dims, outputs)?;
        let outputs = &spec.outputs;
        let map = AxisSet::SCALAR.with(Axis::H).with(Axis::W);
        let fused = match outputs.processed.as_deref() {
            Some(&[height, width]) if kernel.output_ty() == map => Some([height, width]),
            _ => None,
        };
        let keep_raw = fused.is_some() && outputs.raw;
        let (module, address, scratch_bytes) = compile(kernel, dims, fused, keep_raw)?;
        // SAFETY: the function was defined with `clif::signature` for these outputs under the
        // target's default calling convention, which is `extern "C"`'s on this machine.
        let entry = unsafe {
            match (fused, keep_raw) {
                (None, _) => Entry::Raw(std::mem::transmute::<*const u8, KernelFn>(address)),
                (Some(_), false) => Entry::Scaled(std::mem::transmute::<*const u8, ScaledFn>(address)),
                (Some(_), true) => {
                    Entry::ScaledKeepingRaw(std::mem::transmute::<*const u8, ScaledRawFn>(address))
                }
            }
        };
        Ok(CpuExecutor {
            spec,
            compiled: Compiled {
                entry,
                scratch_bytes,
                module: Some(module),
            },
            workers: (0..rayon::current_num_threads().max(1))
                .map(|_| Mutex::default())
                .collect(),
        })
    }
}

/// One worker's buffers: the kernel's scratch memory, each input's image as f32 where it is
/// read from its file or converted from f16/bf16, halves read from a file, and one image's
/// raw and processed maps.
#[derive(Default)]
struct Worker {
    scratch: Vec<u128>,
    converted: Vec<Vec<f32>>,
    halves: Vec<u16>,
    raw: Vec<f32>,
    processed: Vec<f32>,
}

impl Executor for CpuExecutor {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Images in parallel; each image's maps are computed into its worker's buffers and handed
    /// to `sink` from there, while they are still in the worker's cache.
    fn run(&mut self, batch: &Batch<'_>, sink: &Sink<'_>) -> Result<(), ExecError> {
        self.spec.check(batch)?;
        let lens = self.spec.input_lens();
        // An input shared by all images that is not f32 in memory is widened once for the
        // batch, not for every image.
        let mut halves = Vec::new();
        let mut shared = Vec::with_capacity(lens.len());
        for (j, (input, &len)) in self.spec.kernel.inputs.iter().zip(&lens).enumerate() {
            let widen = input.kind == InputKind::Shared
                && !matches!((batch.inputs[j], batch.file(j)), (Data::F32(_), None));
            shared.push(if widen {
                let mut values = Vec::new();
                batch
                    .image_f32(j, 0, len, &mut values, &mut halves)
                    .map_err(|e| backend(format!("reading `{}`: {e}", input.name)))?;
                Some(values)
            } else {
                None
            });
        }
        let call = Call {
            entry: self.compiled.entry,
            spec: &self.spec,
            shared,
            lens,
            scratch_bytes: self.compiled.scratch_bytes,
            workers: &self.workers,
            raw_shape: self.spec.raw_shape(),
            raw_len: self.spec.dims.len(self.spec.kernel.output_ty()),
            processed_len: self.spec.map_lens().1,
        };
        (0..batch.n)
            .into_par_iter()
            .try_for_each(|image| call.image(batch, image, sink))
    }
}

/// What the worker threads need to call the kernel (the executor itself, owning the JIT module,
/// is not shared between threads).
struct Call<'a> {
    entry: Entry,
    spec: &'a Spec,
    /// The f32 values of each shared input widened for the whole batch, where it needed it.
    shared: Vec<Option<Vec<f32>>>,
    /// Values per image of each input.
    lens: Vec<usize>,
    scratch_bytes: usize,
    workers: &'a [Mutex<Worker>],
    raw_shape: Vec<usize>,
    /// Values of one raw map.
    raw_len: usize,
    /// Values of one processed map (0 when not asked for).
    processed_len: usize,
}

impl Call<'_> {
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

    /// Runs the kernel on image `image` of the (checked) batch and hands its maps to `sink`.
    fn image(&self, batch: &Batch<'_>, image: usize, sink: &Sink<'_>) -> Result<(), ExecError> {
        self.with_worker(|worker| {
            let maps = self.compute(worker, batch, image)?;
            sink(image, maps).map_err(ExecError::Sink)
        })
    }

    /// One image's maps in the worker's buffers. An input that lies in a file is read from there
    /// into the worker's buffer (positional reads: no page faults, nothing mapped to undo).
    fn compute<'w>(
        &self,
        worker: &'w mut Worker,
        batch: &Batch<'_>,
        image: usize,
    ) -> Result<Maps<'w>, ExecError> {
        let inputs = batch.inputs.len();
        worker.converted.resize_with(inputs, Vec::new);
        let scratch = self.scratch_bytes.div_ceil(16);
        if worker.scratch.len() < scratch {
            worker.scratch.resize(scratch, 0);
        }
        let mut pointers = Vec::with_capacity(inputs);
        for (j, (data, &len)) in batch.inputs.iter().zip(&self.lens).enumerate() {
            if let Some(values) = &self.shared[j] {
                pointers.push(values.as_ptr());
                continue;
            }
            let at = self.spec.image_of(j, image);
            // f32 values in memory are read where they lie; anything else is copied.
            if let (Data::F32(values), None) = (*data, batch.file(j)) {
                pointers.push(values[at * len..(at + 1) * len].as_ptr());
                continue;
            }
            let converted = &mut worker.converted[j];
            batch
                .image_f32(j, at, len, converted, &mut worker.halves)
                .map_err(|e| {
                    backend(format!(
                        "reading `{}` of image {image}: {e}",
                        self.spec.kernel.inputs[j].name
                    ))
                })?;
            pointers.push(converted.as_ptr());
        }
        let (inputs, scratch) = (pointers.as_ptr(), worker.scratch.as_mut_ptr().cast());
        // SAFETY: `Spec::check` checked that every input holds `n` images of its type (a file's
        // image was read whole); the output buffers are sized for the function's outputs and
        // scratch has at least the size the lowering asked for.
        match self.entry {
            Entry::Raw(function) => {
                worker.raw.resize(self.raw_len, 0.0);
                unsafe { function(inputs, worker.raw.as_mut_ptr(), scratch) };
                Ok(host_maps(
                    &mut worker.raw,
                    &self.raw_shape,
                    &self.spec.outputs,
                    &mut worker.processed,
                ))
            }
            Entry::Scaled(function) => {
                worker.processed.resize(self.processed_len, 0.0);
                let bad = unsafe { function(inputs, worker.processed.as_mut_ptr(), scratch) };
                Ok(Maps {
                    raw: &[],
                    processed: &worker.processed,
                    nonfinite: bad.max(0) as usize,
                })
            }
            Entry::ScaledKeepingRaw(function) => {
                worker.processed.resize(self.processed_len, 0.0);
                worker.raw.resize(self.raw_len, 0.0);
                let bad = unsafe {
                    function(
                        inputs,
                        worker.processed.as_mut_ptr(),
                        scratch,
                        worker.raw.as_mut_ptr(),
                    )
                };
                Ok(Maps {
                    raw: &worker.raw,
                    processed: &worker.processed,
                    nonfinite: bad.max(0) as usize,
                })
            }
        }
    }
}
