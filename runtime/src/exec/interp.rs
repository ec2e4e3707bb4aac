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
        let sizes: Vec<usize> = self.kernel.inputs.iter().map(|i| self.dims.len(i.ty)).collect();
        let out_len = self.dims.len(self.kernel.output_ty());
        let backend = |message: String| ExecError::Backend {
            backend: "interp",
            message,
        };
        // Each image's inputs are copied (from the cache file where the batch has one, so that
        // a file cut short while camc reads it is an error, not a fault on its map).
        let mut inputs = vec![Vec::new(); sizes.len()];
        let mut halves = Vec::new();
        for image in 0..batch.n {
            for (j, (values, &len)) in inputs.iter_mut().zip(&sizes).enumerate() {
                batch
                    .image_f32(j, image, len, values, &mut halves)
                    .map_err(|e| backend(format!("reading input {j} of image {image}: {e}")))?;
            }
            let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let result =
                crate::interp::eval(&self.kernel, self.dims, &slices).map_err(|e| backend(e.to_string()))?;
            out[image * out_len..(image + 1) * out_len].copy_from_slice(&result);
        }
        Ok(())
    }
}
