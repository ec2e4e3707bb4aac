//! Streamed launches: a batch is cut into chunks that alternate between two lanes, each a CUDA
//! stream with its own device buffers and page-locked host staging. While one lane's chunk is
//! copied in, computed and copied out by the GPU, the host stages the next chunk in the other
//! lane; copies from page-locked memory are asynchronous and faster than from the pageable
//! memory of a memory-mapped cache. A lane's host buffers are touched only after its stream has
//! finished (`finish`), so no copy is ever in flight over memory the host writes.

use super::device::{driver_error, ensure, launch_on, Buffers, Device, Launch};
use cudarc::driver::{result, sys, CudaFunction, CudaStream, DevicePtr, DevicePtrMut, PinnedHostSlice};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

pub struct Lane {
    stream: Arc<CudaStream>,
    buffers: Buffers,
    staged: Vec<Option<PinnedHostSlice<u8>>>,
    results: Option<PinnedHostSlice<f32>>,
    counts: Option<PinnedHostSlice<i32>>,
    /// Where the results of the chunk in flight go: ranges of `out` and of the counts.
    pending: Option<(Range<usize>, Range<usize>)>,
}

/// Grows a page-locked buffer to at least `len` values (never shrinks it).
fn ensure_pinned<T: cudarc::driver::DeviceRepr>(
    device: &Device,
    slot: &mut Option<PinnedHostSlice<T>>,
    len: usize,
    flags: u32,
) -> Result<(), String> {
    if slot.as_ref().is_none_or(|b| b.len() < len) {
        *slot = None;
        // SAFETY: the memory is written (inputs) or filled by a copy (results) before it is read.
        let fresh = unsafe { device.context().alloc_pinned_with_flags::<T>(len.max(1), flags) }
            .map_err(|e| driver_error("page-locked host allocation", e))?;
        *slot = Some(fresh);
    }
    Ok(())
}

impl Lane {
    pub fn new(device: &Device) -> Result<Lane, String> {
        Ok(Lane {
            stream: device.new_stream()?,
            buffers: Buffers::default(),
            staged: Vec::new(),
            results: None,
            counts: None,
            pending: None,
        })
    }

    /// Stages the chunk's inputs, then queues on this lane's stream: the copies in, the kernel,
    /// and the copies of the results (`launch.out_len` floats, and `n` counts when
    /// post-processing) back to staging, for `finish` to deliver to `out[out_range]` and
    /// `bad[bad_range]`.
    pub fn start(
        &mut self,
        device: &Device,
        func: &CudaFunction,
        launch: &Launch<'_>,
        out_range: Range<usize>,
        bad_range: Range<usize>,
    ) -> Result<(), String> {
        if self.pending.take().is_some() {
            // Left in flight by a failed run: let it end before its buffers are reused.
            self.stream
                .synchronize()
                .map_err(|e| driver_error("kernel execution", e))?;
        }
        self.staged.resize_with(launch.inputs.len(), || None);
        self.buffers.inputs.resize_with(launch.inputs.len(), || None);
        for ((staged, buffer), bytes) in self
            .staged
            .iter_mut()
            .zip(&mut self.buffers.inputs)
            .zip(&launch.inputs)
        {
            ensure_pinned(device, staged, bytes.len(), sys::CU_MEMHOSTALLOC_WRITECOMBINED)?;
            ensure(&self.stream, buffer, bytes.len())?;
            let (Some(staged), Some(buffer)) = (staged.as_mut(), buffer.as_mut()) else {
                return Err("staging buffers missing".into());
            };
            let host = &mut staged
                .as_mut_slice()
                .map_err(|e| driver_error("page-locked memory", e))?[..bytes.len()];
            host.par_chunks_mut(1 << 20)
                .zip(bytes.par_chunks(1 << 20))
                .for_each(|(to, from)| to.copy_from_slice(from));
            let (target, _synced) = buffer.device_ptr_mut(&self.stream);
            // SAFETY: `host` is page-locked, `bytes.len()` long, and not written again before
            // this stream has finished (`finish`); the device buffer holds at least as much.
            unsafe { result::memcpy_htod_async(target, &*host, self.stream.cu_stream()) }
                .map_err(|e| driver_error("copy to the GPU", e))?;
        }
        launch_on(&self.stream, func, &mut self.buffers, launch)?;
        let count = bad_range.len();
        ensure_pinned(device, &mut self.results, launch.out_len, 0)?;
        ensure_pinned(device, &mut self.counts, count, 0)?;
        let (Some(results), Some(counts), Some(dev_out), Some(dev_bad)) = (
            self.results.as_mut(),
            self.counts.as_mut(),
            self.buffers.out.as_ref(),
            self.buffers.bad.as_ref(),
        ) else {
            return Err("result buffers missing".into());
        };
        let results = &mut results
            .as_mut_slice()
            .map_err(|e| driver_error("page-locked memory", e))?[..launch.out_len];
        let (source, _synced) = dev_out.device_ptr(&self.stream);
        // SAFETY: as above: read by the host only after the stream has finished.
        unsafe { result::memcpy_dtoh_async(results, source, self.stream.cu_stream()) }
            .map_err(|e| driver_error("copy from the GPU", e))?;
        if count > 0 {
            let counts = &mut counts
                .as_mut_slice()
                .map_err(|e| driver_error("page-locked memory", e))?[..count];
            let (source, _synced) = dev_bad.device_ptr(&self.stream);
            // SAFETY: as above.
            unsafe { result::memcpy_dtoh_async(counts, source, self.stream.cu_stream()) }
                .map_err(|e| driver_error("copy from the GPU", e))?;
        }
        self.pending = Some((out_range, bad_range));
        Ok(())
    }

    /// Waits for the lane's chunk in flight, if any, and delivers its results.
    pub fn finish(&mut self, out: &mut [f32], bad: &mut [i32]) -> Result<(), String> {
        let Some((out_range, bad_range)) = self.pending.take() else {
            return Ok(());
        };
        self.stream
            .synchronize()
            .map_err(|e| driver_error("kernel execution", e))?;
        if let Some(results) = &self.results {
            let results = results
                .as_slice()
                .map_err(|e| driver_error("page-locked memory", e))?;
            out[out_range.clone()].copy_from_slice(&results[..out_range.len()]);
        }
        if let (Some(counts), false) = (&self.counts, bad_range.is_empty()) {
            let counts = counts
                .as_slice()
                .map_err(|e| driver_error("page-locked memory", e))?;
            bad[bad_range.clone()].copy_from_slice(&counts[..bad_range.len()]);
        }
        Ok(())
    }
}

impl Drop for Lane {
    /// Page-locked memory must not be freed under a copy still in flight.
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
    }
}
