//! The GPU side: the driver, a context on device 0, modules loaded from PTX, device buffers that
//! grow once and are reused batch after batch, and the launch. cudarc panics when libcuda is
//! missing, so [`Device::open`] checks for it before any driver call.

use cudarc::driver::{sys, CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// `sm_XY` of the device, for NVRTC.
    pub arch: String,
    pub multiprocessors: usize,
}

fn driver_error(what: &str, e: impl std::fmt::Debug) -> String {
    format!("{what}: {e:?}")
}

/// Whether a CUDA driver and at least one device are present (a quick check for `--backend auto`).
pub fn gpu_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    let present = unsafe { sys::is_culib_present() };
    present && CudaContext::device_count().is_ok_and(|n| n > 0)
}

impl Device {
    pub fn open() -> Result<Device, String> {
        // SAFETY: only tries to open the library by its candidate names.
        if !unsafe { sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda.so) on this machine: use --backend cpu".into());
        }
        let count = CudaContext::device_count().map_err(|e| driver_error("no usable CUDA driver", e))?;
        if count < 1 {
            return Err("the CUDA driver sees no GPU: use --backend cpu".into());
        }
        let ctx = CudaContext::new(0).map_err(|e| driver_error("cannot open GPU 0", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_error("compute capability", e))?;
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_error("multiprocessor count", e))?;
        let stream = ctx.default_stream();
        Ok(Device {
            ctx,
            stream,
            arch: format!("sm_{major}{minor}"),
            multiprocessors: sms.max(1) as usize,
        })
    }

    /// Free device memory in bytes.
    pub fn free_memory(&self) -> Result<usize, String> {
        self.ctx
            .mem_get_info()
            .map(|(free, _)| free)
            .map_err(|e| driver_error("memory info", e))
    }

    pub fn load(&self, ptx: &str, entry: &str) -> Result<CudaFunction, String> {
        let module = self
            .ctx
            .load_module(Ptx::from_src(ptx.replace('\0', "")))
            .map_err(|e| driver_error("cannot load the PTX (is the driver older than NVRTC?)", e))?;
        module
            .load_function(entry)
            .map_err(|e| driver_error(&format!("no entry `{entry}`"), e))
    }
}

/// Device buffers of one executor: grown when a batch needs more, never shrunk.
#[derive(Default)]
pub struct Buffers {
    inputs: Vec<Option<CudaSlice<u8>>>,
    out: Option<CudaSlice<f32>>,
    scratch: Option<CudaSlice<f32>>,
}

fn ensure<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    slot: &mut Option<CudaSlice<T>>,
    len: usize,
) -> Result<(), String> {
    if slot.as_ref().is_none_or(|b| b.len() < len) {
        *slot = None;
        *slot = Some(
            stream
                .alloc_zeros::<T>(len.max(1))
                .map_err(|e| driver_error("device allocation", e))?,
        );
    }
    Ok(())
}

/// One launch's arguments: the inputs' bytes for `n` images, and the sizes.
pub struct Launch<'a> {
    pub inputs: Vec<&'a [u8]>,
    pub out_len: usize,
    pub scratch_len: usize,
    pub grid: u32,
    pub n: i32,
    pub sizes: [i32; 4],
}

impl Device {
    /// Copies the inputs in, runs `func`, copies the output to `out` (`launch.out_len` floats).
    pub fn run(
        &self,
        func: &CudaFunction,
        buffers: &mut Buffers,
        launch: &Launch<'_>,
        out: &mut [f32],
    ) -> Result<(), String> {
        let stream = &self.stream;
        buffers.inputs.resize_with(launch.inputs.len(), || None);
        for (slot, bytes) in buffers.inputs.iter_mut().zip(&launch.inputs) {
            ensure(stream, slot, bytes.len())?;
            if let Some(buffer) = slot.as_mut() {
                let mut view = buffer.slice_mut(0..bytes.len());
                stream
                    .memcpy_htod(*bytes, &mut view)
                    .map_err(|e| driver_error("copy to the GPU", e))?;
            }
        }
        ensure(stream, &mut buffers.out, launch.out_len)?;
        ensure(stream, &mut buffers.scratch, launch.scratch_len)?;
        let (Some(dev_out), Some(scratch)) = (buffers.out.as_mut(), buffers.scratch.as_mut()) else {
            return Err("device buffers missing".into());
        };
        let config = LaunchConfig {
            grid_dim: (launch.grid.max(1), 1, 1),
            block_dim: (camc_compiler::codegen::cuda::THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = stream.launch_builder(func);
        for input in buffers.inputs.iter().flatten() {
            builder.arg(input);
        }
        builder.arg(&mut *dev_out).arg(&mut *scratch).arg(&launch.n);
        for size in &launch.sizes {
            builder.arg(size);
        }
        // SAFETY: the arguments match the entry point's ABI (docs/cuda.md): a pointer per input,
        // the output and scratch buffers sized for `n` images and `grid` blocks, then n, k, d, h, w.
        unsafe { builder.launch(config) }.map_err(|e| driver_error("kernel launch", e))?;
        let result = dev_out.slice(0..launch.out_len);
        stream
            .memcpy_dtoh(&result, &mut out[..launch.out_len])
            .map_err(|e| driver_error("copy from the GPU", e))?;
        stream
            .synchronize()
            .map_err(|e| driver_error("kernel execution", e))
    }
}
