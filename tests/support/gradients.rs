//! Programs whose gradients the tests take: one per operation of the language, and the
//! backward kernels of those and of every stdlib method.

use camc_compiler::grad::backward;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::{optimize, Level};

/// Every operation, in programs over `A`, `G` and a learnable `w: [k]`.
pub const BODIES: &[&str] = &[
    "sum[k](relu(A) * G)",
    "sum[k](abs(A) * exp(G))",
    "sum[k](log(abs(A) + 1) * sqrt(abs(G) + 1))",
    "sum[k](sigmoid(A) * tanh(G)) - sum[k](-A)",
    "sum[k](A / (G*G + 1))",
    "sum[k](max(A, G) - min(A, G) * 2)",
    "sum[k]((abs(A) + 1) ^ G) + sum[k](A ^ 2)",
    "sum[k](where(A > G, A * G, A - G)) + sum[k]((A < 0.5) * G) + sum[k]((A == G) + (A != G))",
    "sum[k](sign(A) * G) + sum[k]((A >= 0 && G <= 1) * A) + sum[k]((A > 1 || G < 0) * G)",
    "mean[k](A) * max[k](G) + min[k](A * G)",
    "norm[k](A) + std[k](G) + max[h,w](sum[k](A)) + min[k,h,w](G) + mean[h,w](sum[k](G * A))",
    "sum[k](softmax[k](w) * relu(A)) + sum[k](softmax[h,w](A) * G)",
    "normalize[h,w](sum[k](w * A)) + sum[k](normalize[k,h](G))",
    "sum[k](w * A) / size[k]() + sum[k](index[k]() * G)",
    "relu(sum[k](mean[h,w](G) * A)) * sum[k](mean[h,w](w * G))",
];

/// The backward kernels of the stdlib methods and of every operation's program, optimized.
pub fn backward_kernels() -> Vec<Kernel> {
    let mut forwards: Vec<Kernel> = camc_compiler::stdlib::names()
        .map(|name| super::stdlib_kernel(name, Level::Exact))
        .collect();
    for body in BODIES {
        forwards.push(super::kernel(
            &format!("cam t(A: [k,h,w], G: [k,h,w], w: [k]) = {body}"),
            Level::Exact,
        ));
    }
    let mut kernels = Vec::new();
    for forward in &forwards {
        for input in forward.inputs.iter().filter(|i| i.name != "target") {
            if let Ok(mut grad) = backward(forward, &input.name) {
                optimize(&mut grad, Level::Exact).expect("optimizes");
                kernels.push(grad);
            }
        }
    }
    kernels
}
