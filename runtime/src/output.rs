//! Writing what a command produces without destroying what it reads, and without leaving a
//! half-written file where a finished one is expected (docs/cli.md, "Outputs").
//!
//! A command first lists its [`Inputs`] and checks every output against them: an output that
//! is an input (by path, through a symbolic link, or as a hard link to the same file), lies
//! inside an input directory, or is a directory holding an input is refused before anything is
//! written. Files are then written to a temporary file beside their destination and renamed into
//! place once complete ([`OutputFile`]), so a run that fails or is killed leaves the previous file
//! as it was, and two runs writing one path each leave a whole file (the last to finish wins).
//! Directories are built beside their destination too ([`OutputDir`]). Special files (a FIFO,
//! `/dev/null`) are written directly: there is nothing to replace.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary files and folders not yet moved into place, for [`remove_pending`].
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers a temporary path while it exists (dropped: unregistered).
struct Pending(PathBuf);

impl Pending {
    fn new(path: &Path) -> Pending {
        if let Ok(mut list) = PENDING.lock() {
            list.push(path.to_path_buf());
        }
        Pending(path.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut list) = PENDING.lock() {
            list.retain(|p| p != &self.0);
        }
    }
}

/// Removes every temporary file and folder of outputs not yet in place: for a process about to
/// end on a signal (Ctrl-C), which runs no destructors.
pub fn remove_pending() {
    let list = match PENDING.lock() {
        Ok(list) => list.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for path in list {
        if path.is_dir() {
            // Moved away first: a worker still writing into it by path then fails instead of
            // adding a file while it is being removed.
            let doomed = path.with_extension("removing");
            let gone = std::fs::rename(&path, &doomed).map_or(path, |()| doomed);
            let _ = std::fs::remove_dir_all(&gone);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output `{output}` {relation} the input `{input}`; camc never writes over what a command reads")]
    IsInput {
        output: PathBuf,
        relation: &'static str,
        input: PathBuf,
    },
    #[error("output `{path}`: {message}")]
    Io { path: PathBuf, message: String },
}

fn io(path: &Path, what: &str, error: impl std::fmt::Display) -> OutputError {
    OutputError::Io {
        path: path.to_path_buf(),
        message: format!("{what}: {error}"),
    }
}

/// One input as found on disk: where it resolves to and which file it is.
struct Input {
    given: PathBuf,
    resolved: PathBuf,
    identity: Option<(u64, u64)>,
}

/// The files and directories a command reads.
#[derive(Default)]
pub struct Inputs {
    inputs: Vec<Input>,
}

#[cfg(unix)]
fn identity(metadata: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn identity(_: &Metadata) -> Option<(u64, u64)> {
    None
}

/// Where `path` resolves to: itself with every link followed when it exists, else its
/// directory resolved and its name appended (the file a write would create).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(resolved) = path.canonicalize() {
        return resolved;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

impl Inputs {
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Adds a file or directory the command reads (one that does not exist is ignored: it
    /// cannot be overwritten). The files of a directory are covered by the directory.
    pub fn add(&mut self, path: &Path) {
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        self.inputs.push(Input {
            given: path.to_path_buf(),
            resolved: resolve(path),
            identity: identity(&metadata),
        });
        if metadata.is_dir() {
            // A hard link to a file inside it is the same file under another name.
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                if let Ok(m) = entry.metadata() {
                    if m.is_file() {
                        self.inputs.push(Input {
                            given: entry.path(),
                            resolved: resolve(&entry.path()),
                            identity: identity(&m),
                        });
                    }
                }
            }
        }
    }

    /// An error when writing `output` (a file, or a directory of files) could change an input.
    pub fn check(&self, output: &Path) -> Result<(), OutputError> {
        let resolved = resolve(output);
        let existing = std::fs::metadata(output).ok().and_then(|m| identity(&m));
        for input in &self.inputs {
            let relation = if resolved == input.resolved || (existing.is_some() && existing == input.identity)
            {
                "is"
            } else if resolved.starts_with(&input.resolved) {
                "lies inside"
            } else if input.resolved.starts_with(&resolved) {
                "holds"
            } else {
                continue;
            };
            return Err(OutputError::IsInput {
                output: output.to_path_buf(),
                relation,
                input: input.given.clone(),
            });
        }
        Ok(())
    }
}

/// The directory a new file or directory at `path` goes into.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Hidden, recognisable name of the temporary twin of `path`.
fn temporary_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// A file being written; it appears at its path only when [`OutputFile::commit`] succeeds.
pub struct OutputFile {
    /// Where it goes, links followed (a link to a file keeps pointing at the new file).
    path: PathBuf,
    kind: Destination,
    _pending: Option<Pending>,
}

enum Destination {
    Temporary(tempfile::NamedTempFile),
    /// A special file (FIFO, character device), written in place.
    Direct(File),
}

impl OutputFile {
    /// Starts writing `path`: a temporary file in the same directory, or the special file
    /// itself. A directory at `path` is an error.
    pub fn create(path: &Path) -> Result<OutputFile, OutputError> {
        let target = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => resolve(path),
            _ => path.to_path_buf(),
        };
        match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => return Err(io(path, "cannot write", "it is a directory")),
            Ok(m) if !m.is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| io(path, "cannot open", e))?;
                return Ok(OutputFile {
                    path: target,
                    kind: Destination::Direct(file),
                    _pending: None,
                });
            }
            _ => {}
        }
        let prefix = temporary_prefix(&target);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // What a plain create gives (the umask applies), not the temporary file's 0600.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temporary = builder
            .tempfile_in(parent_of(&target))
            .map_err(|e| io(path, "cannot create a file in its directory", e))?;
        Ok(OutputFile {
            path: target,
            _pending: Some(Pending::new(temporary.path())),
            kind: Destination::Temporary(temporary),
        })
    }

    pub fn file(&self) -> &File {
        match &self.kind {
            Destination::Temporary(t) => t.as_file(),
            Destination::Direct(f) => f,
        }
    }

    /// Whether the destination is a regular file (sized and reserved before writing).
    pub fn is_regular(&self) -> bool {
        matches!(self.kind, Destination::Temporary(_))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the finished file in place (replacing what was there in one step).
    pub fn commit(self) -> Result<(), OutputError> {
        match self.kind {
            Destination::Temporary(temporary) => temporary
                .persist(&self.path)
                .map(drop)
                .map_err(|e| io(&self.path, "cannot move into place", e.error)),
            Destination::Direct(_) => Ok(()),
        }
    }
}

/// Writes `bytes` to `path` through an [`OutputFile`].
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    use std::io::Write;
    let output = OutputFile::create(path)?;
    let mut file = output.file();
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(|e| io(path, "cannot write", e))?;
    output.commit()
}

