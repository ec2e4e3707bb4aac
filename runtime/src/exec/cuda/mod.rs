//! The CUDA executor: the kernel's CUDA C (`camc_compiler::codegen::cuda`) compiled by NVRTC,
//! kept in the PTX store ([`ptx_store`]), loaded on GPU 0 and launched batch after batch. A batch larger than the
//! device's free memory allows is split into chunks. Missing CUDA libraries or GPU, an NVRTC
//! error or a driver error are all [`ExecError::Backend`], never a panic.

mod device;
mod lane;
pub mod nvrtc;
pub mod ptx_store;

pub use device::{gpu_present, Timing};

use super::{ExecError, Executor, Maps, Outputs, Sink, Spec};
use crate::batch::{Batch, Data};
use crate::postprocess::host_maps;
use camc_compiler::codegen::cuda;
use camc_compiler::dims::Dims;
use camc_compiler::dtype::Dtype;
use camc_compiler::ir::{InputKind, Kernel};
use cudarc::driver::sys;
use cudarc::driver::CudaFunction;
use device::{Buffers, Device, Launch, RawLaunch};
use lane::Lane;
use ptx_store::{Origin, PtxStore};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

fn backend(message: impl Into<String>) -> ExecError {
    ExecError::Backend {
        backend: "cuda",
        message: message.into(),
    }
}

/// PTX for the kernel's entry point for `dtypes`, written for blocks of `threads`, through
/// `store`. Returns the PTX, the entry point's name and where the PTX came from. Needs only
/// NVRTC.
pub fn ptx_for(
    kernel: &Kernel,
    dtypes: &[Dtype],
    (threads, schedule): (u32, cuda::Schedule),
    arch: &str,
    store: &PtxStore,
) -> Result<(Arc<str>, String, Origin), String> {
    let source =
        cuda::write_scheduled(kernel, &[dtypes.to_vec()], threads, schedule).map_err(|e| e.to_string())?;
    let version = nvrtc::version()?;
    let key = ptx_store::key(&source.text, version, arch);
    let name = format!("{}.cu", kernel.name);
    let (ptx, origin) = store.get_or_compile(&key, || nvrtc::compile_ptx(&source.text, &name, arch))?;
    Ok((ptx, source.entries[0].clone(), origin))
}

/// A tensor in GPU memory that the caller owns (a torch CUDA tensor's storage, say): `len`
/// values of `dtype` at device address `ptr`, on GPU 0.
#[derive(Copy, Clone, Debug)]
pub struct DeviceTensor {
    pub ptr: u64,
    pub dtype: Dtype,
    pub len: usize,
}

pub struct CudaExecutor {
    spec: Spec,
    /// The output size the kernel post-processes to (`[0, 0]`: it writes raw maps, and the
    /// post-processing, where asked for, is done on the host).
    out_size: [i32; 2],
    device: Device,
    functions: HashMap<Vec<Dtype>, CudaFunction>,
    /// For [`CudaExecutor::profile`]; runs go through `lanes`.
    buffers: Buffers,
    lanes: Vec<Lane>,
    scratch_floats: usize,
    /// Threads per block, from the sizes ([`cuda::threads_for`]).
    threads: u32,
    schedule: cuda::Schedule,
    max_images: usize,
    store: Option<Arc<PtxStore>>,
}

