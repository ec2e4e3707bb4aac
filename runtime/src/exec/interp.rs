//! The reference interpreter as an executor: image after image through [`crate::interp::eval`],
//! the post-processing on the host ([`crate::postprocess::host_maps`]).

use super::{ExecError, Executor, Outputs, Sink, Spec};
use crate::batch::Batch;
use crate::postprocess::host_maps;
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;

pub struct InterpExecutor {
    spec: Spec,
}

impl InterpExecutor {
    pub fn new(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<InterpExecutor, ExecError> {
        Ok(InterpExecutor {
            spec: Spec::new(kernel, dims, outputs)?,
        })
    }
}

impl Executor for InterpExecutor {
    fn backend(&self) -> &'static str {
        "interp"
    }

    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn run(&mut self, batch: &Batch<'_>, sink: &Sink<'_>) -> Result<(), ExecError> {
        self.spec.check(batch)?;
        let sizes: Vec<usize> = self.spec.input_lens();
        let shape = self.spec.raw_shape();
        let backend = |message: String| ExecError::Backend {
            backend: "interp",
            message,
        };
        // Each image's inputs are copied (from the cache file where the batch has one, so that
        // a file cut short while camc reads it is an error, not a fault on its map).
        let mut inputs = vec![Vec::new(); sizes.len()];
        let mut halves = Vec::new();
        let mut processed = Vec::new();
        for image in 0..batch.n {
            for (j, (values, &len)) in inputs.iter_mut().zip(&sizes).enumerate() {
                batch
                    .image_f32(j, self.spec.image_of(j, image), len, values, &mut halves)
                    .map_err(|e| {
                        backend(format!(
                            "reading `{}` of image {image}: {e}",
                            self.spec.kernel.inputs[j].name
                        ))
                    })?;
            }
            let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let mut raw = crate::interp::eval(&self.spec.kernel, self.spec.dims, &slices)
                .map_err(|e| backend(e.to_string()))?;
            let maps = host_maps(&mut raw, &shape, &self.spec.outputs, &mut processed);
            sink(image, maps).map_err(ExecError::Sink)?;
        }
        Ok(())
    }
}
