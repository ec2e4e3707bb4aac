#!/usr/bin/env python3
"""Compare the golden outputs (make_golden.py) with pytorch-grad-cam's own code.

For every cache in this folder, runs the library's classes on the cached tensors the way
BaseCAM.compute_cam_per_layer + aggregate_multi_layers do for one target layer:

    cam = obj.get_cam_image(input_tensor, target_layer, targets, activations, grads, False)
    cam = np.maximum(cam, 0)                       # -> compared with <method>.raw
    scaled = scale_cam_image(cam, (W, H))          # min-max + cv2.resize
    heatmap = obj.aggregate_multi_layers([scaled[:, None, :]])   # -> <method>.heatmap

The objects are made without BaseCAM.__init__ (it needs a model and registers hooks); what
each method's get_cam_weights needs beyond activations and gradients is given as a small
torch model or tensor (see the comments at each method). Exit status 0 when everything that
is comparable agrees to 1e-4 (max abs); documented, deliberate differences are reported, not
counted as failures.

    pip install torch grad-cam ...   (see README.md)
    python3 tests/golden/check_pytorch_grad_cam.py
"""

import os
import sys
import types

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

try:
    import torchvision  # noqa: F401  (pytorch_grad_cam imports it; nothing here uses it)
except Exception:  # pragma: no cover - stub when torchvision is not installed
    tv = types.ModuleType("torchvision")
    tvt = types.ModuleType("torchvision.transforms")
    tvtf = types.ModuleType("torchvision.transforms.functional")
    for name in ("Compose", "Normalize", "ToTensor"):
        setattr(tvt, name, object)
    tvtf.resize = None
    tv.transforms = tvt
    tvt.functional = tvtf
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt,
                        "torchvision.transforms.functional": tvtf})
    print("note: torchvision not installed; stubbed (pytorch_grad_cam only imports it)")

import tqdm  # noqa: E402

tqdm.tqdm = lambda it, *a, **k: it  # ScoreCAM / AblationCAM progress bars: keep the log readable

import torch  # noqa: E402
import pytorch_grad_cam as pgc  # noqa: E402
from pytorch_grad_cam.ablation_layer import AblationLayer  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4


class NoHooks:
    """Stands in for ActivationsAndGradients (BaseCAM.__del__ calls release())."""
    reshape_transform = None

    def release(self):
        pass


def bare(cls, **attrs):
    obj = cls.__new__(cls)
    obj.activations_and_grads = NoHooks()
    obj.__dict__.update(attrs)
    return obj


def post(obj, cam, size, clip=True):
    """compute_cam_per_layer after get_cam_image, then aggregate_multi_layers."""
    if clip:
        cam = np.maximum(cam, 0)
    H, W = size
    scaled = scale_cam_image(cam, (W, H))
    return cam, obj.aggregate_multi_layers([scaled[:, None, :]])


class Scale1(torch.nn.Module):
    """The target layer: passes the cached activations through (the model input is A)."""

    def forward(self, x):
        return x * 1.0


class LinearHead(torch.nn.Module):
    """y[b, j] = bias_j + sum_k c[j,k] * sum_hw a[b,k]: class j is image j's target."""

    def __init__(self, c, bias):
        super().__init__()
        self.c = torch.from_numpy(c)
        self.bias = torch.from_numpy(bias)

    def forward(self, a):
        s = a.double().sum(dim=(2, 3))
        return (self.bias[None, :] + s @ self.c.T).float()


class ScoreReplay(torch.nn.Module):
    """Stands in for the model on ScoreCAM's masked inputs: returns the cached scores in the
    order the library asks for them (image by image, channel by channel)."""

    def __init__(self, score):
        super().__init__()
        self.values = list(np.asarray(score, dtype=np.float32).ravel())
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b = x.shape[0]
        out, self.values = self.values[:b], self.values[b:]
        return torch.tensor(out, dtype=torch.float32)[:, None]


