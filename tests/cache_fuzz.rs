//! Malformed caches never crash camc: mutated safetensors headers, `.npy` headers and
//! `meta.json` files go through `camc run` and `camc eval`, which must exit 0 (the mutation left
//! a valid cache) or 1 with a message naming a file — never a panic, a signal or a hang.
//! Bounded by `CAMC_CACHE_FUZZ_CASES` (default 64 per property; CI runs 1 000), seeded by
//! `CAMC_CACHE_FUZZ_SEED` (default 0; `random` for new cases).

mod support;

use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;
use support::caches::*;

const N: usize = 2;
const K: usize = 3;
const H: usize = 4;
const W: usize = 5;

/// The same cases on every run (`CAMC_CACHE_FUZZ_SEED=random` explores new ones), so that CI
/// checks what was checked here; a new finding becomes a case of tests/hardening.rs.
fn seed() -> proptest::test_runner::RngSeed {
    match std::env::var("CAMC_CACHE_FUZZ_SEED").ok().as_deref() {
        Some("random") => proptest::test_runner::RngSeed::Random,
        Some(text) => text.parse().map_or(
            proptest::test_runner::RngSeed::Fixed(0),
            proptest::test_runner::RngSeed::Fixed,
        ),
        None => proptest::test_runner::RngSeed::Fixed(0),
    }
}

fn cases() -> u32 {
    std::env::var("CAMC_CACHE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// A valid cache with everything `eval --metric loc,ad_feat` reads, as safetensors bytes.
fn valid_safetensors(dir: &Path) -> Vec<u8> {
    let shape = [N, K, H, W];
    let len = N * K * H * W;
    let path = dir.join("valid.safetensors");
    write_safetensors(
        &path,
        &[
            (
                "A",
                f32s(&shape, &noise(1, len).iter().map(|v| v.abs()).collect::<Vec<_>>()),
            ),
            ("G", f16s(&shape, &noise(2, len))),
            ("boxes", f32s(&[N, 4], &[0.0, 0.0, 4.0, 4.0, 1.0, 1.0, 3.0, 3.0])),
            ("head.weight", f32s(&[2, K], &noise(3, 2 * K))),
            ("head.bias", f32s(&[2], &[0.0, 0.1])),
            ("target", i64s(&[N], &[0, 1])),
        ],
        &[("image_size", "8,10")],
    );
    std::fs::read(path).expect("cache")
}

/// Runs camc on `cache`; fails the property on a crash, a hang or an error naming no file.
fn survives(cache: &Path, names: &[&str]) -> Result<(), TestCaseError> {
    let out = cache.with_file_name("out.npy");
    let runs: [&[&str]; 2] = [
        &[
            "run",
            "gradcam",
            "--backend",
            "interp",
            "-o",
            out.to_str().expect("utf-8"),
        ],
        &["eval", "gradcam", "--metric", "loc,ad_feat", "--backend", "cpu"],
    ];
    for args in runs {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--cache", cache.to_str().expect("utf-8")]);
        let output = support::cli::camc_within(&full, Duration::from_secs(30))
            .ok_or_else(|| TestCaseError::fail(format!("camc {args:?} hangs")))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => {}
            Some(1) => prop_assert!(
                names.iter().any(|n| stderr.contains(n)),
                "camc {args:?}: the error names no file ({names:?}):\n{stderr}"
            ),
            other => {
                return Err(TestCaseError::fail(format!(
                    "camc {args:?} ended with {other:?} (a panic or a signal):\n{stderr}"
                )))
            }
        }
        prop_assert!(!stderr.contains("panicked"), "{stderr}");
    }
    Ok(())
}

/// A mutation of a file's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    /// Byte `at` (modulo the length of the mutated region) set to `value`.
    Set { at: usize, value: u8 },
    /// The file cut to `keep` bytes (modulo its length).
    Cut { keep: usize },
    /// A decimal number in the header replaced by `value`.
    Number { which: usize, value: u64 },
    /// A string in the header replaced by `value`.
    Text { which: usize, value: String },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|keep| Mutation::Cut { keep }),
        (
            any::<usize>(),
            prop_oneof![0u64..10, Just(u32::MAX as u64), Just(u64::MAX), any::<u64>()]
        )
            .prop_map(|(which, value)| Mutation::Number { which, value }),
        (
            any::<usize>(),
            prop_oneof![
                Just(String::new()),
                Just("F64".to_string()),
                Just("U8".to_string()),
                Just("I8".to_string()),
                Just("A".to_string()),
                "[a-zA-Z0-9,.]{0,12}"
            ]
        )
            .prop_map(|(which, value)| Mutation::Text { which, value }),
    ]
}

/// Applies `mutations` to `bytes`, whose first `header` bytes are the region to mutate.
fn mutate(mut bytes: Vec<u8>, header: std::ops::Range<usize>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let region = header.start..header.end.min(bytes.len());
        if region.is_empty() {
            break;
        }
        match m {
            Mutation::Set { at, value } => {
                bytes[region.start + at % region.len()] = *value;
            }
            Mutation::Cut { keep } => bytes.truncate(keep % (bytes.len() + 1)),
            Mutation::Number { which, value } => {
                let numbers = spans(&bytes[region.clone()], |c| c.is_ascii_digit());
                if let Some(&(s, e)) = numbers.get(which % numbers.len().max(1)) {
                    bytes.splice(region.start + s..region.start + e, value.to_string().into_bytes());
                }
            }
            Mutation::Text { which, value } => {
                let strings = spans(&bytes[region.clone()], |c| {
                    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
                });
                if let Some(&(s, e)) = strings.get(which % strings.len().max(1)) {
                    bytes.splice(region.start + s..region.start + e, value.clone().into_bytes());
                }
            }
        }
    }
    bytes
}

/// Byte ranges of the maximal runs of bytes matching `class`.
fn spans(bytes: &[u8], class: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &c) in bytes.iter().chain([&b' ']).enumerate() {
        match (class(c) && i < bytes.len(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        rng_seed: seed(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_safetensors_headers(mutations in prop::collection::vec(mutation(), 1..4)) {
        let dir = temp_dir();
        let valid = valid_safetensors(dir.path());
        let header = 8 + u64::from_le_bytes(valid[..8].try_into().expect("8 bytes")) as usize;
        let path = dir.path().join("fuzzed.safetensors");
        std::fs::write(&path, mutate(valid, 0..header, &mutations)).expect("write");
        survives(&path, &["fuzzed.safetensors"])?;
    }

    #[test]
    fn mutated_npy_headers_and_meta_json(
        file in 0usize..3,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let dir = temp_dir();
        let npy = dir.path().join("fuzzed");
        let shape = [N, K, H, W];
        let a: Vec<f32> = noise(1, N * K * H * W).iter().map(|v| v.abs()).collect();
        let boxes = [0.0, 0.0, 4.0, 4.0, 1.0, 1.0, 3.0, 3.0];
        write_npy_dir(&npy, &[("A", &shape, &a), ("G", &shape, &a), ("boxes", &[N, 4], &boxes)]);
        std::fs::write(npy.join("meta.json"), br#"{"image_size": [8, 10], "model": "m"}"#).expect("meta");
        let name = ["A.npy", "G.npy", "meta.json"][file];
        let path = npy.join(name);
        let bytes = std::fs::read(&path).expect("read");
        let header = if name.ends_with(".npy") {
            10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize
        } else {
            bytes.len()
        };
        std::fs::write(&path, mutate(bytes, 0..header, &mutations)).expect("write");
        survives(&npy, &["fuzzed"])?;
    }
}
