//! Runs generated CUDA C on the CPU with g++ and `emu.h` (see there), so that the kernels'
//! logic is tested against the interpreter on machines without a GPU. Several kernels share one
//! g++ run: each `.cu` goes into its own namespace (with `extern "C"` dropped).

use camc_compiler::codegen::cuda;
use camc_compiler::dims::Dims;
use camc_compiler::dtype::Dtype;
use camc_compiler::ir::Kernel;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One launch: kernel `which` of the batch on `n` images of these inputs, stored as `dtype`
/// (the values must be exact in it: see [`rounded`]); post-processed in the kernel to `scaled`
/// (height, width) when given, and then followed in the output by each image's count of
/// non-finite values.
pub struct Case {
    pub which: usize,
    pub n: usize,
    pub dims: Dims,
    pub inputs: Vec<Vec<f32>>,
    pub dtype: Dtype,
    pub scaled: Option<(usize, usize)>,
    /// Each input starts one element past a 16-byte boundary (the kernels' slow path).
    pub misaligned: bool,
}

const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::Bf16];

/// The values as `dtype` stores them, widened back to f32.
pub fn rounded(values: Vec<f32>, dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => values,
        Dtype::F16 => values.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
        Dtype::Bf16 => values.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect(),
        other => panic!("{other:?} is not a kernel input type"),
    }
}

fn bytes(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::Bf16 => values
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        other => panic!("{other:?} is not a kernel input type"),
    }
}

