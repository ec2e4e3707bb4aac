//! Every stdlib method against the independent golden outputs of tests/golden (numpy, checked
//! against pytorch-grad-cam): the reference interpreter agrees with the raw maps to 1e-5 and
//! with the post-processed heatmaps to 1e-5 (the documented tolerance is 1e-4 for heatmaps); so does the CPU JIT.

mod support;

use camc_runtime::exec::interp::InterpExecutor;

#[test]
fn interpreter_matches_the_golden_outputs() {
    let failures = support::golden::check(
        &|kernel, dims, outputs| Box::new(InterpExecutor::new(kernel, dims, outputs).expect("valid outputs")),
        1e-5,
        1e-5,
    );
    support::report(failures);
}

#[test]
fn cpu_jit_matches_the_golden_outputs() {
    use camc_runtime::exec::cpu::CpuExecutor;
    let failures = support::golden::check(
        &|kernel, dims, outputs| {
            Box::new(CpuExecutor::new(kernel, dims, outputs).expect("the JIT compiles every stdlib method"))
        },
        1e-5,
        1e-5,
    );
    support::report(failures);
}
