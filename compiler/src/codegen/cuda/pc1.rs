//! `pc1[axis](x)` on the GPU. The expansion (expand.rs) fixes the sign with ordinary nodes; what
//! is left, the projection of the centred matrix `M` (positions × features) on its first right
//! singular vector, is one stage: `x` is written to scratch in f64 and centred there (centring in
//! f32 moved the projection by 1e-4 at k = 2048 on an H100, against 1e-5 allowed), its smaller Gram
//! matrix (`M Mᵀ` or `Mᵀ M`, like the interpreter's pc1.rs) is built in f64 by the whole block, and
//! its top eigenvector is found by power iteration in f64 from the Gram column with the largest
//! diagonal, in rounds of 8 steps, until a round moves it by less than 1e-13 (at most 20000
//! steps).

use super::stage::{declare, decompose, offset, Stages, IN, IN2};
use crate::axes::{Axis, AxisSet};
use crate::ir::NodeId;
use std::fmt::Write;

pub const PRELUDE: &str = r#"
// pc1: scratch floats for `rows` positions of `cols` features: the projection, then in f64 M,
// the Gram matrix and three vectors, and alignment slack.
__host__ __device__ __forceinline__ long long camc_pc1_floats(long long rows, long long cols) {
    const long long m = rows < cols ? rows : cols;
    return rows + 2 * rows * cols + 2 * m * m + 6 * m + 2;
}

// Block-wide sum (J = 0) or maximum (J = 1) of one value per thread: every thread adds up the
// same values in the same order, so all get the same result (two barriers).
template <int J> __device__ double camc_block_join(double v, double* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    double result = red[0];
    for (int t = 1; t < CAMC_THREADS; ++t) result = J == 0 ? result + red[t] : fmax(result, red[t]);
    __syncthreads();
    return result;
}

// Centres the columns of m (rows x cols, row-major), then writes its projection on its first
// right singular vector, one value per row, into `proj`; the sign is left to the caller. A
// matrix with a non-finite value gives NaN.
__device__ void camc_pc1(double* m, long long rows, long long cols, double* gram, double* u,
                         double* w, double* last, float* proj, double* red) {
    for (long long c = threadIdx.x; c < cols; c += CAMC_THREADS) {
        double mean = 0.0;
        for (long long r = 0; r < rows; ++r) mean += m[r * cols + c];
        mean /= (double)rows;
        for (long long r = 0; r < rows; ++r) m[r * cols + c] -= mean;
    }
    __syncthreads();
    const bool by_rows = rows <= cols;
    const long long n = by_rows ? rows : cols, inner = by_rows ? cols : rows;
    double bad = 0.0;
    for (long long e = threadIdx.x; e < n * n; e += CAMC_THREADS) {
        const long long i = e / n, j = e % n;
        double acc = 0.0;
        for (long long t = 0; t < inner; ++t) {
            const double a = by_rows ? m[i * cols + t] : m[t * cols + i];
            const double b = by_rows ? m[j * cols + t] : m[t * cols + j];
            acc += a * b;
        }
        gram[e] = acc;
        if (!(acc - acc == 0.0)) bad = 1.0;
    }
    bad = camc_block_join<1>(bad, red);
    long long best = 0;
    for (long long i = 1; i < n; ++i) {
        if (gram[i * n + i] > gram[best * n + best]) best = i;
    }
    double local = 0.0;
    for (long long i = threadIdx.x; i < n; i += CAMC_THREADS) {
        u[i] = gram[i * n + best];
        local += u[i] * u[i];
    }
    const double start = bad > 0.0 ? 0.0 : sqrt(camc_block_join<0>(local, red));
    for (long long i = threadIdx.x; i < n; i += CAMC_THREADS) u[i] = start > 0.0 ? u[i] / start : 0.0;
    __syncthreads();
    // Rounds of 8 steps u <- G u / scale, then normalization and the convergence test.
    double scale = 1.0;
    for (int round = 0; round < 2500 && start > 0.0; ++round) {
        for (long long i = threadIdx.x; i < n; i += CAMC_THREADS) last[i] = u[i];
        for (int step = 0; step < 8; ++step) {
            for (long long i = threadIdx.x; i < n; i += CAMC_THREADS) {
                double acc = 0.0;
                for (long long j = 0; j < n; ++j) acc += (double)gram[i * n + j] * u[j];
                w[i] = acc / scale;
            }
            __syncthreads();
            double* const t = u; u = w; w = t;
        }
        local = 0.0;
        for (long long i = threadIdx.x; i < n; i += CAMC_THREADS) local += u[i] * u[i];
        const double norm = sqrt(camc_block_join<0>(local, red));
        if (!(norm > 0.0) || norm - norm != 0.0) break;
        double moved = 0.0;
        for (long long i = threadIdx.x; i < n; i += CAMC_THREADS) {
            u[i] /= norm;
            moved = fmax(moved, fabs(u[i] - last[i]));
        }
        scale *= pow(norm, 0.125);
        if (camc_block_join<1>(moved, red) < 1e-13) break;
    }
    // The eigenvalue (Rayleigh quotient) gives the projection's scale when u is over rows.
    local = 0.0;
    for (long long i = threadIdx.x; i < n && by_rows; i += CAMC_THREADS) {
        double acc = 0.0;
        for (long long j = 0; j < n; ++j) acc += (double)gram[i * n + j] * u[j];
        local += u[i] * acc;
    }
    const double value = camc_block_join<0>(local, red);
    for (long long r = threadIdx.x; r < rows; r += CAMC_THREADS) {
        double p = 0.0;
        if (bad > 0.0) {
            p = CAMC_NAN;
        } else if (start == 0.0) {
            p = 0.0;
        } else if (by_rows) {
            p = u[r] * sqrt(fmax(value, 0.0));
        } else {
            for (long long c = 0; c < cols; ++c) p += m[r * cols + c] * u[c];
        }
        proj[r] = (float)p;
    }
    __syncthreads();
}
"#;

