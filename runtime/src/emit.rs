//! A compiled program as text (`camc emit`, Python's `Program.emit`): the optimized IR, the
//! Cranelift IR of the CPU kernel, CUDA C, or PTX from NVRTC.

use camc_compiler::codegen::{clif, cuda};
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;

/// What to print.
#[derive(Clone, Debug)]
pub enum Emit {
    /// The IR, as text.
    Ir,
    /// Cranelift IR of the CPU kernel specialized to `dims`, with the post-processing to
    /// `size` fused in when given.
    Clif { dims: Dims, size: Option<[usize; 2]> },
    /// Standalone CUDA C (f32, f16 and bf16 entry points).
    Cuda,
    /// PTX of that source for the GPU architecture `arch` (e.g. `sm_75`).
    Ptx { arch: String },
}

pub fn text(kernel: &Kernel, emit: &Emit) -> Result<String, String> {
    match emit {
        Emit::Ir => Ok(camc_compiler::ir::print(kernel)),
        Emit::Clif { dims, size } => {
            let target = clif::default_target();
            let info = camc_compiler::ir::validate(kernel).map_err(|e| e.to_string())?;
            let lowered = match size {
                None => clif::lower(kernel, &info, *dims, target),
                Some(size) => clif::lower_scaled(kernel, &info, *dims, *size, false, target),
            }
            .map_err(|e| e.to_string())?;
            Ok(clif::text(kernel, &lowered, *dims))
        }
        Emit::Cuda | Emit::Ptx { .. } => {
            let source = cuda::write(kernel, &cuda::uniform_variants(kernel)).map_err(|e| e.to_string())?;
            match emit {
                Emit::Ptx { arch } => {
                    let name = format!("{}.cu", kernel.name);
                    crate::exec::cuda::nvrtc::compile_ptx(&source.text, &name, arch)
                }
                _ => Ok(source.text),
            }
        }
    }
}
