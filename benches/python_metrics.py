"""camc.torch.evaluate vs pytorch-grad-cam's metric classes and a plain torch loop (docs/benchmarks.md).

resnet18 with random weights (seed 0), random images, targets = the argmax class, Grad-CAM at
`layer4[-1]`, metrics ad, ic, ag, deletion, insertion. In one run (one call each, after a
warm-up on two images):
  - the model alone on exactly the inputs those metrics need (per image: the input, the masked
    input, and 101 + 101 deletion/insertion copies), in batches of --batch, under no_grad: the
    floor any implementation pays;
  - camc: `camc.torch.evaluate(model, [layer], ["gradcam"], images, metrics=[...])`, the maps
    included (a forward + backward per image);
  - what a pytorch-grad-cam user writes: its GradCAM for the maps, `DropInConfidence` and
    `IncreaseInConfidence` (one call each, with `ClassifierOutputSoftmaxTarget`), AG from
    `CamMultImageConfidenceChange`'s difference, and a plain torch loop for deletion and
    insertion (per image, its 101 copies batched --batch at a time);
and prints the times, camc's ratio to the floor (target ≤ 1.2) and its speed-up over the other.

    bash scripts/install-torch.sh
    PYTHONPATH=python .venv-py/bin/python benches/python_metrics.py [--images 64] [--size 112]
        [--batch 32] [--threads 2] [--device cpu|cuda]
"""
import argparse
import math
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.metrics.cam_mult_image import (CamMultImageConfidenceChange, DropInConfidence,  # noqa: E402
                                                      IncreaseInConfidence)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget  # noqa: E402

from camc.torch import evaluate  # noqa: E402

METRICS = ["ad", "ic", "ag", "deletion", "insertion"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def floor_passes(model, x, batch):
    """The forward passes of the five metrics, on copies of the right shape."""
    n, _, h, w = x.shape
    step = math.ceil(h * w / 100)
    copies = 2 + 2 * (math.ceil(h * w / step) + 1)
    with torch.no_grad():
        for i in range(n):
            for s in range(0, copies, batch):
                model(x[i:i + 1].expand(min(batch, copies - s), -1, -1, -1).contiguous())


def blur(x):
    r = torch.arange(-5, 6, dtype=torch.float32, device=x.device)
    k = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 50)
    k = (k / k.sum()).expand(x.shape[1], 1, 11, 11)
    return torch.nn.functional.conv2d(x, k, padding=5, groups=x.shape[1])


def plain_deletion_insertion(model, x, maps, classes, batch):
    """Per image: its pixels by decreasing map value, 101 copies, batched."""
    n, c, h, w = x.shape
    step = math.ceil(h * w / 100)
    steps = math.ceil(h * w / step)
    results = {"deletion": [], "insertion": []}
    with torch.no_grad():
        for i in range(n):
            order = torch.argsort(maps[i].reshape(-1), descending=True, stable=True)
            start = blur(x[i:i + 1])[0]
            for name in results:
                curve = []
                copies = []
                for t in range(steps + 1):
                    if name == "deletion":
                        img = x[i].clone().reshape(c, -1)
                        img[:, order[:t * step]] = 0
                    else:
                        img = start.clone().reshape(c, -1)
                        img[:, order[:t * step]] = x[i].reshape(c, -1)[:, order[:t * step]]
                    copies.append(img.reshape(c, h, w))
                    if len(copies) == batch or t == steps:
                        p = torch.softmax(model(torch.stack(copies)), dim=1)[:, classes[i]]
                        curve.extend(p.tolist())
                        copies = []
                y = np.array(curve)
                results[name].append((y.sum() - (y[0] + y[-1]) / 2) / steps)
    return {k: float(np.mean(v)) for k, v in results.items()}


def pytorch_grad_cam_way(model, layer, x, classes, batch):
    out = {}
    cams = []
    with GradCAM(model, [layer]) as cam:
        for s in range(0, x.shape[0], batch):
            cams.append(cam(x[s:s + batch], targets=[ClassifierOutputTarget(c) for c in classes[s:s + batch]]))
    cams = np.concatenate(cams)
    drops, increases, diffs = [], [], []
    for s in range(0, x.shape[0], batch):
        targets = [ClassifierOutputSoftmaxTarget(c) for c in classes[s:s + batch]]
        xb, cb = x[s:s + batch], cams[s:s + batch]
        drops.append(DropInConfidence()(xb, cb, targets, model))
        increases.append(IncreaseInConfidence()(xb, cb, targets, model))
        diffs.append(CamMultImageConfidenceChange()(xb, cb, targets, model))
    out["ad_abs"] = float(np.mean(np.concatenate(drops)))
    out["ic"] = float(np.mean(np.concatenate(increases)) * 100)
    out.update(plain_deletion_insertion(model, x, torch.from_numpy(cams).to(x.device), classes, batch))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    layer = model.layer4[-1]
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        classes = model(x).argmax(dim=1).tolist()
    print(f"resnet18 (random weights), {args.images} images {args.size}x{args.size}, batch {args.batch}, "
          f"device {device}, {args.threads} threads; metrics {', '.join(METRICS)}")
    evaluate(model, [layer], ["gradcam"], x[:2], targets=classes[:2], metrics=METRICS, batch_size=args.batch)
    floor, _ = timed(lambda: floor_passes(model, x, args.batch), device)
    ours, rows = timed(lambda: evaluate(model, [layer], ["gradcam"], x, targets=classes, metrics=METRICS,
                                        batch_size=args.batch), device)
    theirs, ref = timed(lambda: pytorch_grad_cam_way(model, layer, x, classes, args.batch), device)
    values = {r["metric"]: r["value"] for r in rows}
    print(f"{'model alone (the metrics passes)':<44} {floor:8.2f} s")
    print(f"{'camc.torch.evaluate (maps included)':<44} {ours:8.2f} s  {ours / floor:.2f}x the floor")
    print(f"{'pytorch-grad-cam classes + torch loop':<44} {theirs:8.2f} s  {theirs / floor:.2f}x the floor")
    print(f"camc speed-up: {theirs / ours:.2f}x")
    print(f"values camc: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    print(f"values reference: ic {ref['ic']:.4f}, deletion {ref['deletion']:.4f}, insertion {ref['insertion']:.4f}")


if __name__ == "__main__":
    main()
