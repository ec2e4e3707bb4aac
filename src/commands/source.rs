//! Reading `.cam` files: only regular files of a sensible size, as UTF-8 text, with a clear
//! error otherwise (a cache file given where a program is expected gets a hint).

use crate::output;
use crate::Reported;
use std::path::Path;

/// The largest program file camc reads (the whole stdlib is a few KiB).
pub const MAX_PROGRAM_BYTES: u64 = 1 << 20;

fn fail(message: String) -> Reported {
    output::error(&message);
    Reported
}

pub fn read(path: &Path) -> Result<String, Reported> {
    let shown = path.display();
    let cannot = |e: std::io::Error| fail(format!("cannot read `{shown}`: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(fail(format!(
            "`{shown}` is not a regular file; a program is a .cam file"
        )));
    }
    if path.extension().is_some_and(|x| x == "safetensors" || x == "npy") {
        return Err(fail(format!(
            "`{shown}` is a cache, not a program: did the shell expand a glob? quote it, as in --cache 'shards/*.safetensors'"
        )));
    }
    if metadata.len() > MAX_PROGRAM_BYTES {
        return Err(fail(format!(
            "`{shown}` holds {} bytes; a program file is at most {} MiB",
            metadata.len(),
            MAX_PROGRAM_BYTES >> 20
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PROGRAM_BYTES), &mut bytes)
        .map_err(cannot)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        fail(format!(
            "`{shown}` is not a text file: invalid UTF-8 at byte {at}"
        ))
    })
}
