//! The PTX store: compiled kernels kept in memory for the process and on disk across runs, keyed
//! by a hash of the CUDA source, the NVRTC version and the GPU architecture, so a repeat run
//! skips NVRTC.
//! The folder is `$CAMC_CACHE_DIR`, else `$XDG_CACHE_HOME/camc/cuda`, else `~/.cache/camc/cuda`.
//! The disk is best effort: a folder that cannot be read or written only means compiling again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Where a kernel came from, for logs and tests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Memory,
    Disk,
    Compiled,
}

pub struct PtxStore {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, Arc<str>>>,
}

/// The store key: 32 hex digits over the source, NVRTC's version and the architecture.
pub fn key(source: &str, nvrtc: (i32, i32), arch: &str) -> String {
    let text = format!("camc-ptx-v1\0{}.{}\0{arch}\0{source}", nvrtc.0, nvrtc.1);
    let a = fnv1a(text.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let b = fnv1a(text.as_bytes(), 0x6c62_272e_07bb_0142);
    format!("{a:016x}{b:016x}")
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The default folder (see the module documentation), if a home can be found.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("CAMC_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("camc/cuda")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/camc/cuda")))
}

impl PtxStore {
    /// A store on `dir` (memory only when `None`).
    pub fn new(dir: Option<PathBuf>) -> PtxStore {
        PtxStore {
            dir,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The process-wide store on [`default_dir`].
    pub fn global() -> &'static PtxStore {
        static CACHE: OnceLock<PtxStore> = OnceLock::new();
        CACHE.get_or_init(|| PtxStore::new(default_dir()))
    }

    fn path(dir: &Path, key: &str) -> PathBuf {
        dir.join(format!("{key}.ptx"))
    }

    /// The PTX under `key`, from memory, else disk, else `compile` (then stored in both).
    pub fn get_or_compile(
        &self,
        key: &str,
        compile: impl FnOnce() -> Result<String, String>,
    ) -> Result<(Arc<str>, Origin), String> {
        if let Some(ptx) = self.lock().get(key) {
            return Ok((ptx.clone(), Origin::Memory));
        }
        let on_disk = self
            .dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(Self::path(d, key)).ok());
        let (ptx, origin) = match on_disk {
            Some(ptx) if ptx.contains(".entry") => (ptx, Origin::Disk),
            _ => {
                let ptx = compile()?;
                self.store(key, &ptx);
                (ptx, Origin::Compiled)
            }
        };
        let ptx: Arc<str> = ptx.into();
        self.lock().insert(key.to_string(), ptx.clone());
        Ok((ptx, origin))
    }

    /// Writes atomically (a temporary file renamed), so a reader never sees half a file.
    fn store(&self, key: &str, ptx: &str) {
        let Some(dir) = &self.dir else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!("{key}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, ptx).is_ok() && std::fs::rename(&tmp, Self::path(dir, key)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<str>>> {
        self.memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_source_version_and_arch() {
        let base = key("src", (13, 0), "sm_90");
        assert_eq!(base.len(), 32);
        assert_eq!(base, key("src", (13, 0), "sm_90"));
        assert_ne!(base, key("src2", (13, 0), "sm_90"));
        assert_ne!(base, key("src", (13, 1), "sm_90"));
        assert_ne!(base, key("src", (13, 0), "sm_80"));
    }

    #[test]
    fn a_second_cache_on_the_same_folder_reads_the_disk_and_skips_compiling() {
        let dir = std::env::temp_dir().join(format!("camc-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ptx = "// ptx\n.entry camc_k_f32()\n";
        let first = PtxStore::new(Some(dir.clone()));
        let (got, origin) = first.get_or_compile("abc", || Ok(ptx.into())).expect("compiles");
        assert_eq!((&*got, origin), (ptx, Origin::Compiled));
        let (_, origin) = first
            .get_or_compile("abc", || Err("no".into()))
            .expect("in memory");
        assert_eq!(origin, Origin::Memory);
        let second = PtxStore::new(Some(dir.clone()));
        let (got, origin) = second
            .get_or_compile("abc", || Err("must not compile".into()))
            .expect("on disk");
        assert_eq!((&*got, origin), (ptx, Origin::Disk));
        // A damaged file is compiled again, and a failed compile is an error, not a panic.
        std::fs::write(dir.join("abc.ptx"), "garbage").expect("write");
        let third = PtxStore::new(Some(dir.clone()));
        assert_eq!(
            third
                .get_or_compile("abc", || Err("nvrtc says no".into()))
                .unwrap_err(),
            "nvrtc says no"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_cache_without_a_folder_keeps_kernels_in_memory() {
        let cache = PtxStore::new(None);
        let (_, origin) = cache
            .get_or_compile("k", || Ok(".entry x".into()))
            .expect("compiles");
        assert_eq!(origin, Origin::Compiled);
        let (_, origin) = cache.get_or_compile("k", || Err("no".into())).expect("memory");
        assert_eq!(origin, Origin::Memory);
    }
}
