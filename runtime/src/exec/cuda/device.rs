//! The GPU side: the driver, a context on device 0, modules loaded from PTX, device buffers that
//! grow once and are reused batch after batch, and the launch. cudarc panics when libcuda is
//! missing, so [`Device::open`] checks for it before any driver call.

use cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// `sm_XY` of the device, for NVRTC.
    pub arch: String,
    pub multiprocessors: usize,
}

pub(super) fn driver_error(what: &str, e: impl std::fmt::Debug) -> String {
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
    pub(super) inputs: Vec<Option<CudaSlice<u8>>>,
    pub(super) out: Option<CudaSlice<f32>>,
    scratch: Option<CudaSlice<f32>>,
    pub(super) bad: Option<CudaSlice<i32>>,
}

pub(super) fn ensure<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
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

/// One launch's arguments: the inputs' bytes for `n` images, the sizes, and the output size
/// (`[0, 0]` for the raw maps, else post-processed in the kernel to that height and width).
pub struct Launch<'a> {
    pub inputs: Vec<&'a [u8]>,
    pub out_len: usize,
    pub scratch_len: usize,
    pub grid: u32,
    /// Threads per block: what the function was written for.
    pub threads: u32,
    pub n: i32,
    pub sizes: [i32; 5],
    pub out_size: [i32; 2],
}

impl Device {
    /// Copies each input into its device buffer (grown when too small).
    fn upload(&self, buffers: &mut Buffers, inputs: &[&[u8]]) -> Result<(), String> {
        buffers.inputs.resize_with(inputs.len(), || None);
        for (slot, bytes) in buffers.inputs.iter_mut().zip(inputs) {
            ensure(&self.stream, slot, bytes.len())?;
            if let Some(buffer) = slot.as_mut() {
                let mut view = buffer.slice_mut(0..bytes.len());
                self.stream
                    .memcpy_htod(*bytes, &mut view)
                    .map_err(|e| driver_error("copy to the GPU", e))?;
            }
        }
        Ok(())
    }

    /// Queues one launch of `func` on the uploaded inputs (no synchronization).
    fn launch(&self, func: &CudaFunction, buffers: &mut Buffers, launch: &Launch<'_>) -> Result<(), String> {
        launch_on(&self.stream, func, buffers, launch)
    }

    /// A new stream on this device, for [`super::lane::Lane`].
    pub fn new_stream(&self) -> Result<Arc<CudaStream>, String> {
        self.ctx.new_stream().map_err(|e| driver_error("stream", e))
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// GPU time in milliseconds of `work`, measured with events on the stream.
    fn time(&self, work: impl FnOnce() -> Result<(), String>) -> Result<f64, String> {
        let timed = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .stream
            .record_event(timed)
            .map_err(|e| driver_error("event", e))?;
        work()?;
        let end = self
            .stream
            .record_event(timed)
            .map_err(|e| driver_error("event", e))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| driver_error("kernel execution", e))?;
        Ok(f64::from(ms))
    }

    /// For benchmarks: uploads the inputs once, then the best GPU time of `repeats` launches and
    /// of `repeats` device-to-device copies of the same input bytes.
    pub fn profile(
        &self,
        func: &CudaFunction,
        buffers: &mut Buffers,
        launch: &Launch<'_>,
        repeats: usize,
    ) -> Result<Timing, String> {
        self.upload(buffers, &launch.inputs)?;
        let mut copies: Vec<CudaSlice<u8>> = launch
            .inputs
            .iter()
            .map(|b| {
                self.stream
                    .alloc_zeros::<u8>(b.len().max(1))
                    .map_err(|e| driver_error("device allocation", e))
            })
            .collect::<Result<_, _>>()?;
        let mut timing = Timing {
            kernel_ms: f64::INFINITY,
            copy_ms: f64::INFINITY,
        };
        self.launch(func, buffers, launch)?;
        for _ in 0..repeats.max(1) {
            let kernel = self.time(|| self.launch(func, buffers, launch))?;
            timing.kernel_ms = timing.kernel_ms.min(kernel);
            let copy = self.time(|| {
                let sources = buffers.inputs.iter().flatten().zip(&launch.inputs);
                for ((source, bytes), target) in sources.zip(copies.iter_mut()) {
                    self.stream
                        .memcpy_dtod(&source.slice(0..bytes.len()), target)
                        .map_err(|e| driver_error("device copy", e))?;
                }
                Ok(())
            })?;
            timing.copy_ms = timing.copy_ms.min(copy);
        }
        Ok(timing)
    }
}

