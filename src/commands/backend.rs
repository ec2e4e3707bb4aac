//! `--backend auto|cpu|cuda|interp`: which executor runs a kernel.

use crate::output;
use crate::Reported;
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::cuda::{gpu_present, CudaExecutor};
use camc_runtime::exec::interp::InterpExecutor;
use camc_runtime::exec::{ExecError, Executor, Outputs};

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// CUDA where a GPU and the CUDA libraries are present, else the CPU JIT.
    Auto,
    /// Native code through Cranelift.
    Cpu,
    /// A fused CUDA kernel through NVRTC.
    Cuda,
    /// The reference interpreter (slow, the semantic oracle).
    Interp,
}

/// An executor for `kernel` on a dataset of `dims`, computing `outputs`.
pub fn executor(
    backend: Backend,
    kernel: &Kernel,
    dims: Dims,
    outputs: Outputs,
) -> Result<Box<dyn Executor>, Reported> {
    let chosen: Result<Box<dyn Executor>, ExecError> = match backend {
        Backend::Interp => InterpExecutor::new(kernel, dims, outputs).map(|e| Box::new(e) as _),
        Backend::Cuda => CudaExecutor::new(kernel, dims, outputs).map(|e| Box::new(e) as _),
        Backend::Auto if gpu_present() => CudaExecutor::new(kernel, dims, outputs).map(|e| Box::new(e) as _),
        Backend::Cpu | Backend::Auto => CpuExecutor::new(kernel, dims, outputs).map(|e| Box::new(e) as _),
    };
    chosen.map_err(|e| {
        output::error(&e.to_string());
        Reported
    })
}
