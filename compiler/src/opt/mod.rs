//! Optimizer: passes over the IR, one file each, run in the order of [`PASSES`]. Every pass
//! keeps the value of the program within SPEC §3's tolerance; the validator re-checks the IR
//! after each one in debug builds.

mod cse;
mod dce;
mod fold;
mod hoist;
mod rewrite;
mod simplify;

use crate::ir::{validate, Kernel};

pub type Pass = fn(&mut Kernel);

/// The pipeline, in order. Adding a pass is one file and one line here.
pub const PASSES: &[(&str, Pass)] = &[
    ("fold", fold::run),
    ("simplify", simplify::run),
    ("cse", cse::run),
    ("hoist", hoist::run),
    ("cse", cse::run),
    ("dce", dce::run),
];

pub fn optimize(kernel: &mut Kernel) {
    for (name, pass) in PASSES {
        pass(kernel);
        if cfg!(debug_assertions) {
            if let Err(e) = validate(kernel) {
                panic!("optimizer pass `{name}` broke the IR: {e}");
            }
        }
    }
}

/// Runs one pass by name (for tests and `camc emit --pass`).
pub fn pass(name: &str) -> Option<Pass> {
    PASSES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