impl CudaExecutor {
    /// Opens GPU 0 and checks that the kernel can be written for it; compiling waits for the
    /// first batch, whose dtypes pick the entry point. A 2-D map post-processed to `H,W` (and
    /// not asked for raw as well) is post-processed in the kernel; anything else is computed
    /// raw and post-processed on the host.
    pub fn new(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<CudaExecutor, ExecError> {
        let spec = Spec::new(kernel, dims, outputs)?;
        let outputs = &spec.outputs;
        let out_size = match outputs.processed.as_deref() {
            Some(&[height, width]) if cuda::scalable(kernel) && !outputs.raw => {
                size_i32(height * width, "output values per image")?;
                [
                    size_i32(height, "output height")?,
                    size_i32(width, "output width")?,
                ]
            }
            _ => [0, 0],
        };
        let source = cuda::write(kernel, &[]).map_err(|e| backend(e.to_string()))?;
        // The kernel indexes within one image in 32-bit integers (64-bit only across images).
        let largest = kernel
            .inputs
            .iter()
            .map(|i| i.ty)
            .chain([kernel.output_ty()])
            .map(|ty| dims.len(ty))
            .max()
            .unwrap_or(0);
        size_i32(largest, "values per image of one tensor")?;
        nvrtc::available().map_err(backend)?;
        let device = Device::open().map_err(backend)?;
        Ok(CudaExecutor {
            spec,
            out_size,
            device,
            functions: HashMap::new(),
            buffers: Buffers::default(),
            lanes: Vec::new(),
            scratch_floats: source.scratch_floats(|a| dims.size(a)),
            threads: cuda::threads_for(&dims),
            schedule: cuda::Schedule::OnePass,
            max_images: 65536,
            store: None,
        })
    }

    /// Lays the kernel's stages out by `schedule` (the default is [`cuda::Schedule::OnePass`];
    /// the GPU benchmark compares it with [`cuda::Schedule::Direct`]). Before the first batch.
    pub fn with_schedule(self, schedule: cuda::Schedule) -> Result<CudaExecutor, ExecError> {
        let threads = self.threads;
        self.written_as(threads, schedule)
    }

    /// Launches blocks of `threads` (a power of two from 32 to 1024) instead of what
    /// [`cuda::threads_for`] gives the sizes; for the GPU benchmark. Before the first batch.
    pub fn with_threads(self, threads: u32) -> Result<CudaExecutor, ExecError> {
        let schedule = self.schedule;
        self.written_as(threads, schedule)
    }

    fn written_as(mut self, threads: u32, schedule: cuda::Schedule) -> Result<CudaExecutor, ExecError> {
        let source = cuda::write_scheduled(&self.spec.kernel, &[], threads, schedule)
            .map_err(|e| backend(e.to_string()))?;
        self.scratch_floats = source.scratch_floats(|a| self.spec.dims.size(a));
        self.threads = threads;
        self.schedule = schedule;
        self.functions.clear();
        Ok(self)
    }

    /// Uses `store` for compiled kernels instead of the process-wide one.
    pub fn with_ptx_store(mut self, store: Arc<PtxStore>) -> CudaExecutor {
        self.store = Some(store);
        self
    }

    /// Caps the images of one launch (65536 by default; fewer where device memory is short).
    pub fn set_max_images_per_launch(&mut self, images: usize) {
        self.max_images = images.max(1);
    }

    /// Compiles (or finds in the PTX store) and loads the entry point for inputs of `dtypes`; says
    /// where it came from. A run does this itself on its first batch of these dtypes.
    pub fn prepare(&mut self, dtypes: &[Dtype]) -> Result<Origin, ExecError> {
        if self.functions.contains_key(dtypes) {
            return Ok(Origin::Memory);
        }
        let store = self.store.as_deref().unwrap_or_else(|| PtxStore::global());
        let (ptx, entry, origin) = ptx_for(
            &self.spec.kernel,
            dtypes,
            (self.threads, self.schedule),
            &self.device.arch,
            store,
        )
        .map_err(backend)?;
        let f = self.device.load(&ptx, &entry).map_err(backend)?;
        self.functions.insert(dtypes.to_vec(), f);
        Ok(origin)
    }

    fn function(&mut self, dtypes: &[Dtype]) -> Result<CudaFunction, ExecError> {
        self.prepare(dtypes)?;
        self.functions
            .get(dtypes)
            .cloned()
            .ok_or_else(|| backend("the kernel was not loaded"))
    }

    /// For benchmarks: the best GPU time of `repeats` launches over the whole batch at once
    /// (inputs uploaded beforehand), and of a device-to-device copy of the same input bytes.
    pub fn profile(&mut self, batch: &Batch<'_>, repeats: usize) -> Result<Timing, ExecError> {
        self.spec.check(batch)?;
        let dtypes: Vec<Dtype> = batch.inputs.iter().map(Data::dtype).collect();
        let function = self.function(&dtypes)?;
        let inputs: Vec<&[u8]> = batch.inputs.iter().map(bytes).collect();
        let launch = self.launch(inputs, batch.n, [0, 0])?;
        self.device
            .profile(&function, &mut self.buffers, &launch, repeats)
            .map_err(backend)
    }

    /// The launch of `count` images whose input bytes are `inputs`, writing raw maps
    /// (`out_size = [0, 0]`) or maps post-processed to `out_size`.
    fn launch<'a>(
        &self,
        inputs: Vec<&'a [u8]>,
        count: usize,
        out_size: [i32; 2],
    ) -> Result<Launch<'a>, ExecError> {
        let dims = self.spec.dims;
        let grid = count.min(8 * self.device.multiprocessors).max(1);
        let per_image = match out_size {
            [0, 0] => dims.len(self.spec.kernel.output_ty()),
            [h, w] => h as usize * w as usize,
        };
        Ok(Launch {
            inputs,
            out_size,
            out_len: count * per_image,
            scratch_len: grid * self.scratch_floats,
            grid: grid as u32,
            threads: self.threads,
            n: size_i32(count, "images per launch")?,
            sizes: sizes_i32(dims)?,
        })
    }

    /// Images per launch: what a quarter of the free device memory holds (two lanes hold a
    /// chunk each), at most `max_images`.
    fn chunk(&self, batch: &Batch<'_>, out_per_image: usize) -> Result<usize, ExecError> {
        let per_image: usize = batch
            .inputs
            .iter()
            .zip(&self.spec.kernel.inputs)
            .filter(|(_, input)| input.kind == InputKind::PerImage)
            .map(|(d, _)| bytes(d).len().checked_div(batch.n).unwrap_or(0))
            .sum::<usize>()
            + 4 * out_per_image
            + 4 * self.scratch_floats
            + 4;
        let free = self.device.free_memory().map_err(backend)?;
        Ok((free / 4 / per_image.max(1)).clamp(1, self.max_images))
    }
}

