#!/usr/bin/env python3
"""Independent golden outputs for every stdlib CAM method.

Builds small, deterministic caches (docs/cache.md) and, for each stdlib method, the expected
raw map (the formula's value at feature resolution, what `camc run --raw` returns) and the
post-processed heatmap (docs/run.md). The formulas below are written from the papers and from
pytorch-grad-cam's source (grad-cam 1.5.7), NOT translated from stdlib/*.cam; see README.md.

Everything is computed in float64 from the float32 cache values and stored as float32.

    python3 tests/golden/make_golden.py            # (re)write the files next to this script
    python3 tests/golden/make_golden.py --check    # recompute and compare with the files on disk

Needs numpy and safetensors; uses opencv-python-headless (cv2) and torch, when importable, to
cross-check the bilinear resize.
"""

import argparse
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20250611
NORM_EPS = 1e-7  # pytorch-grad-cam scale_cam_image: img / (1e-7 + max)

# ---------------------------------------------------------------------------------------------
# Post-processing (docs/run.md: pytorch-grad-cam scale_cam_image + aggregate_multi_layers)
# ---------------------------------------------------------------------------------------------


def minmax(x):
    """x - min(x), then / (max + 1e-7), over the whole 2-D map."""
    x = x - x.min()
    return x / (x.max() + NORM_EPS)


def _linear_taps(dst, src):
    """Source indices and weights of a 1-D bilinear resize with half-pixel centres.

    OpenCV INTER_LINEAR (imgproc/src/resize.cpp) and torch interpolate(align_corners=False):
    f = (d + 0.5) * (src/dst) - 0.5; i0 = floor(f); t = f - i0; a tap left of the first
    pixel is clamped to (0, t=0), one at or right of the last to (src-1, t=0), and i1 =
    min(i0 + 1, src - 1) (edge replication).
    """
    scale = src / dst
    f = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    i0 = np.floor(f).astype(np.int64)
    t = f - i0
    left = i0 < 0
    i0[left] = 0
    t[left] = 0.0
    right = i0 >= src - 1
    i0[right] = src - 1
    t[right] = 0.0
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, t


def resize_bilinear(img, out_h, out_w):
    """Separable bilinear resize of a 2-D map to (out_h, out_w), no antialiasing."""
    h, w = img.shape
    y0, y1, ty = _linear_taps(out_h, h)
    x0, x1, tx = _linear_taps(out_w, w)
    rows = img[y0, :] * (1.0 - ty)[:, None] + img[y1, :] * ty[:, None]  # [out_h, w]
    return rows[:, x0] * (1.0 - tx)[None, :] + rows[:, x1] * tx[None, :]


def postprocess(raw, size):
    """[n,h,w] raw maps -> [n,H,W] heatmaps: min-max, bilinear resize, min-max again."""
    out_h, out_w = size
    return np.stack([minmax(resize_bilinear(minmax(m), out_h, out_w)) for m in raw])


# ---------------------------------------------------------------------------------------------
# The methods. Each takes the cache dict (float64 arrays, batch axis first) and returns [n,h,w].
# Written from the papers / pytorch-grad-cam, see README.md for the formula and source of each.
# ---------------------------------------------------------------------------------------------

SP = (2, 3)  # spatial axes of [n,k,h,w]


def relu(x):
    return np.maximum(x, 0.0)


def weighted_sum(weights, A):
    """BaseCAM.get_cam_image: sum_k weights[n,k] * A[n,k,h,w]."""
    return np.einsum("nk,nkhw->nhw", weights, A)


def m_fc_cam(c):
    # Zhou et al. 2016: M_c(x,y) = sum_k w_k^c f_k(x,y). No ReLU (paper, authors' code, torchcam).
    return weighted_sum(c["W"], c["A"])


def m_gradcam(c):
    # Selvaraju et al.: alpha_k = 1/Z sum_ij dY/dA_ij ; L = ReLU(sum_k alpha_k A_k)
    return relu(weighted_sum(c["G"].mean(axis=SP), c["A"]))


