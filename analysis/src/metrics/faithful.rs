//! Feature-level faithfulness (Opti-CAM, Zhang et al. 2024): Average Drop, Increase in
//! Confidence, Average Gain. The image is "masked" at the explained layer, `A' = A ⊙ S`, and
//! both `A` and `A'` go through the network's head: global average pooling, then the linear
//! classifier `head.weight`·x + `head.bias`, then softmax.

use super::{check_finite, Better, FeatureInput, ImageInput, Mean, Metric, MetricError, MetricValue, Need};

/// The linear head after global average pooling: `weight` `[C,k]` row-major, `bias` `[C]`.
/// Build it once per dataset with [`Head::new`], which checks shapes and finiteness.
#[derive(Copy, Clone, Debug)]
pub struct Head<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    k: usize,
}

impl<'a> Head<'a> {
    pub fn new(weight: &'a [f32], bias: &'a [f32], k: usize) -> Result<Head<'a>, MetricError> {
        let classes = bias.len();
        if classes == 0 || k == 0 {
            return Err(MetricError::Invalid(format!(
                "head has {classes} classes and {k} channels; both must be positive"
            )));
        }
        let expected = classes.saturating_mul(k);
        if weight.len() != expected {
            return Err(MetricError::Shape {
                what: format!("tensor `head.weight` [{classes},{k}]"),
                expected,
                got: weight.len(),
            });
        }
        check_finite("tensor `head.weight`", weight)?;
        check_finite("tensor `head.bias`", bias)?;
        Ok(Head { weight, bias, k })
    }

    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    pub fn channels(&self) -> usize {
        self.k
    }

    /// Softmax probability of `target` and of every other class together (`1 − p`, computed
    /// without cancellation), for pooled features `x` `[k]`. Stable: logits are shifted by
    /// their maximum before `exp`.
    fn probability(&self, x: &[f64], target: usize) -> (f64, f64) {
        let logits: Vec<f64> = self
            .weight
            .chunks_exact(self.k)
            .zip(self.bias)
            .map(|(row, &b)| row.iter().zip(x).map(|(&w, &v)| f64::from(w) * v).sum::<f64>() + f64::from(b))
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut own, mut rest) = (0.0, 0.0);
        for (c, &z) in logits.iter().enumerate() {
            let e = (z - max).exp();
            if c == target {
                own += e;
            } else {
                rest += e;
            }
        }
        let total = own + rest;
        (own / total, rest / total)
    }
}

/// The target's probability on the clean activations and on the masked ones.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Confidences {
    /// `p`: softmax of the head on `GAP(A)`.
    pub p: f64,
    /// `1 − p`, without cancellation.
    pub rest: f64,
    /// `p'`: softmax of the head on `GAP(A ⊙ S)`.
    pub masked: f64,
}

/// `p` and `p'` of one image; errors on shapes, a target outside the head, non-finite input.
pub fn confidences(input: &FeatureInput<'_>) -> Result<Confidences, MetricError> {
    let k = input.k;
    let spatial = input.saliency.len();
    if k != input.head.channels() {
        return Err(MetricError::Invalid(format!(
            "activations have {k} channels, tensor `head.weight` has {}",
            input.head.channels()
        )));
    }
    let expected = k.saturating_mul(spatial);
    if spatial == 0 || input.activations.len() != expected {
        return Err(MetricError::Shape {
            what: format!("activations [k={k}, {spatial} positions]"),
            expected,
            got: input.activations.len(),
        });
    }
    let classes = input.head.classes();
    let target = usize::try_from(input.target)
        .ok()
        .filter(|&t| t < classes)
        .ok_or(MetricError::TargetOutOfRange {
            target: input.target,
            classes,
        })?;
    check_finite("activations `A`", input.activations)?;
    check_finite("feature-resolution map S", input.saliency)?;
    let mut pooled = vec![0f64; k];
    let mut pooled_masked = vec![0f64; k];
    for (c, channel) in input.activations.chunks_exact(spatial).enumerate() {
        let (mut sum, mut masked) = (0f64, 0f64);
        for (&a, &s) in channel.iter().zip(input.saliency) {
            sum += f64::from(a);
            masked += f64::from(a) * f64::from(s);
        }
        pooled[c] = sum / spatial as f64;
        pooled_masked[c] = masked / spatial as f64;
    }
    let (p, rest) = input.head.probability(&pooled, target);
    let (masked, _) = input.head.probability(&pooled_masked, target);
    Ok(Confidences { p, rest, masked })
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaithfulnessKind {
    /// `ad_feat`: mean(max(0, p − p') / p) · 100, lower is better.
    AverageDrop,
    /// `ic_feat`: mean(p' > p) · 100, higher is better.
    IncreaseInConfidence,
    /// `ag_feat`: mean(max(0, p' − p) / (1 − p)) · 100, higher is better.
    AverageGain,
}

impl FaithfulnessKind {
    fn name(self) -> &'static str {
        match self {
            FaithfulnessKind::AverageDrop => "ad_feat",
            FaithfulnessKind::IncreaseInConfidence => "ic_feat",
            FaithfulnessKind::AverageGain => "ag_feat",
        }
    }

    fn better(self) -> Better {
        match self {
            FaithfulnessKind::AverageDrop => Better::Lower,
            _ => Better::Higher,
        }
    }

    /// The per-image term (before ·100). `p = 0` gives AD 0 and `1 − p = 0` gives AG 0: the
    /// numerator is then 0 too (p' ≥ 0 = p, resp. p' ≤ 1 = p).
    pub fn term(self, c: &Confidences) -> f64 {
        match self {
            FaithfulnessKind::AverageDrop if c.p > 0.0 => (c.p - c.masked).max(0.0) / c.p,
            FaithfulnessKind::IncreaseInConfidence => f64::from(u8::from(c.masked > c.p)),
            FaithfulnessKind::AverageGain if c.rest > 0.0 => (c.masked - c.p).max(0.0) / c.rest,
            _ => 0.0,
        }
    }
}

/// The accumulator of `ad_feat`, `ic_feat` or `ag_feat`.
#[derive(Clone, Debug)]
pub struct Faithfulness {
    kind: FaithfulnessKind,
    mean: Mean,
}

impl Faithfulness {
    pub fn new(kind: FaithfulnessKind) -> Faithfulness {
        Faithfulness {
            kind,
            mean: Mean::default(),
        }
    }
}

impl Metric for Faithfulness {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn better(&self) -> Better {
        self.kind.better()
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Activations, Need::HeadWeight, Need::HeadBias, Need::Target]
    }

    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let c = match (&input.confidences, &input.feature) {
            (Some(c), _) => *c,
            (None, Some(feature)) => confidences(feature)?,
            (None, None) => {
                return Err(MetricError::MissingInput {
                    metric: self.kind.name(),
                    input: "feature-level input (A, head, target)",
                })
            }
        };
        for (what, x) in [("p", c.p), ("p'", c.masked), ("1 - p", c.rest)] {
            if !(0.0..=1.0).contains(&x) {
                return Err(MetricError::Invalid(format!(
                    "confidence {what} = {x} is not a probability"
                )));
            }
        }
        Ok(Some(self.kind.term(&c)))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.mean.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.mean.value(self.kind.name(), self.kind.better(), self.unit())]
    }

    fn unit(&self) -> f64 {
        100.0
    }
}