def library_outputs(c, size):
    """method -> (raw [n,h,w], heatmap [n,H,W], notes) from pytorch-grad-cam."""
    A, G = c["A"], c["G"]
    n, k, h, w = A.shape
    H, W = size
    res = {}

    simple = {
        "gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM,
        "gradcam_elementwise": pgc.GradCAMElementWise,
        "eigencam": pgc.EigenCAM, "eigengradcam": pgc.EigenGradCAM,
    }
    for m, cls in simple.items():
        obj = bare(cls)
        cam = obj.get_cam_image(None, None, None, A.copy(), G.copy(), False)
        res[m] = post(obj, cam, size) + ([],)

    obj = bare(pgc.FEM, k=2)
    res["fem"] = post(obj, obj.get_cam_image(None, None, None, A.copy(), None, False), size) + ([],)

    # fc_cam: pytorch-grad-cam has no CAM class. With a GAP + linear head the gradient of the
    # target logit is W / (h*w) at every pixel, so GradCAM's map is relu(fc_cam) / (h*w);
    # the un-clipped fc_cam map goes through the library's own post-processing below.
    obj = bare(pgc.GradCAM)
    Gw = np.broadcast_to(c["W"][:, :, None, None] / (h * w), A.shape).astype(np.float32)
    raw_gc, _ = post(obj, obj.get_cam_image(None, None, None, A.copy(), Gw, False), size)
    res["fc_cam(relu, via GradCAM)"] = (raw_gc * (h * w), None, [])

    # ScoreCAM: the library's get_cam_weights runs the model on the masked inputs; the cached
    # scores stand for those forward passes (ScoreReplay), the rest is the library's code.
    obj = bare(pgc.ScoreCAM, model=ScoreReplay(c["score"]), device="cpu", batch_size=16)
    targets = [ClassifierOutputTarget(0) for _ in range(n)]
    cam = obj.get_cam_image(torch.ones(n, 1, H, W), None, targets, A.copy(), None, False)
    res["scorecam"] = post(obj, cam, size) + ([],)

    # AblationCAM: a real model, target layer (Scale1) + a linear head built so that its clean
    # logit is `logit` and its logit with channel k zeroed is `ablation[:, k]`; the library's
    # AblationLayer does the ablation. It zeroes a channel only when the image's minimum
    # activation is 0; otherwise it uses min - 1e7 (and, for several channels in one batch,
    # the minimum of the already-ablated batch), so images without a zero are not comparable.
    S = A.astype(np.float64).sum(axis=(2, 3))
    logit, abl = c["logit"].astype(np.float64), c["ablation"].astype(np.float64)
    coef = np.where(S != 0, (logit[:, None] - abl) / np.where(S != 0, S, 1.0), 0.0)
    bias = logit - (coef * S).sum(axis=1)
    layer = Scale1()
    model = torch.nn.Sequential(layer, LinearHead(coef, bias))
    obj = bare(pgc.AblationCAM, model=model, device="cpu", batch_size=4,
               ablation_layer=AblationLayer(), ratio_channels_to_ablate=1.0)
    targets = [ClassifierOutputTarget(i) for i in range(n)]
    cam = obj.get_cam_image(torch.from_numpy(A.copy()), layer, targets, A.copy(), None, False)
    notes = [f"image {i}: min activation {A[i].min():.3g} != 0, the library ablates with "
             f"min - 1e7, not comparable" for i in range(n) if A[i].min() != 0]
    res["ablationcam"] = post(obj, cam, size) + (notes,)

    # ShapleyCAM: activations are a leaf tensor; grads are a function of them whose value is G
    # and whose Hessian-vector product with the activations is H:
    #   grads_i = G_i - A_i <H_i,A_i>/|A_i|^2 + A_i <H_i,act_i>/|A_i|^2
    # (d grads_i / d act_i = A_i H_i^T / |A_i|^2, so J^T A_i = H_i; H_i = 0 where A_i = 0).
    act = torch.from_numpy(A.astype(np.float64)).requires_grad_(True)
    A64, H64, G64 = (torch.from_numpy(c[x].astype(np.float64)) for x in ("A", "H", "G"))
    nrm = (A64 ** 2).sum(dim=(1, 2, 3))
    inv = torch.where(nrm > 0, 1.0 / torch.where(nrm > 0, nrm, 1.0), 0.0)[:, None, None, None]
    const = G64 - A64 * (H64 * A64).sum(dim=(1, 2, 3))[:, None, None, None] * inv
    grads = const + A64 * (H64 * act).sum(dim=(1, 2, 3))[:, None, None, None] * inv
    obj = bare(pgc.ShapleyCAM, device="cpu")
    cam = obj.get_cam_image(None, None, None, act, grads, False)
    res["shapleycam"] = post(obj, np.float32(cam), size) + ([],)
    return res


