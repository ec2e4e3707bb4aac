//! The projection of a matrix on its first principal direction (SPEC §1.3 `pc1`, Eigen-CAM):
//! the columns (features) are centred over the rows (positions), the centred matrix `M` is
//! projected on its first right singular vector `v1` (`M v1`, as pytorch-grad-cam's
//! `get_2d_projection` does with an SVD), and the sign is fixed so that the projection correlates
//! non-negatively with the row sums of the uncentred matrix.

/// `x[row * cols + col]`; returns one value per row.
pub fn pc1(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut m = x.to_vec();
    for c in 0..cols {
        let mean = (0..rows).map(|r| x[r * cols + c]).sum::<f64>() / rows as f64;
        for r in 0..rows {
            m[r * cols + c] -= mean;
        }
    }
    // M v1 = s1 u1: take the top eigenvector of the smaller Gram matrix.
    let mut projection = if rows <= cols {
        let gram = gram(&m, rows, cols, true);
        let (value, u) = top_eigenpair(&gram, rows);
        u.iter().map(|u| u * value.max(0.0).sqrt()).collect::<Vec<_>>()
    } else {
        let gram = gram(&m, rows, cols, false);
        let (_, v) = top_eigenpair(&gram, cols);
        (0..rows)
            .map(|r| (0..cols).map(|c| m[r * cols + c] * v[c]).sum())
            .collect()
    };
    let sums: Vec<f64> = (0..rows)
        .map(|r| x[r * cols..(r + 1) * cols].iter().sum())
        .collect();
    let mean_sum = sums.iter().sum::<f64>() / rows as f64;
    let agreement: f64 = projection
        .iter()
        .zip(&sums)
        .map(|(p, s)| p * (s - mean_sum))
        .sum();
    if agreement < 0.0 {
        projection.iter_mut().for_each(|p| *p = -*p);
    }
    projection
}

/// `M Mᵀ` (rows × rows) when `by_rows`, else `Mᵀ M` (cols × cols).
fn gram(m: &[f64], rows: usize, cols: usize, by_rows: bool) -> Vec<f64> {
    let n = if by_rows { rows } else { cols };
    let at = |i: usize, j: usize| if by_rows { m[i * cols + j] } else { m[j * cols + i] };
    let inner = if by_rows { cols } else { rows };
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..inner).map(|t| at(i, t) * at(j, t)).sum();
            g[i * n + j] = dot;
            g[j * n + i] = dot;
        }
    }
    g
}

/// The largest eigenvalue of a symmetric matrix and a unit eigenvector for it, by cyclic Jacobi
/// rotations (robust for repeated and zero eigenvalues).
fn top_eigenpair(matrix: &[f64], n: usize) -> (f64, Vec<f64>) {
    let mut a = matrix.to_vec();
    let mut vectors = vec![0.0; n * n];
    for i in 0..n {
        vectors[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (vectors[k * n + p], vectors[k * n + q]);
                    vectors[k * n + p] = c * vkp - s * vkq;
                    vectors[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let top = (0..n)
        .max_by(|&i, &j| a[i * n + i].total_cmp(&a[j * n + j]))
        .unwrap_or(0);
    let vector = (0..n).map(|k| vectors[k * n + top]).collect();
    (a[top * n + top], vector)
}
