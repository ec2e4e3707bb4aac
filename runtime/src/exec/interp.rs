//! The reference interpreter as an executor: image after image, through [`crate::interp::eval`].

use super::{check_batch, Batch, ExecError, Executor};
use crate::dims::Dims;
use camc_compiler::ir::Kernel;

pub struct InterpExecutor {
    kernel: Kernel,
    dims: Dims,
}

impl InterpExecutor {
    pub fn new(kernel: &Kernel, dims: Dims) -> InterpExecutor {
        InterpExecutor {
            kernel: kernel.clone(),
            dims,
        }
    }
}

impl Executor for InterpExecutor {
    fn backend(&self) -> &'static str {
        "interp"
    }

    fn run(&mut self, batch: &Batch<'_>, out: &mut [f32]) -> Result<(), ExecError> {
        check_batch(&self.kernel, self.dims, batch, out)?;
        let inputs: Vec<_> = batch.inputs.iter().map(|d| d.to_f32()).collect();
        let sizes: Vec<usize> = self.kernel.inputs.iter().map(|i| self.dims.len(i.ty)).collect();
        let out_len = self.dims.len(self.kernel.output_ty());
        for image in 0..batch.n {
            let slices: Vec<&[f32]> = inputs
                .iter()
                .zip(&sizes)
                .map(|(data, &len)| &data[image * len..(image + 1) * len])
                .collect();
            let result =
                crate::interp::eval(&self.kernel, self.dims, &slices).map_err(|e| ExecError::Backend {
                    backend: "interp",
                    message: e.to_string(),
                })?;
            out[image * out_len..(image + 1) * out_len].copy_from_slice(&result);
        }
        Ok(())
    }
}
