//! Optimizer: passes over the IR, one file each, run in the order of [`PASSES`]. The passes of
//! [`Level::Exact`] keep every value the program computes, NaN and infinities included, up to
//! float32 rounding; [`Level::Fast`] adds reassociation that can differ where a value is not
//! finite (like a C compiler's fast-math). The validator re-checks the IR after each pass and
//! hands the next pass its side table ([`Info`]: uses, liveness).

mod cse;
mod dce;
mod fold;
mod hoist;
mod rewrite;
mod simplify;

use crate::ir::{validate, Info, Invalid, Kernel};

/// A pass rewrites the kernel, reading the validator's table of the kernel it is given.
pub type Pass = fn(&mut Kernel, &Info);

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No pass: the IR as lowered.
    None,
    /// Passes that change no value beyond rounding.
    Exact,
    /// Also passes that reassociate and may change non-finite results.
    Fast,
}

/// The pipeline, in order, with the level each pass needs. Adding a pass is one file and one
/// line here.
pub const PASSES: &[(&str, Pass, Level)] = &[
    ("fold", fold::run, Level::Exact),
    ("simplify", simplify::run, Level::Exact),
    ("cse", cse::run, Level::Exact),
    ("hoist", hoist::run, Level::Fast),
    ("cse", cse::run, Level::Fast),
    ("dce", dce::run, Level::Exact),
];

/// Runs the passes of `level` over a valid kernel; returns the optimized kernel's [`Info`], or
/// what a pass broke (a compiler bug, reported rather than run).
pub fn optimize(kernel: &mut Kernel, level: Level) -> Result<Info, Invalid> {
    let mut info = validate(kernel)?;
    for (name, pass, needs) in PASSES {
        if *needs > level {
            continue;
        }
        pass(kernel, &info);
        info = validate(kernel).map_err(|e| Invalid {
            problem: format!("after optimizer pass `{name}`: {}", e.problem),
            ..e
        })?;
    }
    Ok(info)
}

/// Runs one pass by name (for tests and `camc emit --pass`).
pub fn pass(name: &str) -> Option<Pass> {
    PASSES.iter().find(|(n, _, _)| *n == name).map(|(_, p, _)| *p)
}
