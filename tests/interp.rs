//! The reference interpreter on cases computed by hand, and the optimizer checked against it:
//! random well-typed programs give the same values before and after optimization.

mod support;

use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::interp::{eval, InterpError};
use proptest::prelude::*;
use support::{gen, kernel};

fn run(source: &str, dims: Dims, inputs: &[&[f32]]) -> Vec<f32> {
    let unoptimized = eval(&kernel(source, Level::None), dims, inputs).expect("evaluates");
    let optimized = eval(&kernel(source, Level::Exact), dims, inputs).expect("evaluates");
    assert_close(&unoptimized, &optimized);
    optimized
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let close =
            (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-6 + 1e-5 * x.abs().max(y.abs());
        assert!(close, "{a:?} vs {b:?}");
    }
}

const K2_W2: Dims = Dims::new(2, 1, 1, 2);

#[test]
fn gradcam_by_hand() {
    // Channel weights are mean(G): k0 → (1+3)/2 = 2, k1 → -0.5.
    // Pixel 0: 2*1 - 0.5*3 = 0.5; pixel 1: 2*2 - 0.5*4 = 2.
    let a = [1.0, 2.0, 3.0, 4.0];
    let g = [1.0, 3.0, -0.5, -0.5];
    let out = run(
        "cam g(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G) * A))",
        K2_W2,
        &[&a, &g],
    );
    assert_eq!(out, [0.5, 2.0]);
}

#[test]
fn broadcasting_follows_axis_names_and_the_layout_is_k_outermost() {
    // A*s: k0 = [1,2]*2 = [2,4], k1 = [3,-4]*-1 = [-3,4]; max over k = [2,4]; min = [-3,4].
    let a = [1.0, 2.0, 3.0, -4.0];
    let s = [2.0, -1.0];
    assert_eq!(
        run("cam c(A: [k,h,w], s: [k]) = max[k](A * s)", K2_W2, &[&a, &s]),
        [2.0, 4.0]
    );
    assert_eq!(
        run("cam c(A: [k,h,w], s: [k]) = min[k](A * s)", K2_W2, &[&a, &s]),
        [-3.0, 4.0]
    );
    // A [k] weight against an [h,w] map: sum over k of s_k * m.
    let dims = Dims::new(2, 1, 2, 1);
    let out = run(
        "cam c(A: [k,h,w], s: [k]) = sum[k](s * sum[k](A))",
        dims,
        &[&[1.0, 2.0, 10.0, 20.0], &[1.0, 0.5]],
    );
    assert_eq!(out, [16.5, 33.0]);
}

#[test]
fn reductions_by_hand() {
    let dims = Dims::new(1, 1, 1, 2);
    let r = |body: &str, a: [f32; 2]| run(&format!("cam c(A: [k,h,w]) = {body}"), dims, &[&a])[0];
    assert_eq!(r("sum[k](A) * 0 + std[h,w](sum[k](A))", [1.0, 3.0]), 1.0);
    assert_eq!(r("sum[k](A) * 0 + norm[h,w](sum[k](A))", [3.0, 4.0]), 5.0);
    assert_eq!(r("sum[k](A) * 0 + mean[h,w](sum[k](A))", [3.0, 4.0]), 3.5);
    assert!(
        r("sum[k](A) * 0 + max[h,w](sum[k](A))", [f32::NAN, 4.0]).is_nan(),
        "max propagates NaN"
    );
}

/// Groups that lie together in memory (`[h,w]` of `[k,h,w]`) and groups that do not (`k` of
/// `[k,h,w]`): std of k0 = [1,2,3] is √(2/3), of k1 = [10,20,40] is √(1400/9); normalize maps
/// each group's minimum to 0 and maximum to ~1.
#[test]
fn groupwise_operations_over_trailing_and_leading_axes_by_hand() {
    let dims = Dims::new(2, 1, 1, 3);
    let a = [1.0, 2.0, 3.0, 10.0, 20.0, 40.0];
    let (s0, s1) = ((2.0f32 / 3.0).sqrt(), (1400.0f32 / 9.0).sqrt());
    let trailing = run(
        "cam c(A: [k,h,w]) = sum[k]((std[h,w](A) + normalize[h,w](A)) * A)",
        dims,
        &[&a],
    );
    let almost_one = |range: f32| range / (range + 1e-7);
    let normalized = [
        [0.0, 0.5 * almost_one(2.0), almost_one(2.0)],
        [0.0, (10.0 / 30.0) * almost_one(30.0), almost_one(30.0)],
    ];
    let expected: Vec<f32> = (0..3)
        .map(|j| (s0 + normalized[0][j]) * a[j] + (s1 + normalized[1][j]) * a[3 + j])
        .collect();
    assert_close(&trailing, &expected);
    let leading = run("cam c(A: [k,h,w]) = sum[k](normalize[k](A) * A)", dims, &[&a]);
    assert_close(
        &leading,
        &[
            10.0 * almost_one(9.0),
            20.0 * almost_one(18.0),
            40.0 * almost_one(37.0),
        ],
    );
}

#[test]
fn softmax_and_normalize_by_hand() {
    let s = [0.0, 3f32.ln()];
    let out = run(
        "cam c(A: [k,h,w], s: [k]) = sum[k](softmax[k](s) * A)",
        K2_W2,
        &[&[1.0, 0.0, 0.0, 1.0], &s],
    );
    assert_close(&out, &[0.25, 0.75]);
    let dims = Dims::new(1, 1, 1, 3);
    let out = run(
        "cam c(A: [k,h,w]) = normalize[h,w](sum[k](A))",
        dims,
        &[&[1.0, 3.0, 5.0]],
    );
    assert_close(&out, &[0.0, 2.0 / (4.0 + 1e-7), 4.0 / (4.0 + 1e-7)]);
}

