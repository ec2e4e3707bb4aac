//! Embeds every `stdlib/*.cam` file, so adding a method is adding a file.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let stdlib = manifest.join("../stdlib");
    println!("cargo:rerun-if-changed={}", stdlib.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&stdlib)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "cam"));
    files.sort();
    let mut out = String::from(
        "/// Every stdlib method: (name, source text).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stdlib file names are UTF-8");
        let absolute = fs::canonicalize(path).expect("stdlib file exists");
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            absolute.display().to_string()
        ));
        println!("cargo:rerun-if-changed={}", absolute.display());
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stdlib_files.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}