def m_gradcampp(c):
    # Chattopadhay et al. eq. 19 (exp. output): a_ij = g^2 / (2 g^2 + sum_ab A_ab * g^3)
    # (+1e-6, and a_ij = 0 where g == 0, as pytorch-grad-cam); w_k = sum_ij a_ij ReLU(g_ij)
    A, G = c["A"], c["G"]
    S = A.sum(axis=SP, keepdims=True)
    num = G * G
    den = 2.0 * G * G + S * G ** 3 + 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(G != 0.0, num / den, 0.0)
    w = (a * relu(G)).sum(axis=SP)
    return relu(weighted_sum(w, A))


def m_xgradcam(c):
    # Fu et al.: w_k = sum_ij (A_k,ij / sum_ab A_k,ab) * dY/dA_k,ij (library eps 1e-7)
    A, G = c["A"], c["G"]
    w = (G * A / (A.sum(axis=SP, keepdims=True) + 1e-7)).sum(axis=SP)
    return relu(weighted_sum(w, A))


def m_hirescam(c):
    # Draelos & Carin: sum_k dY/dA_k (.) A_k, then the library's ReLU
    return relu((c["G"] * c["A"]).sum(axis=1))


def m_layercam(c):
    # Jiang et al.: M = ReLU(sum_k ReLU(g_k) (.) A_k)
    return relu((relu(c["G"]) * c["A"]).sum(axis=1))


def m_gradcam_elementwise(c):
    # pytorch-grad-cam GradCAMElementWise: sum_k ReLU(g_k (.) A_k), then ReLU (a no-op)
    return relu(relu(c["G"] * c["A"]).sum(axis=1))


def first_pc_projection(X):
    """X: [k,h,w]. Projection of the (h*w) x k matrix, each channel centred over space, on its
    first principal direction; sign chosen so that the projection correlates non-negatively with
    sum_k X (pc1[k] of docs/language.md). Computed from the eigen-decomposition of the k x k scatter
    matrix (the library uses an SVD of the centred matrix; same direction up to sign)."""
    k, h, w = X.shape
    M = X.reshape(k, h * w).T  # (h*w) x k
    Mc = M - M.mean(axis=0, keepdims=True)
    C = Mc.T @ Mc
    evals, evecs = np.linalg.eigh(C)  # ascending
    v = evecs[:, -1]
    p = Mc @ v
    s = M.sum(axis=1)
    if np.dot(p, s - s.mean()) < 0.0:
        p = -p
    return p.reshape(h, w)


def pc1_gap(X):
    """Relative gap between the two largest singular values (for data validation only)."""
    k, h, w = X.shape
    M = X.reshape(k, h * w).T
    Mc = M - M.mean(axis=0, keepdims=True)
    s = np.linalg.svd(Mc, compute_uv=False)
    if s[0] == 0.0:
        return None
    return (s[0] - (s[1] if len(s) > 1 else 0.0)) / s[0]


def m_eigencam(c):
    # Bany Muhammad & Yeasin: first principal component of the activations; sign rule of pc1.
    return relu(np.stack([first_pc_projection(a) for a in c["A"]]))


def m_eigengradcam(c):
    # pytorch-grad-cam EigenGradCAM: first principal component of G (.) A; sign rule of pc1.
    return relu(np.stack([first_pc_projection(x) for x in c["G"] * c["A"]]))


def m_scorecam(c):
    # Wang et al.: w = softmax over channels of the masked-input scores (cached as `score`)
    s = c["score"]
    e = np.exp(s - s.max(axis=1, keepdims=True))
    w = e / e.sum(axis=1, keepdims=True)
    return relu(weighted_sum(w, c["A"]))


def m_ablationcam(c):
    # Desai & Ramaswamy: w_k = (y_c - y_c^k) / y_c, y_c^k = score with channel k ablated
    y = c["logit"][:, None]
    w = (y - c["ablation"]) / y
    return relu(weighted_sum(w, c["A"]))


def m_fem(c, k=2.0):
    # Fuad et al. (pytorch-grad-cam FEM, k=2): w_k = fraction of pixels with A > mu_k + k sigma_k
    # (population std), cam = sum_k w_k A_k, then the library's ReLU
    A = c["A"]
    mu = A.mean(axis=SP, keepdims=True)
    sd = np.sqrt(((A - mu) ** 2).mean(axis=SP, keepdims=True))
    w = (A > mu + k * sd).mean(axis=SP)
    return relu(weighted_sum(w, A))