/// The raw bytes of an input.
fn bytes<'a>(data: &Data<'a>) -> &'a [u8] {
    // SAFETY: f32, f16, bf16 and integers are plain values without padding; the byte view covers exactly
    // the same memory, which outlives 'a.
    unsafe {
        match *data {
            Data::F32(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
            Data::F16(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
            Data::Bf16(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
            Data::I64(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
            Data::I32(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
        }
    }
}

/// The kernel's `c, k, d, h, w` arguments.
fn sizes_i32(dims: Dims) -> Result<[i32; 5], ExecError> {
    Ok([
        size_i32(dims.c, "c")?,
        size_i32(dims.k, "k")?,
        size_i32(dims.d, "d")?,
        size_i32(dims.h, "h")?,
        size_i32(dims.w, "w")?,
    ])
}

fn size_i32(value: usize, what: &str) -> Result<i32, ExecError> {
    i32::try_from(value).map_err(|_| backend(format!("{what} = {value} is too large for the CUDA kernel")))
}

impl CudaExecutor {
    /// Runs `n` images whose inputs are in GPU memory, on the caller's CUDA `stream` (a
    /// `CUstream` of GPU 0's primary context, 0 for the legacy default stream): each image's map
    /// goes to `out` (f32, `n` maps) and its count of non-finite values to `nonfinite` (`n`
    /// i32, or 0 for none). Nothing is copied to or from the host, and the call returns once the
    /// work is queued on `stream`. The executor must have been built for the maps post-processed
    /// to a 2-D size (in the kernel), or for [`Outputs::untouched`] raw maps (the program's
    /// values as computed; no counts then).
    ///
    /// # Safety
    /// Every pointer must address device memory of GPU 0 holding what its length says, valid
    /// until `stream` has run the kernel; `stream` must be a live stream of GPU 0's primary
    /// context.
    pub unsafe fn run_on_device(
        &mut self,
        n: usize,
        inputs: &[DeviceTensor],
        out: DeviceTensor,
        nonfinite: u64,
        stream: u64,
    ) -> Result<(), ExecError> {
        let outputs = &self.spec.outputs;
        let per_image = match (self.out_size, outputs.raw, outputs.keep_nonfinite) {
            ([h, w], _, _) if h > 0 => h as usize * w as usize,
            ([0, 0], true, true) => self.spec.dims.len(self.spec.kernel.output_ty()),
            _ => {
                return Err(ExecError::Outputs(format!(
                    "on tensors in GPU memory the kernel computes maps post-processed to a 2-D size, or raw maps as computed; not {outputs:?}"
                )))
            }
        };
        if inputs.len() != self.spec.kernel.inputs.len() {
            return Err(ExecError::InputCount {
                expected: self.spec.kernel.inputs.len(),
                got: inputs.len(),
            });
        }
        for ((input, tensor), len) in self
            .spec
            .kernel
            .inputs
            .iter()
            .zip(inputs)
            .zip(self.spec.input_lens())
        {
            let expected = match input.kind {
                InputKind::PerImage => n * len,
                InputKind::Shared => len,
            };
            if tensor.len != expected || !tensor.dtype.is_input() {
                return Err(ExecError::InputLength {
                    name: input.name.clone(),
                    n,
                    expected,
                    got: tensor.len,
                });
            }
        }
        let named = self.spec.kernel.inputs.iter().map(|i| i.name.as_str());
        if let Some((name, _)) = named
            .zip(inputs)
            .chain([("(output)", &out)])
            .find(|(_, t)| t.ptr == 0 && t.len > 0)
        {
            return Err(backend(format!("`{name}` has a null device address")));
        }
        if out.dtype != Dtype::F32 || out.len != n * per_image {
            return Err(ExecError::InputLength {
                name: "(output)".into(),
                n,
                expected: n * per_image,
                got: out.len,
            });
        }
        if n == 0 {
            return Ok(());
        }
        let dtypes: Vec<Dtype> = inputs.iter().map(|t| t.dtype).collect();
        let function = self.function(&dtypes)?;
        let grid = n.min(8 * self.device.multiprocessors).max(1);
        let launch = RawLaunch {
            inputs: inputs.iter().map(|t| t.ptr).collect(),
            out: out.ptr,
            bad: nonfinite,
            scratch_bytes: 4 * grid * self.scratch_floats,
            grid: grid as u32,
            threads: self.threads,
            n: size_i32(n, "images per launch")?,
            sizes: sizes_i32(self.spec.dims)?,
            out_size: self.out_size,
        };
        // SAFETY: the lengths were checked against the launch; the addresses are the caller's
        // promise.
        unsafe {
            self.device
                .launch_raw(&function, &launch, stream as sys::CUstream)
        }
        .map_err(backend)
    }
}

impl Executor for CudaExecutor {
    fn backend(&self) -> &'static str {
        "cuda"
    }

    fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The batch's maps computed on the device into one host buffer (in launches that fit the
    /// device's memory), then handed to `sink` image by image.
    fn run(&mut self, batch: &Batch<'_>, sink: &Sink<'_>) -> Result<(), ExecError> {
        self.spec.check(batch)?;
        let per_image = match self.out_size {
            [0, 0] => self.spec.dims.len(self.spec.kernel.output_ty()),
            [h, w] => h as usize * w as usize,
        };
        let mut out = vec![0.0; batch.n * per_image];
        if self.out_size != [0, 0] {
            let mut counts = vec![0i32; batch.n];
            self.launches(batch, &mut out, self.out_size, &mut counts)?;
            return out
                .par_chunks(per_image.max(1))
                .zip(counts)
                .enumerate()
                .try_for_each(|(image, (processed, bad))| {
                    let maps = Maps {
                        raw: &[],
                        processed,
                        nonfinite: bad.max(0) as usize,
                    };
                    sink(image, maps).map_err(ExecError::Sink)
                });
        }
        self.launches(batch, &mut out, [0, 0], &mut [])?;
        let shape = self.spec.raw_shape();
        let outputs = &self.spec.outputs;
        out.par_chunks_mut(per_image.max(1))
            .enumerate()
            .try_for_each_init(Vec::new, |processed, (image, raw)| {
                sink(image, host_maps(raw, &shape, outputs, processed)).map_err(ExecError::Sink)
            })
    }
}

impl CudaExecutor {
    /// Runs the (checked) batch in launches that fit the device's memory, alternating between
    /// two lanes so that one chunk's copies overlap the other's kernel ([`lane`]).
    fn launches(
        &mut self,
        batch: &Batch<'_>,
        out: &mut [f32],
        out_size: [i32; 2],
        bad: &mut [i32],
    ) -> Result<(), ExecError> {
        if batch.n == 0 {
            return Ok(());
        }
        let dtypes: Vec<Dtype> = batch.inputs.iter().map(Data::dtype).collect();
        let function = self.function(&dtypes)?;
        let out_per_image = out.len() / batch.n;
        let all: Vec<&[u8]> = batch.inputs.iter().map(bytes).collect();
        let mut chunk = self.chunk(batch, out_per_image)?;
        // At least four chunks of a batch over 16 MiB, so that there is something to overlap.
        if all.iter().map(|b| b.len()).sum::<usize>() > 16 << 20 {
            chunk = chunk.min(batch.n.div_ceil(4));
        }
        while self.lanes.len() < 2 {
            self.lanes.push(Lane::new(&self.device).map_err(backend)?);
        }
        let mut start = 0;
        let mut turn = 0;
        while start < batch.n {
            let count = chunk.min(batch.n - start);
            // A shared input goes whole with every launch.
            let inputs = all
                .iter()
                .zip(&self.spec.kernel.inputs)
                .map(|(b, input)| match input.kind {
                    InputKind::PerImage => {
                        let per = b.len() / batch.n;
                        &b[start * per..(start + count) * per]
                    }
                    InputKind::Shared => b,
                })
                .collect();
            let launch = self.launch(inputs, count, out_size)?;
            let counts = if bad.is_empty() {
                0..0
            } else {
                start..start + count
            };
            let lane = &mut self.lanes[turn % 2];
            lane.finish(out, bad).map_err(backend)?;
            lane.start(
                &self.device,
                &function,
                &launch,
                start * out_per_image..(start + count) * out_per_image,
                counts,
            )
            .map_err(backend)?;
            start += count;
            turn += 1;
        }
        for lane in &mut self.lanes {
            lane.finish(out, bad).map_err(backend)?;
        }
        Ok(())
    }
}