/// Best GPU times of [`Device::profile`].
#[derive(Copy, Clone, Debug)]
pub struct Timing {
    /// One launch of the kernel on inputs already on the device.
    pub kernel_ms: f64,
    /// A device-to-device copy of the same input bytes (each byte read once and written once).
    pub copy_ms: f64,
}

/// Queues one launch of `func` on `stream`, on inputs already in `buffers` (grown as needed).
/// A launch over memory the caller owns: raw device addresses of this device's primary context.
pub struct RawLaunch {
    pub inputs: Vec<sys::CUdeviceptr>,
    pub out: sys::CUdeviceptr,
    /// 0 for none.
    pub bad: sys::CUdeviceptr,
    pub scratch_bytes: usize,
    pub grid: u32,
    /// Threads per block: what the function was written for.
    pub threads: u32,
    pub n: i32,
    pub sizes: [i32; 5],
    pub out_size: [i32; 2],
}

impl Device {
    /// Queues `launch` of `func` on `stream`, a stream of this device's primary context (the
    /// caller's, e.g. torch's current stream): its scratch memory is allocated and freed in
    /// stream order, nothing is copied, and the call returns once the work is queued.
    ///
    /// # Safety
    /// Every address of `launch` must hold device memory of the size the launch implies (the
    /// inputs of `n` images, `n` maps, `n` counts), valid until `stream` has run the kernel, and
    /// `stream` must be a live stream of this device's primary context (or null, the legacy
    /// default stream).
    pub unsafe fn launch_raw(
        &self,
        func: &CudaFunction,
        launch: &RawLaunch,
        stream: sys::CUstream,
    ) -> Result<(), String> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_error("the GPU's context", e))?;
        // SAFETY: (all the calls below) as the caller promised; the scratch memory is this
        // launch's alone, freed after it in the same stream.
        let scratch = unsafe { result::malloc_async(stream, launch.scratch_bytes.max(4)) }
            .map_err(|e| driver_error("scratch memory on the GPU", e))?;
        let mut pointers: Vec<sys::CUdeviceptr> = launch.inputs.clone();
        pointers.extend([launch.out, scratch, launch.bad]);
        let mut integers: Vec<i32> = vec![launch.n];
        integers.extend(launch.sizes.iter().chain(&launch.out_size));
        let mut params: Vec<*mut std::ffi::c_void> = pointers
            .iter_mut()
            .map(|p| (p as *mut sys::CUdeviceptr).cast())
            .chain(integers.iter_mut().map(|i| (i as *mut i32).cast()))
            .collect();
        let launched = unsafe {
            result::launch_kernel(
                func.cu_function(),
                (launch.grid.max(1), 1, 1),
                (launch.threads, 1, 1),
                0,
                stream,
                &mut params,
            )
        }
        .map_err(|e| driver_error("kernel launch", e));
        let freed = unsafe { result::free_async(scratch, stream) }
            .map_err(|e| driver_error("scratch memory on the GPU", e));
        launched.and(freed)
    }
}

pub(super) fn launch_on(
    stream: &Arc<CudaStream>,
    func: &CudaFunction,
    buffers: &mut Buffers,
    launch: &Launch<'_>,
) -> Result<(), String> {
    ensure(stream, &mut buffers.out, launch.out_len)?;
    ensure(stream, &mut buffers.scratch, launch.scratch_len)?;
    ensure(stream, &mut buffers.bad, launch.n.max(1) as usize)?;
    let (Some(dev_out), Some(scratch), Some(bad)) = (
        buffers.out.as_mut(),
        buffers.scratch.as_mut(),
        buffers.bad.as_mut(),
    ) else {
        return Err("device buffers missing".into());
    };
    let config = LaunchConfig {
        grid_dim: (launch.grid.max(1), 1, 1),
        block_dim: (launch.threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = stream.launch_builder(func);
    for input in buffers.inputs.iter().flatten() {
        builder.arg(input);
    }
    builder
        .arg(&mut *dev_out)
        .arg(&mut *scratch)
        .arg(&mut *bad)
        .arg(&launch.n);
    for size in launch.sizes.iter().chain(&launch.out_size) {
        builder.arg(size);
    }
    // SAFETY: the arguments match the entry point's ABI (docs/cuda.md): a pointer per input,
    // the output, scratch and count buffers sized for `n` images and `grid` blocks, then
    // n, c, k, d, h, w, out_h, out_w.
    unsafe { builder.launch(config) }.map_err(|e| driver_error("kernel launch", e))?;
    Ok(())
}
