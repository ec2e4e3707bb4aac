"""camc.torch: camc programs on PyTorch models, a drop-in for pytorch-grad-cam's CAM classes.

    from camc.torch import CAM
    cam = CAM(model, target_layers=[model.layer4[-1]], program="gradcampp", reshape_transform=None)
    maps = cam(input_tensor, targets=None)  # torch.float32 [n, H, W] on input_tensor's device

    from camc.torch import evaluate              # the metrics that re-run the model
    rows = evaluate(model, [model.layer4[-1]], ["gradcam", "gradcampp"], images,
                    metrics=["ad", "ic", "ag", "deletion", "insertion"])

`import camc` does not import torch; `import camc.torch` does. The building blocks are public
for the exporter and for custom pipelines: `LayerTap` (layer capture), `score_cam_scores`,
`ablation_scores`, `hessian_vector_product`, `classifier_weights` with `find_head` (the model-dependent inputs
of Score-CAM, Ablation-CAM, ShapleyCAM and the original CAM), `aggregate_layers`
(pytorch-grad-cam's multi-layer aggregation) and the targets `ClassifierOutputTarget`,
`ClassifierOutputSoftmaxTarget`.
"""

from ._cam import CAM, aggregate_layers
from ._capture import LayerTap
from ._evaluate import MODEL_METRICS, evaluate
from ._optimize import optimize
from ._recipro import reciprocam_scores
from ._search import SEARCH_METRICS, search
from ._method_inputs import (
    HessianResult,
    ablation_scores,
    classifier_weights,
    find_head,
    hessian_vector_product,
    score_cam_scores,
)
from ._targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget, resolve_targets

__all__ = [
    "CAM",
    "evaluate",
    "optimize",
    "MODEL_METRICS",
    "search",
    "SEARCH_METRICS",
    "aggregate_layers",
    "LayerTap",
    "score_cam_scores",
    "reciprocam_scores",
    "ablation_scores",
    "hessian_vector_product",
    "HessianResult",
    "classifier_weights",
    "find_head",
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
    "resolve_targets",
]
