//! The projection of a matrix on its first principal direction (`pc1`, docs/language.md, Eigen-CAM):
//! the columns (features) are centred over the rows (positions), the centred matrix `M` is
//! projected on its first right singular vector `v1` (`M v1`, as pytorch-grad-cam's
//! `get_2d_projection` does with an SVD), and the sign is fixed so that the projection correlates
//! non-negatively with the row sums of the uncentred matrix.

use nalgebra::{DMatrix, DMatrixView, DVector, SymmetricEigen};

/// `m[col * rows + row]`: each column's (feature's) values together, as a `[k,h,w]` tensor holds
/// them for `pc1[k]`; returns one value per row. `m` is centred in place.
pub fn pc1(mut m: Vec<f64>, rows: usize, cols: usize) -> Vec<f64> {
    if rows == 0 || cols == 0 {
        return vec![0.0; rows];
    }
    let mut sums = vec![0.0; rows];
    for column in m.chunks_exact(rows) {
        sums.iter_mut().zip(column).for_each(|(s, x)| *s += x);
    }
    for column in m.chunks_exact_mut(rows) {
        let mean = column.iter().sum::<f64>() / rows as f64;
        column.iter_mut().for_each(|v| *v -= mean);
    }
    let m = DMatrixView::from_slice(&m, rows, cols);
    // M v1 = s1 u1: take the top eigenvector of the smaller Gram matrix (a matrix product).
    let mut projection = if rows <= cols {
        let (value, u) = top_eigenpair(m * m.transpose());
        u.iter().map(|u| u * value.max(0.0).sqrt()).collect::<Vec<_>>()
    } else {
        let (_, v) = top_eigenpair(m.transpose() * m);
        (m * v).iter().copied().collect()
    };
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

/// The largest eigenvalue of a symmetric matrix and a unit eigenvector for it (nalgebra's
/// symmetric QR algorithm, which reads the lower triangle: robust for repeated and zero
/// eigenvalues). A matrix with a non-finite value, or one the algorithm does not settle within
/// its iteration limit, gives NaN.
fn top_eigenpair(matrix: DMatrix<f64>) -> (f64, DVector<f64>) {
    let n = matrix.nrows();
    let failed = || (f64::NAN, DVector::from_element(n, f64::NAN));
    if n == 0 || !matrix.iter().all(|v| v.is_finite()) {
        return failed();
    }
    let Some(eigen) = SymmetricEigen::try_new(matrix, f64::EPSILON, 10_000) else {
        return failed();
    };
    let top = (0..n)
        .max_by(|&i, &j| eigen.eigenvalues[i].total_cmp(&eigen.eigenvalues[j]))
        .unwrap_or(0);
    (
        eigen.eigenvalues[top],
        eigen.eigenvectors.column(top).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::pc1;

    fn assert_close(got: &[f64], expected: &[f64]) {
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g - e).abs() <= 1e-12 * e.abs().max(1.0),
                "{got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn more_positions_than_features() {
        // Features [1,2,3] and [2,4,6] centre to [-1,0,1] and [-2,0,2]: M's first right
        // singular vector is (1,2)/√5, so M v1 = (-√5, 0, √5); the row sums 3, 6, 9 rise the
        // same way, so the sign stays.
        let x = [1.0, 2.0, 3.0, 2.0, 4.0, 6.0];
        let root5 = 5f64.sqrt();
        assert_close(&pc1(x.to_vec(), 3, 2), &[-root5, 0.0, root5]);
    }

    #[test]
    fn no_more_positions_than_features() {
        // Features [1,3], [2,2], [0,4] centre to [-1,1], [0,0], [-2,2]: M Mᵀ = [[5,-5],[-5,5]],
        // top eigenpair 10 and (1,-1)/√2, so the projection is ±(√5, -√5); the row sums 3 and 9
        // rise, so it is (-√5, √5).
        let x = [1.0, 3.0, 2.0, 2.0, 0.0, 4.0];
        let root5 = 5f64.sqrt();
        assert_close(&pc1(x.to_vec(), 2, 3), &[-root5, root5]);
    }

    #[test]
    fn constant_features_project_to_zero_and_non_finite_to_nan() {
        assert_close(&pc1(vec![2.0, 2.0, -1.0, -1.0], 2, 2), &[0.0, 0.0]);
        assert!(pc1(vec![1.0, f64::NAN, 2.0, 3.0], 2, 2)
            .iter()
            .all(|v| v.is_nan()));
    }
}