#[test]
fn comparisons_logic_and_where_give_ones_and_zeros() {
    let a = [1.0, -2.0, 0.0, 4.0];
    let out = run(
        "cam c(A: [k,h,w]) = sum[k](where(A > 0 && A != 4, A, 10))",
        K2_W2,
        &[&a],
    );
    assert_eq!(out, [11.0, 20.0]);
    let out = run("cam c(A: [k,h,w]) = sum[k]((A < 0) || (A == 4))", K2_W2, &[&a]);
    assert_eq!(out, [0.0, 2.0]);
}

/// x[p,c] = b_p * a_c is rank one: centred, its first principal projection is
/// (b - mean b) * |a|, with the sign of the row sums b_p * sum(a).
#[test]
fn pc1_of_a_rank_one_matrix() {
    let b = [1.0f32, 2.0, 3.0, 4.0];
    for a in [vec![1.0f32, 0.5, 2.0], vec![1.0, 0.5, 2.0, -1.0, 3.0]] {
        let dims = Dims::new(a.len(), 1, 2, 2);
        let x: Vec<f32> = a.iter().flat_map(|ac| b.iter().map(move |bp| ac * bp)).collect();
        let out = run("cam e(A: [k,h,w]) = pc1[k](A)", dims, &[&x]);
        let norm = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        let expected: Vec<f32> = b.iter().map(|bp| (bp - 2.5) * norm).collect();
        assert_close(&out, &expected);
    }
}

#[test]
fn pc1_sign_follows_the_activation_sum() {
    // Flipping every activation's sign flips the principal direction's correlation with the
    // (now negative) sums, so the projection flips too: the map stays "high where active".
    let dims = Dims::new(3, 1, 1, 4);
    let x: Vec<f32> = [1.0f32, 0.5, 2.0]
        .iter()
        .flat_map(|ac| [1.0f32, 2.0, 3.0, 4.0].map(|bp| ac * bp))
        .collect();
    let negated: Vec<f32> = x.iter().map(|v| -v).collect();
    let up = run("cam e(A: [k,h,w]) = pc1[k](A)", dims, &[&x]);
    let down = run("cam e(A: [k,h,w]) = pc1[k](A)", dims, &[&negated]);
    assert!(up[3] > up[0] && down[0] > down[3], "{up:?} {down:?}");
}

/// pc1 over an axis that does not lead the tensor's layout reads the same matrix as pc1 over the
/// leading axis of the tensor with the two axes swapped: positions (k,h,w), features d. (A 3-D
/// CAM is `[d,h,w]`: the `0 * mean` term only broadcasts the `[h,w]` map over d.)
#[test]
fn pc1_over_a_later_axis_is_pc1_of_the_swapped_tensor() {
    let (k, d, h, w) = (3, 4, 2, 3);
    let x: Vec<f32> = (0..k * d * h * w)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.25 + (i % 5) as f32)
        .collect();
    let mut swapped = vec![0.0f32; x.len()];
    for (c, t, p) in (0..k).flat_map(|c| (0..d).flat_map(move |t| (0..h * w).map(move |p| (c, t, p)))) {
        swapped[(t * k + c) * h * w + p] = x[(c * d + t) * h * w + p];
    }
    let later = run(
        "cam e(A: [k,d,h,w]) = sum[k](pc1[d](A)) + 0 * mean[k,h,w](A)",
        Dims::new(k, d, h, w),
        &[&x],
    );
    let leading = run(
        "cam e(A: [k,d,h,w]) = sum[d](pc1[k](A)) + 0 * mean[k,h,w](A)",
        Dims::new(d, k, h, w),
        &[&swapped],
    );
    assert_eq!(later[..h * w], leading[..h * w]);
    assert!(later.iter().any(|v| v.abs() > 0.1), "{later:?}");
}

#[test]
fn wrong_input_sizes_are_errors() {
    let k = kernel("cam g(A: [k,h,w]) = sum[k](A)", Level::Exact);
    let err = eval(&k, K2_W2, &[&[1.0, 2.0, 3.0]]).unwrap_err();
    assert!(
        matches!(
            err,
            InterpError::InputLength {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        eval(&k, K2_W2, &[]).unwrap_err(),
        InterpError::InputCount { .. }
    ));
}

fn inputs_for(dims: Dims, seed: u64) -> Vec<Vec<f32>> {
    // Deterministic values in (-2, 2) with some exact zeros (dead units, like real activations).
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = ((state >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0;
        if (state >> 20).is_multiple_of(5) {
            0.0
        } else {
            v
        }
    };
    let khw = dims.k * dims.h * dims.w;
    vec![
        (0..khw).map(|_| next()).collect(),
        (0..khw).map(|_| next()).collect(),
        (0..dims.k).map(|_| next()).collect(),
        vec![next()],
    ]
}

fn close_enough(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn optimization_preserves_values(program in gen::program(3), k in 1usize..4, h in 1usize..4, w in 1usize..4, seed in any::<u64>()) {
        let dims = Dims::new(k, 1, h, w);
        let data = inputs_for(dims, seed);
        let plain = kernel(&program, Level::None);
        let optimized = kernel(&program, Level::Exact);
        let pick = |k: &Kernel| -> Vec<&[f32]> {
            k.inputs.iter().map(|i| match i.name.as_str() { "A" => &data[0][..], "G" => &data[1][..], "s" | "l" => &data[2][..], _ => &data[3][..] }).collect()
        };
        let a = eval(&plain, dims, &pick(&plain)).expect("evaluates");
        let b = eval(&optimized, dims, &pick(&optimized)).expect("evaluates");
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(close_enough(*x, *y), "{}\nunoptimized {:?}\noptimized   {:?}", program, a, b);
        }
    }
}
