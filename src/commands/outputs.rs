//! What a command reads, checked against what it writes before anything is written
//! (docs/cli.md, "Outputs").

use super::program::Resolved;
use crate::output;
use crate::Reported;
use camc_runtime::cache::Cache;
use camc_runtime::output::{Inputs, OutputDir};
use std::path::Path;

/// The files and directories of these caches and programs, plus `others`.
pub fn inputs(caches: &[&Cache], programs: &[&Resolved], others: &[&Path]) -> Inputs {
    let mut inputs = Inputs::new();
    for shard in caches.iter().flat_map(|c| &c.shards) {
        inputs.add(&shard.path);
    }
    for file in programs.iter().filter_map(|p| p.file.as_deref()) {
        inputs.add(file);
    }
    for path in others {
        inputs.add(path);
    }
    inputs
}

/// An error (reported) when any of `outputs` could change one of `inputs`.
pub fn check<'a>(
    inputs: &Inputs,
    outputs: impl IntoIterator<Item = Option<&'a Path>>,
) -> Result<(), Reported> {
    for path in outputs.into_iter().flatten() {
        inputs.check(path).map_err(|e| {
            output::error(&e.to_string());
            Reported
        })?;
    }
    Ok(())
}

/// Starts a directory output (`--png`, `--report`), if asked for.
pub fn dir(path: Option<&Path>) -> Result<Option<OutputDir>, Reported> {
    path.map(|p| {
        OutputDir::create(p).map_err(|e| {
            output::error(&e.to_string());
            Reported
        })
    })
    .transpose()
}

/// Moves a finished directory output into place.
pub fn commit(dir: Option<OutputDir>) -> Result<(), Reported> {
    dir.map_or(Ok(()), |d| {
        d.commit().map_err(|e| {
            output::error(&e.to_string());
            Reported
        })
    })
}