def m_shapleycam(c):
    # Cai 2025 / pytorch-grad-cam ShapleyCAM: w_k = mean_ij (g - 0.5 * hvp), hvp cached as `H`
    w = (c["G"] - 0.5 * c["H"]).mean(axis=SP)
    return relu(weighted_sum(w, c["A"]))


METHODS = {
    "fc_cam": (m_fc_cam, ["A", "W"]),
    "gradcam": (m_gradcam, ["A", "G"]),
    "gradcampp": (m_gradcampp, ["A", "G"]),
    "xgradcam": (m_xgradcam, ["A", "G"]),
    "hirescam": (m_hirescam, ["A", "G"]),
    "layercam": (m_layercam, ["A", "G"]),
    "gradcam_elementwise": (m_gradcam_elementwise, ["A", "G"]),
    "eigencam": (m_eigencam, ["A"]),
    "eigengradcam": (m_eigengradcam, ["A", "G"]),
    "scorecam": (m_scorecam, ["A", "score"]),
    "ablationcam": (m_ablationcam, ["A", "ablation", "logit"]),
    "fem": (m_fem, ["A"]),
    "shapleycam": (m_shapleycam, ["A", "G", "H"]),
}

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def sparse_activations(rng, k, h, w, dead=()):
    """Post-ReLU-like activations: a few blobs per channel, many exact zeros, dead channels."""
    yy, xx = np.mgrid[0:h, 0:w]
    A = np.zeros((k, h, w))
    for ch in range(k):
        if ch in dead:
            continue
        m = np.zeros((h, w))
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            s = rng.uniform(0.8, 2.0)
            m += rng.uniform(0.5, 3.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        m += 0.3 * rng.standard_normal((h, w)) - rng.uniform(0.2, 0.6)
        A[ch] = np.maximum(m, 0.0)
    return A


def ablation_head(rng, A, logit):
    """The exporter's side of Ablation-CAM, with a linear head y_i = b_i + <V_i, A_i> whose bias
    b_i gives the clean logit `logit`: the logit with channel k set to 0 (AblationLayer when
    the minimum activation is 0) is y_i - <V_ik, A_ik>."""
    V = 0.4 * rng.standard_normal(A.shape)
    logit = np.asarray(logit, dtype=np.float64)
    ablation = logit[:, None] - np.einsum("nkhw,nkhw->nk", V, A)
    return V, logit, ablation


def hvp_like(rng, A):
    """A Hessian-vector product H = Hess . A for a random symmetric Hessian per image
    (so H = 0 where A = 0 everywhere, as the real hvp is linear in A)."""
    n, k, h, w = A.shape
    d = k * h * w
    H = np.zeros_like(A)
    for i in range(n):
        B = rng.standard_normal((d, 6)) / np.sqrt(d)
        hess = B @ np.diag(rng.uniform(-1, 1, 6)) @ B.T  # low-rank symmetric
        H[i] = (hess @ A[i].reshape(-1)).reshape(k, h, w)
    return H


def case_main(rng):
    n, k, h, w = 4, 6, 5, 7
    A = np.stack([
        sparse_activations(rng, k, h, w, dead=(4,)),
        sparse_activations(rng, k, h, w, dead=(1, 5)),
        np.zeros((k, h, w)),  # image 2: every activation 0 -> every CAM is the constant 0
        sparse_activations(rng, k, h, w, dead=(0,)),
    ])
    G = 0.5 * rng.standard_normal((n, k, h, w))
    G[0] += 0.15 * rng.standard_normal((k, 1, 1))  # channel-wise bias: class evidence
    G[3] -= 0.12  # mostly negative gradients
    G[3][rng.uniform(size=(k, h, w)) < 0.25] = 0.0  # exact zeros (Grad-CAM++ where(G != 0))
    W = rng.standard_normal((n, k))
    score = 2.0 * rng.standard_normal((n, k))
    _, logit, ablation = ablation_head(rng, A, logit=([3.0, 2.5, 1.5, -2.0]))
    H = 0.5 * hvp_like(rng, A)
    return dict(A=A, G=G, W=W, score=score, logit=logit, ablation=ablation, H=H), "13,17"


def case_k1(rng):
    # one channel; image 1 has a constant activation map (0.75 sums exactly in f32); image 2
    # has signed activations (a layer without ReLU), where LayerCAM and Grad-CAM element-wise
    # differ (relu(G) * A != relu(G * A) where A < 0)
    n, k, h, w = 3, 1, 3, 4
    A = np.stack([
        sparse_activations(rng, k, h, w) + 0.05,
        np.full((k, h, w), 0.75),
        rng.standard_normal((k, h, w)) + 0.3,
    ])
    A[0, 0, 0, 0] = 0.0
    G = 0.5 * rng.standard_normal((n, k, h, w))
    G[0] += 0.2
    W = rng.standard_normal((n, k))
    score = 2.0 * rng.standard_normal((n, k))
    _, logit, ablation = ablation_head(rng, A, logit=([1.0, 2.0, -1.5]))
    H = 0.5 * hvp_like(rng, A)
    return dict(A=A, G=G, W=W, score=score, logit=logit, ablation=ablation, H=H), "10,9"


def case_hw1(rng):
    # 1 x 1 feature map: every heatmap is 0 (min-max of one pixel), raw values are not
    n, k, h, w = 2, 5, 1, 1
    A = relu(rng.standard_normal((n, k, h, w)) + 0.3)
    A[0, 1] = 0.0
    G = 0.5 * rng.standard_normal((n, k, h, w))
    W = rng.standard_normal((n, k))
    score = 2.0 * rng.standard_normal((n, k))
    _, logit, ablation = ablation_head(rng, A, logit=([1.5, -2.5]))
    H = 0.5 * hvp_like(rng, A)
    return dict(A=A, G=G, W=W, score=score, logit=logit, ablation=ablation, H=H), "4,6"


CASES = {"": case_main, "_k1": case_k1, "_hw1": case_hw1}


def validate(name, c):
    """Reject inputs on which f32 and f64 evaluation could legitimately disagree."""
    A, G = c["A"], c["G"]
    problems = []
    # FEM threshold comparisons must not be near-ties (except exact ties of constant channels)
    mu = A.mean(axis=SP, keepdims=True)
    sd = np.sqrt(((A - mu) ** 2).mean(axis=SP, keepdims=True))
    gap = np.abs(A - (mu + 2 * sd))
    const = (sd == 0.0) & np.ones_like(A, dtype=bool)
    if np.any((gap < 1e-3) & ~const):
        problems.append("FEM threshold near-tie")
    # Grad-CAM++ denominators away from 0
    S = A.sum(axis=SP, keepdims=True)
    den = 2 * G * G + S * G ** 3 + 1e-6
    if np.any((G != 0) & (np.abs(den) < 1e-3 * G * G)):
        problems.append("Grad-CAM++ near-singular denominator")
    # principal direction well separated, sign rule not a near-tie
    for label, X in (("A", A), ("G*A", G * A)):
        for i, x in enumerate(X):
            g = pc1_gap(x)
            if g is None:
                continue
            if g < 0.1:
                problems.append(f"pc1 gap of {label}[{i}] = {g:.3f}")
            p = first_pc_projection(x)
            s = x.sum(axis=0)
            corr = np.dot(p.ravel(), (s - s.mean()).ravel())
            if abs(corr) < 1e-3 * np.linalg.norm(p) * np.linalg.norm(s - s.mean()) and np.linalg.norm(p) > 0:
                problems.append(f"pc1 sign near-tie of {label}[{i}]")
    if np.any(np.abs(c["logit"]) < 0.5):
        problems.append("logit near 0")
    # ReLU'd maps: no positive maximum so small that the post-processing amplifies f32 noise
    for m, (fn, _) in METHODS.items():
        raw = fn(c)
        for i, r in enumerate(raw):
            rng_ = r.max() - r.min()
            if 0 < rng_ < 1e-3 * max(1.0, np.abs(r).max()):
                problems.append(f"{m}[{i}] nearly constant")
    if problems:
        raise SystemExit(f"case '{name}': unsuitable inputs: {problems}")


def build(rng, maker):
    c, size = maker(rng)
    # round to f32 first: the expected values are computed from exactly what the cache holds
    c32 = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in c.items()}
    c64 = {k: v.astype(np.float64) for k, v in c32.items()}
    return c32, c64, size


