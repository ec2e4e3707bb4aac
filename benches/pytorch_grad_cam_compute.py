"""pytorch-grad-cam's post-backward compute, timed on tensors already in memory.

Used by `cargo bench --bench cpu` (which runs this file with the tensors it just timed camc on)
and imported by vs_pytorch_grad_cam.py.

    python benches/pytorch_grad_cam_compute.py A.npy G.npy SIZE REPEATS DIR METHOD...

loads the activations and gradients, times each METHOD (gradcam, gradcampp, eigencam) best of REPEATS,
compares with camc's result DIR/METHOD.npy, and prints one JSON line per method:
{"method", "ms", "max_abs_diff"}. Exits 3 when torch or grad-cam is missing.
"""
import json
import sys
import time

import numpy as np

try:
    import torch
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.image import scale_cam_image
except ImportError as error:  # reported by the caller
    if __name__ == "__main__":
        print(f"pytorch-grad-cam is not installed ({error}); scripts/install-torch.sh installs it", file=sys.stderr)
        sys.exit(3)
    raise

METHODS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "eigencam": EigenCAM}


def grad_cam_compute(cam, activations, grads, size):
    """What pytorch-grad-cam does after backward for one target layer: `get_cam_image` (its
    `get_cam_weights` + weighted sum), ReLU, `scale_cam_image` to size x size, and the multi-layer
    aggregation (max(., 0), mean over the one layer, scale again)."""
    weights_cam = cam.get_cam_image(None, None, None, activations, grads, False)
    weights_cam = np.maximum(weights_cam, 0)
    scaled = scale_cam_image(weights_cam, (size, size))
    return scale_cam_image(np.maximum(scaled[:, None], 0).mean(axis=1))


def compare(method, got, expected):
    """The largest difference between camc's maps and pytorch-grad-cam's, as text. Eigen-CAM's
    sign is LAPACK's choice in pytorch-grad-cam and fixed in camc (stdlib/eigencam.cam), so
    there the maps of an image either agree or are unrelated: the difference is over the images
    that agree (within 1e-3), with their count."""
    per_image = np.abs(got - expected).reshape(len(got), -1).max(axis=1)
    if method != "eigencam":
        return f"max |diff| {per_image.max():.2e}"
    agree = per_image[per_image < 1e-3]
    largest = f"{agree.max():.2e}" if len(agree) else "-"
    return f"max |diff| {largest} on the {len(agree)}/{len(got)} images whose SVD sign agrees"


def camera(method):
    """A pytorch-grad-cam object of the method's class (its model is never run)."""
    layer = torch.nn.Conv2d(1, 1, 1)
    return METHODS[method](model=torch.nn.Sequential(layer), target_layers=[layer])


def best(repeats, f, prepare=None):
    """The shortest of `repeats` timed calls of `f` (and its last result); `prepare` runs
    before each call, untimed."""
    times = []
    out = None
    for _ in range(repeats):
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv):
    a_path, g_path, size, repeats, directory, *methods = argv
    a, g = np.load(a_path), np.load(g_path)
    size, repeats = int(size), int(repeats)
    for method in methods:
        cam = camera(method)
        seconds, expected = best(repeats, lambda: grad_cam_compute(cam, a, g, size))
        got = np.load(f"{directory}/{method}.npy")
        print(json.dumps({"method": method, "ms": seconds * 1e3, "diff": compare(method, got, expected)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