/// A directory being filled; its files appear at its path only when [`OutputDir::commit`]
/// succeeds. A directory already there keeps the files this one does not replace.
pub struct OutputDir {
    path: PathBuf,
    staging: tempfile::TempDir,
    _pending: Pending,
}

impl OutputDir {
    pub fn create(path: &Path) -> Result<OutputDir, OutputError> {
        if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            return Err(io(path, "cannot write", "it exists and is not a directory"));
        }
        let parent = parent_of(path);
        std::fs::create_dir_all(parent).map_err(|e| io(path, "cannot create its parent", e))?;
        let staging = tempfile::Builder::new()
            .prefix(&temporary_prefix(path))
            .suffix(".tmp")
            .tempdir_in(parent)
            .map_err(|e| io(path, "cannot create a directory beside it", e))?;
        Ok(OutputDir {
            path: path.to_path_buf(),
            _pending: Pending::new(staging.path()),
            staging,
        })
    }

    /// Where to write the files (the staging directory until committed).
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// The final path of a file written at `inner` below [`OutputDir::path`].
    pub fn final_path(&self, inner: &Path) -> PathBuf {
        match inner.strip_prefix(self.staging.path()) {
            Ok(relative) => self.path.join(relative),
            Err(_) => inner.to_path_buf(),
        }
    }

    /// Moves the files into place: the whole directory in one rename when nothing is there
    /// yet, else file by file (each replaced in one step; other files stay).
    pub fn commit(self) -> Result<(), OutputError> {
        let staging = self.staging.keep();
        let result = match std::fs::rename(&staging, &self.path) {
            Ok(()) => Ok(()),
            Err(_) => merge(&staging, &self.path),
        };
        let _ = std::fs::remove_dir_all(&staging);
        result
    }
}

fn merge(from: &Path, into: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(into).map_err(|e| io(into, "cannot create", e))?;
    let entries = std::fs::read_dir(from).map_err(|e| io(into, "cannot list the new files", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(into, "cannot list the new files", e))?;
        let target = into.join(entry.file_name());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && target.is_dir() {
            merge(&entry.path(), &target)?;
        } else {
            std::fs::rename(entry.path(), &target).map_err(|e| io(&target, "cannot move into place", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_found_by_path_link_and_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = dir.path().join("c.safetensors");
        std::fs::write(&cache, b"data").expect("write");
        let npy = dir.path().join("npy");
        std::fs::create_dir(&npy).expect("dir");
        std::fs::write(npy.join("A.npy"), b"a").expect("write");
        let mut inputs = Inputs::new();
        inputs.add(&cache);
        inputs.add(&npy);
        assert!(inputs.check(&cache).is_err());
        assert!(inputs.check(&npy.join("A.npy")).is_err());
        assert!(
            inputs.check(&npy.join("new.npy")).is_err(),
            "inside an input directory"
        );
        assert!(inputs.check(dir.path()).is_err(), "holds an input");
        assert!(inputs.check(&dir.path().join("out.npy")).is_ok());
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&cache, &link).expect("link");
            assert!(inputs.check(&link).is_err());
            let hard = dir.path().join("hard");
            std::fs::hard_link(npy.join("A.npy"), &hard).expect("hard link");
            assert!(inputs.check(&hard).is_err());
        }
    }

    #[test]
    fn a_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.json");
        std::fs::write(&path, b"old").expect("write");
        let output = OutputFile::create(&path).expect("create");
        std::io::Write::write_all(&mut output.file(), b"new").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        drop(output);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"old",
            "dropped: the old file stays"
        );
        write_file(&path, b"new").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn a_directory_is_renamed_into_place_or_merged() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("png");
        let output = OutputDir::create(&path).expect("create");
        std::fs::write(output.path().join("a.png"), b"1").expect("write");
        assert!(!path.exists());
        output.commit().expect("commit");
        assert_eq!(std::fs::read(path.join("a.png")).expect("read"), b"1");
        std::fs::write(path.join("mine.txt"), b"user").expect("write");
        let output = OutputDir::create(&path).expect("create");
        std::fs::write(output.path().join("a.png"), b"2").expect("write");
        output.commit().expect("commit");
        assert_eq!(std::fs::read(path.join("a.png")).expect("read"), b"2");
        assert_eq!(std::fs::read(path.join("mine.txt")).expect("read"), b"user");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            1,
            "no staging left"
        );
    }
}
