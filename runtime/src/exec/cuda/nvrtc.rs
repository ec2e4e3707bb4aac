//! NVRTC: CUDA C to PTX. Needs `libnvrtc` only, no GPU and no driver. cudarc loads the library
//! on first use and panics when it is missing, so [`available`] is checked before every call.

use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, CString};

/// Whether libnvrtc can be loaded; the error says how to get it.
pub fn available() -> Result<(), String> {
    // SAFETY: only tries to open the library by its candidate names.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "NVRTC (libnvrtc.so) was not found: install it (`eval \"$(bash scripts/install-nvrtc.sh)\"` \
             or a CUDA toolkit) and put its folder on LD_LIBRARY_PATH"
                .into(),
        )
    }
}

/// NVRTC's version, `(major, minor)`.
pub fn version() -> Result<(i32, i32), String> {
    available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; both pointers are valid for writes.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion: {e:?}"))?;
    Ok((major, minor))
}

/// Compiles `source` to PTX for `arch` (`sm_90`, `compute_90`); `name` names the program in
/// NVRTC's messages. A compile error returns NVRTC's log.
pub fn compile_ptx(source: &str, name: &str, arch: &str) -> Result<String, String> {
    available()?;
    if !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("`{arch}` is not a GPU architecture name (like sm_90)"));
    }
    let source = CString::new(source).map_err(|_| "CUDA source holds a NUL byte".to_string())?;
    let name = CString::new(name).unwrap_or_else(|_| c"camc.cu".to_owned());
    let program =
        result::create_program(&source, Some(&name)).map_err(|e| format!("nvrtcCreateProgram: {e:?}"))?;
    let options = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string()];
    // SAFETY: `program` was just created and is destroyed once, below.
    let compiled = unsafe { result::compile_program(program, &options) };
    let outcome = match compiled {
        Ok(()) => unsafe { result::get_ptx(program) }
            .map(text)
            .map_err(|e| format!("nvrtcGetPTX: {e:?}")),
        Err(e) => {
            let log = unsafe { result::get_program_log(program) }
                .map(text)
                .unwrap_or_default();
            Err(format!(
                "NVRTC could not compile the kernel ({e:?}) for {arch}:\n{log}"
            ))
        }
    };
    // SAFETY: created above and not destroyed yet.
    let _ = unsafe { result::destroy_program(program) };
    outcome
}

/// NVRTC's NUL-terminated text as a String.
fn text(chars: Vec<c_char>) -> String {
    let bytes: Vec<u8> = chars
        .into_iter()
        .map(|c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