def expected_for(c64, size):
    out_h, out_w = (int(s) for s in size.split(","))
    exp = {}
    for m, (fn, _) in METHODS.items():
        raw = fn(c64)
        exp[f"{m}.raw"] = np.ascontiguousarray(raw, dtype=np.float32)
        exp[f"{m}.heatmap"] = np.ascontiguousarray(postprocess(raw, (out_h, out_w)), dtype=np.float32)
    return exp


def crosscheck_resize(rng, maps_and_sizes):
    """Compare resize_bilinear with cv2.resize (and torch, if present) on the maps we store."""
    msgs = []
    try:
        import cv2
    except ImportError:
        cv2 = None
        msgs.append("cv2 not importable: resize NOT cross-checked against OpenCV")
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    worst_cv, worst_t = 0.0, 0.0
    extra = [(rng.uniform(size=(h, w)), (H, W))
             for (h, w, H, W) in [(5, 7, 23, 31), (5, 7, 13, 17), (3, 4, 10, 9), (7, 7, 224, 224), (2, 3, 5, 11),
                                  (1, 1, 4, 6), (6, 5, 13, 17), (14, 14, 224, 224)]]
    for m, (H, W) in list(maps_and_sizes) + extra:
        mine = resize_bilinear(m.astype(np.float64), H, W)
        if cv2 is not None:
            ref = cv2.resize(np.float32(m), (W, H), interpolation=cv2.INTER_LINEAR)
            worst_cv = max(worst_cv, float(np.abs(ref - mine).max()))
        if torch is not None:
            ref = F.interpolate(torch.from_numpy(np.float32(m))[None, None], size=(H, W),
                                mode="bilinear", align_corners=False)[0, 0].numpy()
            worst_t = max(worst_t, float(np.abs(ref - mine).max()))
    if cv2 is not None:
        msgs.append(f"resize vs cv2.resize INTER_LINEAR (opencv {cv2.__version__}): "
                    f"max abs diff {worst_cv:.2e} over {len(maps_and_sizes) + len(extra)} maps")
        if worst_cv > 1e-6:
            raise SystemExit("resize_bilinear disagrees with cv2.resize: " + msgs[-1])
    if torch is not None:
        msgs.append(f"resize vs torch interpolate(bilinear, align_corners=False) "
                    f"(torch {torch.__version__}): max abs diff {worst_t:.2e}")
        if worst_t > 1e-6:
            raise SystemExit("resize_bilinear disagrees with torch: " + msgs[-1])
    return msgs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="recompute and compare with the files on disk instead of writing")
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    to_resize = []
    failures = 0
    for suffix, maker in CASES.items():
        c32, c64, size = build(rng, maker)
        validate(suffix or "main", c64)
        exp = expected_for(c64, size)
        H, W = (int(s) for s in size.split(","))
        for m in METHODS:
            for r in minmax_list(c64, m):
                to_resize.append((r, (H, W)))
        meta_cache = {"image_size": size, "model": "synthetic (tests/golden/make_golden.py)",
                      "layer": "synthetic", "seed": str(SEED)}
        meta_exp = {"image_size": size, "cache": f"cache{suffix}.safetensors",
                    **{f"inputs.{m}": ",".join(t) for m, (_, t) in METHODS.items()}}
        cpath = os.path.join(args.out, f"cache{suffix}.safetensors")
        epath = os.path.join(args.out, f"expected{suffix}.safetensors")
        if args.check:
            for path, d in ((cpath, c32), (epath, exp)):
                disk = load_file(path)
                if set(disk) != set(d):
                    print(f"MISMATCH {path}: tensor names differ")
                    failures += 1
                    continue
                for name in d:
                    diff = float(np.abs(disk[name].astype(np.float64) - d[name]).max()) if d[name].size else 0.0
                    if disk[name].shape != d[name].shape or diff > 1e-6:
                        print(f"MISMATCH {path}:{name} max abs diff {diff}")
                        failures += 1
            print(f"checked {cpath} and {epath}")
        else:
            save_file(c32, cpath, metadata=meta_cache)
            save_file(exp, epath, metadata=meta_exp)
            print(f"wrote {cpath} ({os.path.getsize(cpath)} B) and {epath} ({os.path.getsize(epath)} B)")
    for msg in crosscheck_resize(rng, to_resize):
        print(msg)
    if failures:
        sys.exit(1)


def minmax_list(c64, m):
    return [minmax(r) for r in METHODS[m][0](c64)]


if __name__ == "__main__":
    main()
