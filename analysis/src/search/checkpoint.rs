//! The search's checkpoint, `DIR/checkpoint.jsonl`: a first line saying what the results depend
//! on ([`Key`]: the cache's files, the metric, seed, holdout and space), then one evaluated
//! program per line, appended as each is scored. `--resume` continues only the search that
//! wrote it; a new search over it needs `--force`, which also clears the old search's files.

use super::driver::Scored;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CHECKPOINT: &str = "checkpoint.jsonl";

/// How a search treats an existing checkpoint in its folder.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// A checkpoint there is an error.
    Fresh,
    /// Reuse the results of the same search; a checkpoint of another is an error.
    Resume,
    /// Start over: the checkpoint, rank files and report of an earlier search are removed.
    Force,
}

/// One file a cache is read from, as found when the search started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileStamp {
    pub path: PathBuf,
    pub bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u128,
}

/// What the checkpointed results depend on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Key {
    /// Format version of the checkpoint.
    pub camc_checkpoint: u32,
    pub cache: Vec<FileStamp>,
    pub metric: String,
    pub seed: u64,
    pub holdout: f64,
    pub space: String,
}

impl Key {
    pub const VERSION: u32 = 1;

    /// The stamps of every file of the cache `shards` (a `.npy` directory's files each).
    pub fn stamps(shards: &[&Path]) -> Result<Vec<FileStamp>, String> {
        let mut files = Vec::new();
        for shard in shards {
            if shard.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(shard)
                    .map_err(|e| format!("cannot list `{}`: {e}", shard.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                inner.sort();
                files.extend(inner);
            } else {
                files.push(shard.to_path_buf());
            }
        }
        files
            .iter()
            .map(|path| {
                let m =
                    std::fs::metadata(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                let modified_ns = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                Ok(FileStamp {
                    path: path.canonicalize().unwrap_or_else(|_| path.clone()),
                    bytes: m.len(),
                    modified_ns,
                })
            })
            .collect()
    }

    /// The fields in which `other` (the checkpoint's) differs from this search's, for a message.
    fn differences(&self, other: &Key) -> Vec<String> {
        let mut out = Vec::new();
        if self.cache != other.cache {
            out.push(format!(
                "cache (its files: {}; this search's: {})",
                stamps_shown(&other.cache),
                stamps_shown(&self.cache)
            ));
        }
        if self.metric != other.metric {
            out.push(format!("metric (`{}`, not `{}`)", other.metric, self.metric));
        }
        if self.seed != other.seed {
            out.push(format!("seed ({}, not {})", other.seed, self.seed));
        }
        if self.holdout != other.holdout {
            out.push(format!("holdout ({}, not {})", other.holdout, self.holdout));
        }
        if self.space != other.space {
            out.push("search space".to_string());
        }
        out
    }
}

fn stamps_shown(stamps: &[FileStamp]) -> String {
    stamps
        .iter()
        .map(|s| format!("{} ({} bytes)", s.path.display(), s.bytes))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Files a search writes into its folder besides the checkpoint: removed by [`Start::Force`].
fn is_search_output(name: &str) -> bool {
    name == "report.json"
        || name == "pareto.json"
        || ((name.starts_with("rank-") || name.starts_with("pareto-")) && name.ends_with(".cam"))
}

/// Opens the checkpoint in `dir` for a search with `key`: the results already there (on
/// resume) and the file to append new ones to.
pub fn open(dir: &Path, key: &Key, start: Start) -> Result<(HashMap<String, Scored>, File), String> {
    let path = dir.join(CHECKPOINT);
    let exists = path.exists();
    match start {
        Start::Fresh if exists => {
            return Err(format!(
                "`{}` holds the checkpoint of an earlier search: --resume continues it, --force starts over (removing its results and rank files)",
                path.display()
            ))
        }
        Start::Force => clear(dir)?,
        Start::Resume if exists => {
            let (done, complete) = load(&path, key)?;
            let cannot = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
            let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(cannot)?;
            // A line cut short by a kill goes, so that the next result starts a line.
            file.set_len(complete).map_err(cannot)?;
            return Ok((done, file));
        }
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    let line = serde_json::to_string(key).map_err(|e| e.to_string())?;
    writeln!(file, "{line}")
        .and_then(|()| file.flush())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok((HashMap::new(), file))
}

fn clear(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == CHECKPOINT || is_search_output(&name) {
            std::fs::remove_file(entry.path())
                .map_err(|e| format!("cannot remove `{}`: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The results of a checkpoint written by the search with `key`, by WEIGHTS expression, and
/// the length of its complete lines.
fn load(path: &Path, key: &Key) -> Result<(HashMap<String, Scored>, u64), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut lines = text.lines();
    let written_by: Key = lines
        .next()
        .and_then(|first| serde_json::from_str(first).ok())
        .ok_or_else(|| {
            format!(
                "`{}` does not say which search wrote it (not a camc checkpoint, or an older camc's); start over with --force",
                path.display()
            )
        })?;
    if written_by.camc_checkpoint != Key::VERSION {
        return Err(format!(
            "`{}` is a version {} checkpoint; this camc reads version {}; start over with --force",
            path.display(),
            written_by.camc_checkpoint,
            Key::VERSION
        ));
    }
    let differences = key.differences(&written_by);
    if !differences.is_empty() {
        return Err(format!(
            "`{}` is the checkpoint of another search, which differs in: {}; start over with --force, or resume with the same arguments",
            path.display(),
            differences.join("; ")
        ));
    }
    let results: Vec<&str> = lines.collect();
    let mut done = HashMap::new();
    for (i, line) in results.iter().enumerate() {
        // A line cut short by a kill is the last one; drop it and evaluate again.
        match serde_json::from_str::<Scored>(line) {
            Ok(s) => {
                done.insert(s.weights.clone(), s);
            }
            Err(_) if i + 1 == results.len() => {}
            Err(e) => return Err(format!("{}: line {}: {e}", path.display(), i + 2)),
        }
    }
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    Ok((done, complete as u64))
}