def main():
    failures = 0
    for suffix in ("", "_k1", "_hw1"):
        cpath = os.path.join(HERE, f"cache{suffix}.safetensors")
        epath = os.path.join(HERE, f"expected{suffix}.safetensors")
        c = load_file(cpath)
        e = load_file(epath)
        with safe_open(cpath, "np") as f:
            size = tuple(int(s) for s in f.metadata()["image_size"].split(","))
        print(f"== {os.path.basename(cpath)}  A {tuple(c['A'].shape)}  image_size {size}")
        lib = library_outputs(c, size)
        for m, (raw, heat, notes) in lib.items():
            if m.startswith("fc_cam"):
                exp_raw = np.maximum(e["fc_cam.raw"], 0)
                d = float(np.abs(raw - exp_raw).max())
                ok = d <= TOL
                print(f"  {'ok ' if ok else 'BAD'} {m:26s} raw {d:.1e}")
                # the library's post-processing of the un-clipped fc_cam map
                _, heat2 = post(bare(pgc.GradCAM), e["fc_cam.raw"], size, clip=False)
                d2 = float(np.abs(heat2 - e["fc_cam.heatmap"]).max())
                ok2 = d2 <= TOL
                print(f"  {'ok ' if ok2 else 'BAD'} {'fc_cam (scale_cam_image)':26s} heatmap {d2:.1e}"
                      "   (library post-processing applied to the un-clipped map)")
                failures += (not ok) + (not ok2)
                continue
            er, eh = e[f"{m}.raw"], e[f"{m}.heatmap"]
            skip = [i for i in range(er.shape[0]) if m == "ablationcam" and c["A"][i].min() != 0]
            keep = [i for i in range(er.shape[0]) if i not in skip]
            dr = float(np.abs(raw[keep] - er[keep]).max()) if keep else 0.0
            dh = float(np.abs(heat[keep] - eh[keep]).max()) if keep else 0.0
            ok = dr <= TOL and dh <= TOL
            extra = ""
            if not ok and m in ("eigencam", "eigengradcam"):
                # deliberate: pc1 fixes the sign; the library keeps the SVD's sign. Images where
                # they disagree must match the library's projection negated (raw and heatmap).
                x = c["A"] if m == "eigencam" else c["G"] * c["A"]
                proj = get_2d_projection(x)
                fr, fh = post(bare(pgc.EigenCAM), -proj, size)
                same = [i for i in range(er.shape[0])
                        if max(np.abs(raw[i] - er[i]).max(), np.abs(heat[i] - eh[i]).max()) <= TOL]
                flip = [i for i in range(er.shape[0]) if i not in same]
                d_same = max([0.0] + [float(max(np.abs(raw[i] - er[i]).max(),
                                                np.abs(heat[i] - eh[i]).max())) for i in same])
                d_flip = max([0.0] + [float(max(np.abs(fr[i] - er[i]).max(),
                                                np.abs(fh[i] - eh[i]).max())) for i in flip])
                ok = d_flip <= TOL
                extra = (f"\n      images {same}: same SVD sign, max abs diff {d_same:.1e}; images "
                         f"{flip}: the library's SVD returned the other sign (deliberate pc1 sign "
                         f"rule), relu(-projection) agrees to {d_flip:.1e}")
                dr = dh = float("nan")
            failures += not ok
            if dr != dr:
                print(f"  {'ok ' if ok else 'BAD'} {m:26s}{extra}")
            else:
                print(f"  {'ok ' if ok else 'BAD'} {m:26s} raw {dr:.1e}  heatmap {dh:.1e}")
            for note in notes:
                print(f"      skipped {note}")
    from importlib.metadata import version
    print(f"grad-cam {version('grad-cam')}, torch {torch.__version__}, numpy {np.__version__}: "
          f"{'all comparable outputs agree to 1e-4' if not failures else f'{failures} mismatches'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
