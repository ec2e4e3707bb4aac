//! The CUDA executor: the kernel's CUDA C (`camc_compiler::codegen::cuda`) compiled by NVRTC,
//! cached ([`cache`]), loaded on GPU 0 and launched batch after batch. A batch larger than the
//! device's free memory allows is split into chunks. Missing CUDA libraries or GPU, an NVRTC
//! error or a driver error are all [`ExecError::Backend`], never a panic.

pub mod cache;
mod device;
pub mod nvrtc;

pub use device::gpu_present;

use super::{check_batch, Batch, Data, ExecError, Executor};
use crate::dims::Dims;
use camc_compiler::codegen::cuda::{self, Dtype};
use camc_compiler::ir::Kernel;
use cudarc::driver::CudaFunction;
use device::{Buffers, Device, Launch};
use std::collections::HashMap;

fn backend(message: impl Into<String>) -> ExecError {
    ExecError::Backend {
        backend: "cuda",
        message: message.into(),
    }
}

/// PTX for the kernel's entry point for `dtypes`, through the process and disk caches.
/// Returns the PTX and the entry point's name. Needs only NVRTC.
pub fn ptx_for(kernel: &Kernel, dtypes: &[Dtype], arch: &str) -> Result<(String, String), String> {
    let source = cuda::write(kernel, &[dtypes.to_vec()]).map_err(|e| e.to_string())?;
    let version = nvrtc::version()?;
    let key = cache::key(&source.text, version, arch);
    let name = format!("{}.cu", kernel.name);
    let (ptx, _) = cache::KernelCache::global()
        .get_or_compile(&key, || nvrtc::compile_ptx(&source.text, &name, arch))?;
    Ok((ptx.to_string(), source.entries[0].clone()))
}

pub struct CudaExecutor {
    kernel: Kernel,
    dims: Dims,
    device: Device,
    functions: HashMap<Vec<Dtype>, CudaFunction>,
    buffers: Buffers,
    scratch_floats: usize,
    max_images: usize,
}

impl CudaExecutor {
    /// Opens GPU 0 and checks that the kernel can be written for it; compiling waits for the
    /// first batch, whose dtypes pick the entry point.
    pub fn new(kernel: &Kernel, dims: Dims) -> Result<CudaExecutor, ExecError> {
        let source = cuda::write(kernel, &[]).map_err(|e| backend(e.to_string()))?;
        nvrtc::available().map_err(backend)?;
        let device = Device::open().map_err(backend)?;
        Ok(CudaExecutor {
            kernel: kernel.clone(),
            dims,
            device,
            functions: HashMap::new(),
            buffers: Buffers::default(),
            scratch_floats: source.scratch_floats(|a| dims.size(a)),
            max_images: 65536,
        })
    }

    /// Caps the images of one launch (65536 by default; fewer where device memory is short).
    pub fn set_max_images_per_launch(&mut self, images: usize) {
        self.max_images = images.max(1);
    }

    fn function(&mut self, dtypes: &[Dtype]) -> Result<CudaFunction, ExecError> {
        if let Some(f) = self.functions.get(dtypes) {
            return Ok(f.clone());
        }
        let (ptx, entry) = ptx_for(&self.kernel, dtypes, &self.device.arch).map_err(backend)?;
        let f = self.device.load(&ptx, &entry).map_err(backend)?;
        self.functions.insert(dtypes.to_vec(), f.clone());
        Ok(f)
    }

    /// Images per launch: what half the free device memory holds, at most `max_images`.
    fn chunk(&self, batch: &Batch<'_>) -> Result<usize, ExecError> {
        let per_image: usize = batch
            .inputs
            .iter()
            .map(|d| bytes(d).len().checked_div(batch.n).unwrap_or(0))
            .sum::<usize>()
            + 4 * self.dims.len(self.kernel.output_ty())
            + 4 * self.scratch_floats;
        let free = self.device.free_memory().map_err(backend)?;
        Ok((free / 2 / per_image.max(1)).clamp(1, self.max_images))
    }
}

/// The raw bytes of an input.
fn bytes<'a>(data: &Data<'a>) -> &'a [u8] {
    // SAFETY: f32, f16 and bf16 are plain values without padding; the byte view covers exactly
    // the same memory, which outlives 'a.
    unsafe {
        match *data {
            Data::F32(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
            Data::F16(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
            Data::Bf16(v) => std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)),
        }
    }
}

fn dtype(data: &Data<'_>) -> Dtype {
    match data {
        Data::F32(_) => Dtype::F32,
        Data::F16(_) => Dtype::F16,
        Data::Bf16(_) => Dtype::Bf16,
    }
}

fn size_i32(value: usize, what: &str) -> Result<i32, ExecError> {
    i32::try_from(value).map_err(|_| backend(format!("{what} = {value} is too large for the CUDA kernel")))
}

impl Executor for CudaExecutor {
    fn backend(&self) -> &'static str {
        "cuda"
    }

    fn run(&mut self, batch: &Batch<'_>, out: &mut [f32]) -> Result<(), ExecError> {
        check_batch(&self.kernel, self.dims, batch, out)?;
        if batch.n == 0 {
            return Ok(());
        }
        let dtypes: Vec<Dtype> = batch.inputs.iter().map(dtype).collect();
        let function = self.function(&dtypes)?;
        let chunk = self.chunk(batch)?;
        let dims = self.dims;
        let sizes = [
            size_i32(dims.k, "k")?,
            size_i32(dims.d, "d")?,
            size_i32(dims.h, "h")?,
            size_i32(dims.w, "w")?,
        ];
        let out_len = dims.len(self.kernel.output_ty());
        let all: Vec<&[u8]> = batch.inputs.iter().map(bytes).collect();
        let mut start = 0;
        while start < batch.n {
            let count = chunk.min(batch.n - start);
            let inputs = all
                .iter()
                .map(|b| {
                    let per = b.len() / batch.n;
                    &b[start * per..(start + count) * per]
                })
                .collect();
            let grid = count.min(8 * self.device.multiprocessors).max(1);
            let launch = Launch {
                inputs,
                out_len: count * out_len,
                scratch_len: grid * self.scratch_floats,
                grid: grid as u32,
                n: size_i32(count, "images per launch")?,
                sizes,
            };
            let target = &mut out[start * out_len..(start + count) * out_len];
            self.device
                .run(&function, &mut self.buffers, &launch, target)
                .map_err(backend)?;
            start += count;
        }
        Ok(())
    }
}
