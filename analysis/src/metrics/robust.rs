//! `robust` (Pearson correlation with the map of a perturbed input) and `complexity`.

use super::{Better, ImageInput, Mean, Metric, MetricError, MetricValue, Need};

/// Pearson correlation of two equally long maps, in f64. When a map is constant its
/// correlation is undefined; the rule is: both constant → 1 if they are equal, else 0; one
/// constant → 0 (no linear relationship). Empty slices give 1 (two equal, empty maps).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    if n == 0 {
        return 1.0;
    }
    let mean = |x: &[f32]| x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut cov, mut va, mut vb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        cov += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    let constant = |x: &[f32]| x.iter().all(|&v| v == x[0]);
    match (constant(a), constant(b)) {
        (true, true) => f64::from(u8::from(a[0] == b[0])),
        (true, false) | (false, true) => 0.0,
        (false, false) => {
            let r = cov / (va.sqrt() * vb.sqrt());
            if r.is_finite() {
                r.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        }
    }
}

/// Mean Pearson correlation between each image's map and its perturbed twin.
#[derive(Clone, Debug, Default)]
pub struct Robust(Mean);

impl Metric for Robust {
    fn name(&self) -> &'static str {
        "robust"
    }

    fn better(&self) -> Better {
        Better::Higher
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Perturbed]
    }

    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let other = input.perturbed.ok_or(MetricError::MissingInput {
            metric: "robust",
            input: "heatmap from the perturbed cache",
        })?;
        if (other.h, other.w) != (input.map.h, input.map.w) {
            return Err(MetricError::Invalid(format!(
                "perturbed heatmap is {}x{}, the heatmap is {}x{}",
                other.h, other.w, input.map.h, input.map.w
            )));
        }
        Ok(Some(pearson(input.map.data, other.data)))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.0.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.0.value("robust", Better::Higher, 1.0)]
    }
}

/// Mean value of the normalized map: the fraction of the image the map covers (lower is
/// sparser).
#[derive(Clone, Debug, Default)]
pub struct Complexity(Mean);

impl Metric for Complexity {
    fn name(&self) -> &'static str {
        "complexity"
    }

    fn better(&self) -> Better {
        Better::Lower
    }

    fn needs(&self) -> &'static [Need] {
        &[]
    }

    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let data = input.map.data;
        let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
        Ok(Some(sum / data.len() as f64))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.0.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.0.value("complexity", Better::Lower, 1.0)]
    }
}
