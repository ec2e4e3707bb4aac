//! Every stdlib method against the independent golden outputs of tests/golden (numpy, checked
//! against pytorch-grad-cam): the reference interpreter agrees with the raw maps to 1e-5 and
//! with the post-processed heatmaps to 1e-5 (SPEC asks 1e-4 of the heatmaps); so does the CPU JIT.

mod support;

use camc_runtime::exec::interp::InterpExecutor;

#[test]
fn interpreter_matches_the_golden_outputs() {
    let failures = support::golden::check(
        &|kernel, dims| Box::new(InterpExecutor::new(kernel, dims)),
        1e-5,
        1e-5,
    );
    support::report(failures);
}

#[test]
fn cpu_jit_matches_the_golden_outputs() {
    use camc_runtime::exec::cpu::CpuExecutor;
    let failures = support::golden::check(
        &|kernel, dims| {
            Box::new(CpuExecutor::new(kernel, dims).expect("the JIT compiles every stdlib method"))
        },
        1e-5,
        1e-5,
    );
    support::report(failures);
}