impl Stages<'_> {
    /// Writes the matrix of `x` to scratch (row = position, column = `axis`), then
    /// calls `camc_pc1` to put the projection in the node's slice.
    pub(super) fn pc1(&self, out: &mut String, id: NodeId, axis: Axis, x: NodeId) {
        let xty = self.kernel.node(x).ty;
        let positions = xty.minus(AxisSet::SCALAR.with(axis));
        let rows = super::size_expr(positions);
        let cols = axis.name().to_uppercase();
        let s = format!("s{}", id.0);
        let _ = writeln!(
            out,
            "        {{ // %{} = pc1[{axis}](%{}): {xty} -> {positions}",
            id.0, x.0
        );
        let _ = writeln!(
            out,
            "{IN}const long long rows = {rows}, cols = {cols}, m = rows < cols ? rows : cols;"
        );
        let _ = writeln!(
            out,
            "{IN}double* const matrix = (double*)(((unsigned long long)({s} + rows) + 7) & ~7ULL);"
        );
        let _ = writeln!(out, "{IN}double* const gram = matrix + rows * cols;");
        let _ = writeln!(out, "{IN}double* const u = gram + m * m;");
        let _ = writeln!(
            out,
            "{IN}for (long long e = threadIdx.x; e < rows * cols; e += CAMC_THREADS) {{"
        );
        declare(out, IN2, xty);
        decompose(out, IN2, "e", xty);
        let v = self.values(out, IN2, x);
        let _ = writeln!(
            out,
            "{IN2}matrix[({}) * cols + i_{axis}] = {v};",
            offset(positions)
        );
        let _ = writeln!(out, "{IN}}}\n{IN}__syncthreads();");
        let _ = writeln!(
            out,
            "{IN}camc_pc1(matrix, rows, cols, gram, u, u + m, u + 2 * m, {s}, camc_red);"
        );
        let _ = writeln!(out, "        }}");
    }
}
