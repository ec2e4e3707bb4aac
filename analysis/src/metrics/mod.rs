//! Evaluation metrics (docs/metrics.md) as streaming accumulators over per-image inputs.
//!
//! Every metric implements [`Metric`]: `add` one image at a time (so `eval` and `search` stream
//! over batches), then `finish` for the values. The inputs are plain slices: the post-processed
//! heatmap at input size ([`Map`], values in [0,1]), the image's ground-truth boxes, the
//! feature-level inputs of the faithfulness metrics ([`FeatureInput`]) and, for `robust`, the
//! heatmap of the same image from a perturbed cache. Which of these each metric needs is
//! declared by [`Metric::needs`] ([`Need`]), so the CLI can check a cache before any work.
//!
//! Formulas, directions and edge-case rules are in `docs/metrics.md`.

mod boxes;
mod faithful;
mod loc;
mod pixel;
mod robust;

pub(crate) use boxes::clipped;
pub use boxes::{boxes_per_image, BBox, PixelRange};
pub use faithful::{confidences, Confidences, Faithfulness, FaithfulnessKind, Head};
pub use loc::{largest_component_box, Loc, LOC_ACC_IOU, LOC_THRESHOLD};
pub use pixel::IOU_THRESHOLD;
pub use pixel::{argmax, Energy, Iou, Pointing};
pub use robust::{pearson, Complexity, Robust};

/// Whether a larger or a smaller value is better.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Better {
    /// `higher` or `lower`, as in `eval --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }
}

/// One reported value of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricValue {
    /// `loc`, `loc_acc`, `iou`, ...
    pub name: &'static str,
    /// The mean over the scored images; `None` when no image could be scored (every image was
    /// skipped, or none was added). Never NaN.
    pub value: Option<f64>,
    pub better: Better,
    /// Images that were scored.
    pub images: usize,
    /// Images that were skipped (e.g. no ground-truth box); see `docs/metrics.md`.
    pub skipped: usize,
}

/// An input a metric needs besides the heatmap.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Cache tensor `boxes` (with `box_count` when `[n,m,4]`).
    Boxes,
    /// Cache tensor `A`.
    Activations,
    /// Cache tensor `head.weight`.
    HeadWeight,
    /// Cache tensor `head.bias`.
    HeadBias,
    /// Cache tensor `target`.
    Target,
    /// A second cache of the same images with perturbed inputs (`--perturbed CACHE2`).
    Perturbed,
}