/// Whether g++ with C++20 is present (else the caller skips).
pub fn available() -> bool {
    Command::new("g++")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("camc-cuda-emu-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The C++ program: every kernel (written for its threads per block) in a namespace, and a
/// `main` that reads the cases.
fn program(kernels: &[(&Kernel, u32, cuda::Schedule)]) -> Result<(String, Vec<cuda::Source>), String> {
    let mut text = format!(
        "#include \"{}\"\n",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/cuda_emu/emu.h")
            .display()
    );
    let mut sources = Vec::new();
    for (i, &(kernel, threads, schedule)) in kernels.iter().enumerate() {
        let variants = DTYPES.map(|d| vec![d; kernel.inputs.len()]);
        let source =
            cuda::write_scheduled(kernel, &variants, threads, schedule).map_err(|e| e.to_string())?;
        let _ = writeln!(
            text,
            "namespace k{i} {{\n{}\n}}",
            source.text.replace("extern \"C\" ", "")
        );
        sources.push(source);
    }
    text.push_str(MAIN_HEAD);
    for (i, (&(kernel, threads, _), source)) in kernels.iter().zip(&sources).enumerate() {
        for (v, dtype) in DTYPES.iter().enumerate() {
            let ty = match dtype {
                Dtype::F32 => "float".to_string(),
                Dtype::F16 => format!("k{i}::camc_f16"),
                Dtype::Bf16 => format!("k{i}::camc_bf16"),
                other => panic!("{other:?} is not a kernel input type"),
            };
            let args: String = (0..kernel.inputs.len())
                .map(|j| format!("(const {ty}*)ins[{j}], "))
                .collect();
            let _ = writeln!(
                text,
                "        case {}: emu_launch(grid, {threads}, [&] {{ k{i}::{}({args}y.data(), s.data(), bad.data(), n, c, k, d, h, w, oh, ow); }}); break;",
                i * 3 + v,
                source.entries[v]
            );
        }
    }
    text.push_str(MAIN_TAIL);
    Ok((text, sources))
}

const MAIN_HEAD: &str = r#"
#include <cstdio>
static long long rd(FILE* f) { long long v = 0; if (fread(&v, 8, 1, f) != 1) return -1; return v; }
int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    FILE* out = fopen(argv[2], "wb");
    if (!in || !out) return 2;
    const long long cases = rd(in);
    for (long long at = 0; at < cases; ++at) {
        const long long which = rd(in);
        const int n = rd(in), c = rd(in), k = rd(in), d = rd(in), h = rd(in), w = rd(in), grid = rd(in);
        const int oh = rd(in), ow = rd(in);
        std::vector<int> bad(n, -1);
        std::vector<std::vector<char>> buffers(rd(in));
        const long long shift = rd(in);
        std::vector<const char*> ins;
        for (auto& v : buffers) {
            const long long len = rd(in);
            v.resize(len + shift);
            if (fread(v.data() + shift, 1, len, in) != (size_t)len) return 3;
            ins.push_back(v.data() + shift);
        }
        std::vector<float> y(rd(in)), s(rd(in) + 1);
        switch (which) {
"#;

const MAIN_TAIL: &str = r#"        default: return 4;
        }
        fwrite(y.data(), 4, y.size(), out);
        for (int b : bad) { const float f = (float)b; if (oh > 0) fwrite(&f, 4, 1, out); }
    }
    fclose(out);
    return 0;
}
"#;

fn put(buffer: &mut Vec<u8>, v: usize) {
    buffer.extend_from_slice(&(v as i64).to_le_bytes());
}

/// Compiles the kernels (for blocks of 512 threads) and runs the cases; returns each case's
/// output.
pub fn run(tag: &str, kernels: &[&Kernel], cases: &[Case]) -> Result<Vec<Vec<f32>>, String> {
    let written: Vec<(&Kernel, u32)> = kernels.iter().map(|&k| (k, cuda::THREADS)).collect();
    run_with_threads(tag, &written, cases)
}

/// [`run`] with each kernel written for its own threads per block.
pub fn run_with_threads(
    tag: &str,
    kernels: &[(&Kernel, u32)],
    cases: &[Case],
) -> Result<Vec<Vec<f32>>, String> {
    let scheduled: Vec<(&Kernel, u32, cuda::Schedule)> = kernels
        .iter()
        .map(|&(kernel, threads)| (kernel, threads, cuda::Schedule::OnePass))
        .collect();
    run_scheduled(tag, &scheduled, cases)
}

/// [`run_with_threads`] with each kernel's stages laid out by its own schedule.
pub fn run_scheduled(
    tag: &str,
    kernels: &[(&Kernel, u32, cuda::Schedule)],
    cases: &[Case],
) -> Result<Vec<Vec<f32>>, String> {
    let (text, sources) = program(kernels)?;
    let dir = scratch_dir(tag);
    std::fs::write(dir.join("emu.cpp"), text).map_err(|e| e.to_string())?;
    let compiled = Command::new("g++")
        .args([
            "-std=c++20",
            "-O1",
            "-fno-strict-aliasing",
            "-w",
            "emu.cpp",
            "-o",
            "emu",
        ])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("g++: {e}"))?;
    if !compiled.status.success() {
        return Err(format!(
            "g++ failed:\n{}",
            String::from_utf8_lossy(&compiled.stderr)
        ));
    }
    let mut input = Vec::new();
    put(&mut input, cases.len());
    let mut out_lens = Vec::new();
    for case in cases {
        let kernel = kernels[case.which].0;
        let dims = case.dims;
        let grid = case.n.clamp(1, 2);
        let which = case.which * 3 + DTYPES.iter().position(|d| *d == case.dtype).unwrap_or(0);
        for v in [
            which,
            case.n,
            dims.c,
            dims.k,
            dims.d,
            dims.h,
            dims.w,
            grid,
            case.scaled.map_or(0, |s| s.0),
            case.scaled.map_or(0, |s| s.1),
            case.inputs.len(),
            if case.misaligned { case.dtype.size() } else { 0 },
        ] {
            put(&mut input, v);
        }
        for data in &case.inputs {
            let raw = bytes(data, case.dtype);
            put(&mut input, raw.len());
            input.extend_from_slice(&raw);
        }
        let out_len = match case.scaled {
            Some((h, w)) => case.n * h * w,
            None => case.n * dims.len(kernel.output_ty()),
        };
        out_lens.push(out_len + if case.scaled.is_some() { case.n } else { 0 });
        put(&mut input, out_len);
        put(
            &mut input,
            grid * sources[case.which].scratch_floats(|a| dims.size(a)),
        );
    }
    std::fs::write(dir.join("in.bin"), &input).map_err(|e| e.to_string())?;
    let ran = Command::new(dir.join("emu"))
        .args(["in.bin", "out.bin"])
        .current_dir(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !ran.status.success() {
        return Err(format!("emulated kernels failed: {:?}", ran.status));
    }
    let bytes = std::fs::read(dir.join("out.bin")).map_err(|e| e.to_string())?;
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let mut at = 0;
    Ok(out_lens
        .iter()
        .map(|&len| {
            let part = floats.get(at..at + len).unwrap_or_default().to_vec();
            at += len;
            part
        })
        .collect())
}