impl Need {
    /// The cache tensor's name, or `None` for [`Need::Perturbed`], which is a second cache.
    pub fn tensor(self) -> Option<&'static str> {
        match self {
            Need::Boxes => Some("boxes"),
            Need::Activations => Some("A"),
            Need::HeadWeight => Some("head.weight"),
            Need::HeadBias => Some("head.bias"),
            Need::Target => Some("target"),
            Need::Perturbed => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("unknown metric `{name}`{hint}; valid metrics: {}", METRIC_NAMES.join(", "))]
    UnknownMetric { name: String, hint: String },
    /// An image-level metric, which re-runs the model: not computable from a cache alone.
    #[error("{}", needs_model_message(name))]
    NeedsModel { name: String },
    #[error("no metric given; valid metrics: {}", METRIC_NAMES.join(", "))]
    NoMetric,
    #[error("metric `{metric}` needs tensor `{tensor}`, which cache {cache} does not have")]
    MissingTensor {
        metric: &'static str,
        tensor: &'static str,
        cache: String,
    },
    #[error("metric `{metric}` needs a perturbed cache of the same images (--perturbed CACHE2)")]
    MissingPerturbed { metric: &'static str },
    #[error("metric `{metric}`: no {input} was given for this image")]
    MissingInput {
        metric: &'static str,
        input: &'static str,
    },
    #[error("{what}: expected {expected} values, got {got}")]
    Shape {
        what: String,
        expected: usize,
        got: usize,
    },
    #[error("{what} holds a non-finite value ({value})")]
    NonFinite { what: &'static str, value: f64 },
    #[error("target class {target} is out of range: the head has {classes} classes")]
    TargetOutOfRange { target: i64, classes: usize },
    #[error("{0}")]
    Invalid(String),
}

/// A heatmap of one image: row-major `[h,w]`.
#[derive(Copy, Clone, Debug)]
pub struct Map<'a> {
    pub data: &'a [f32],
    pub h: usize,
    pub w: usize,
}

impl<'a> Map<'a> {
    /// Checks that `data` holds `h·w` values, `h·w > 0`, and every value is finite.
    pub fn new(data: &'a [f32], h: usize, w: usize) -> Result<Map<'a>, MetricError> {
        let expected = h.saturating_mul(w);
        if data.len() != expected || expected == 0 {
            return Err(MetricError::Shape {
                what: format!("heatmap [{h},{w}]"),
                expected,
                got: data.len(),
            });
        }
        check_finite("heatmap", data)?;
        Ok(Map { data, h, w })
    }

    pub fn get(&self, y: usize, x: usize) -> f32 {
        self.data[y * self.w + x]
    }
}

/// Everything a metric may read about one image. Fields a metric does not need may be `None`.
#[derive(Copy, Clone, Debug)]
pub struct ImageInput<'a> {
    /// The post-processed heatmap at input size (docs/run.md), values in [0,1].
    pub map: Map<'a>,
    /// Ground-truth boxes of this image in input pixels: `None` when the cache has none,
    /// `Some(&[])` for an image without boxes (skipped and counted by box metrics).
    pub boxes: Option<&'a [BBox]>,
    /// Inputs of `ad_feat`, `ic_feat`, `ag_feat`.
    pub feature: Option<FeatureInput<'a>>,
    /// The same image's post-processed heatmap from the perturbed cache (`robust`).
    pub perturbed: Option<Map<'a>>,
    /// `p` and `p'` already computed with [`confidences`] from `feature`: when several of
    /// `ad_feat`, `ic_feat`, `ag_feat` are evaluated, the caller computes them once per image and each metric
    /// uses them instead of recomputing (`feature` may then be `None`).
    pub confidences: Option<Confidences>,
}

impl<'a> ImageInput<'a> {
    /// An input with only the heatmap.
    pub fn new(map: Map<'a>) -> ImageInput<'a> {
        ImageInput {
            map,
            boxes: None,
            feature: None,
            perturbed: None,
            confidences: None,
        }
    }
}

/// Feature-level inputs of one image for the faithfulness metrics.
#[derive(Copy, Clone, Debug)]
pub struct FeatureInput<'a> {
    /// Activations `A`, `[k, spatial]` row-major (spatial = `h·w`, or `d·h·w`).
    pub activations: &'a [f32],
    /// Number of channels `k`.
    pub k: usize,
    /// The map `S` at feature resolution, min-max normalized to [0,1]: `spatial` values.
    pub saliency: &'a [f32],
    pub head: Head<'a>,
    /// The class explained (cache tensor `target`).
    pub target: i64,
}

/// A streaming metric: `add` images one at a time, `finish` for the values (the first value
/// is the metric's primary one, e.g. `loc` = mean IoU before `loc_acc`).
pub trait Metric: Send + Sync {
    /// The name accepted by [`metric_by_name`].
    fn name(&self) -> &'static str;
    /// The direction of the primary value.
    fn better(&self) -> Better;
    /// Inputs besides the heatmap that [`Metric::add`] reads.
    fn needs(&self) -> &'static [Need];
    /// One image's score, computed without touching the accumulator (so that images can be
    /// scored in parallel and accumulated in order): `None` for an image the metric cannot
    /// score by definition (no box), which is counted as skipped; malformed input is an error.
    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError>;
    /// Accumulates one image's score, in image order.
    fn add_score(&mut self, score: Option<f64>);
    /// Scores one image and accumulates it; an error leaves the accumulator unchanged.
    fn add(&mut self, input: &ImageInput<'_>) -> Result<(), MetricError> {
        let score = self.score(input)?;
        self.add_score(score);
        Ok(())
    }
    /// The values so far (does not reset).
    fn finish(&self) -> Vec<MetricValue>;
    /// The factor from an image's [`Metric::score`] to the unit the primary value is reported
    /// in (100 for the percentages `ad_feat`, `ic_feat`, `ag_feat`).
    fn unit(&self) -> f64 {
        1.0
    }
}

/// Every metric name, in documentation order.
pub const METRIC_NAMES: &[&str] = &[
    "loc",
    "iou",
    "pointing",
    "energy",
    "ad_feat",
    "ic_feat",
    "ag_feat",
    "robust",
    "complexity",
];

/// The metrics that re-run the model on perturbed inputs (`camc.torch.evaluate` in Python,
/// docs/metrics.md): a cache alone cannot give them.
pub const IMAGE_METRIC_NAMES: &[&str] = &[
    "ad",
    "ic",
    "ag",
    "deletion",
    "insertion",
    "road",
    "coherency",
    "adcc",
];

fn needs_model_message(name: &str) -> String {
    let call = format!(
        "camc.torch.evaluate(model, target_layers, programs, images, metrics=[\"{name}\"]) in Python \
         (docs/metrics.md)"
    );
    let call = if name == "coherency" || name == "adcc" {
        call
    } else {
        format!("{call}; a search against it is camc.torch.search(model, target_layers, images, metric=\"{name}\")")
    };
    if ["ad", "ic", "ag"].contains(&name) {
        format!(
            "metric `{name}` re-runs the model on masked images, which a cache cannot; from a cache, \
             camc computes the feature-level `{name}_feat` (the map masks the activations, read \
             through the linear head after global average pooling); the image-level `{name}` is {call}"
        )
    } else {
        format!("metric `{name}` re-runs the model on perturbed images, which a cache cannot; it is {call}")
    }
}

/// A fresh accumulator for a metric name (case-sensitive, surrounding blanks ignored).
pub fn metric_by_name(name: &str) -> Result<Box<dyn Metric>, MetricError> {
    let metric: Box<dyn Metric> = match name.trim() {
        "loc" => Box::new(Loc::default()),
        "iou" => Box::new(Iou::default()),
        "pointing" => Box::new(Pointing::default()),
        "energy" => Box::new(Energy::default()),
        "ad_feat" => Box::new(Faithfulness::new(FaithfulnessKind::AverageDrop)),
        "ic_feat" => Box::new(Faithfulness::new(FaithfulnessKind::IncreaseInConfidence)),
        "ag_feat" => Box::new(Faithfulness::new(FaithfulnessKind::AverageGain)),
        name if IMAGE_METRIC_NAMES.contains(&name) => {
            return Err(MetricError::NeedsModel {
                name: name.to_string(),
            })
        }
        "robust" => Box::new(Robust::default()),
        "complexity" => Box::new(Complexity::default()),
        other => {
            let lower = other.to_ascii_lowercase();
            let hint = if other == "loc_acc" {
                " (`loc_acc` is reported by metric `loc`)".to_string()
            } else if METRIC_NAMES.contains(&lower.as_str()) {
                format!(" (did you mean `{lower}`?)")
            } else {
                String::new()
            };
            return Err(MetricError::UnknownMetric {
                name: other.to_string(),
                hint,
            });
        }
    };
    Ok(metric)
}

/// Parses `--metric M[,M...]`: each name once, in the order given.
pub fn metrics_by_names(list: &str) -> Result<Vec<Box<dyn Metric>>, MetricError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut metrics = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        metrics.push(metric_by_name(name)?);
    }
    if metrics.is_empty() {
        return Err(MetricError::NoMetric);
    }
    Ok(metrics)
}

/// Checks that a cache can feed a metric: `has_tensor(name)` says whether cache `cache` holds
/// a tensor, `has_perturbed` whether a perturbed cache was given. The first missing input is
/// the error ("metric `ad_feat` needs tensor `head.weight`, which cache X does not have").
pub fn check_needs(
    metric: &dyn Metric,
    cache: &str,
    has_tensor: impl Fn(&str) -> bool,
    has_perturbed: bool,
) -> Result<(), MetricError> {
    for need in metric.needs() {
        match need.tensor() {
            Some(tensor) if !has_tensor(tensor) => {
                return Err(MetricError::MissingTensor {
                    metric: metric.name(),
                    tensor,
                    cache: cache.to_string(),
                })
            }
            None if !has_perturbed => {
                return Err(MetricError::MissingPerturbed {
                    metric: metric.name(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// A running mean with a count of skipped images.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mean {
    sum: f64,
    images: usize,
    skipped: usize,
}

impl Mean {
    pub(crate) fn push(&mut self, x: f64) {
        self.sum += x;
        self.images += 1;
    }

    pub(crate) fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Adds a score, or counts a skipped image.
    pub(crate) fn add(&mut self, score: Option<f64>) {
        match score {
            Some(x) => self.push(x),
            None => self.skip(),
        }
    }

    /// The mean times `scale`.
    pub(crate) fn value(&self, name: &'static str, better: Better, scale: f64) -> MetricValue {
        let value = (self.images > 0).then(|| self.sum / self.images as f64 * scale);
        MetricValue {
            name,
            value: value.filter(|v| v.is_finite()),
            better,
            images: self.images,
            skipped: self.skipped,
        }
    }
}

/// An error if any value is not finite.
pub(crate) fn check_finite(what: &'static str, data: &[f32]) -> Result<(), MetricError> {
    // Without an early exit the common, all-finite case vectorizes.
    if data.iter().fold(true, |finite, v| finite & v.is_finite()) {
        return Ok(());
    }
    match data.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(MetricError::NonFinite {
            what,
            value: f64::from(*v),
        }),
        None => Ok(()),
    }
}

/// The image's boxes, or the error that the metric needs them.
pub(crate) fn need_boxes<'a>(
    metric: &'static str,
    input: &ImageInput<'a>,
) -> Result<&'a [BBox], MetricError> {
    input.boxes.ok_or(MetricError::MissingInput {
        metric,
        input: "ground-truth boxes",
    })
}
