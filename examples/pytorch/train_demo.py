#!/usr/bin/env python3
"""Build camc's demo dataset: cluttered digits, a small CNN, and its caches.

    .venv-py/bin/python examples/pytorch/train_demo.py          # 5-15 minutes on 2 CPU cores

1. Digits: scikit-learn's bundled 8x8 digits (load_digits, no network), upscaled x3 to 24x24,
   split by digit sample into train and test, placed at a random position on a 64x64 RGB canvas
   with a random dark background, pixel noise, random strokes and blobs (distractors). The
   ground-truth box is the tight box of the digit's pixels (alpha > 0.25), x1, y1 exclusive.
2. Model: examples/pytorch/demo_model.py DemoNet (4 conv blocks -> 64 x 8 x 8 -> GAP -> linear),
   trained with Adam on freshly generated canvases; test accuracy printed at the end.
3. Writes examples/data/demo_model.safetensors (the weights) and, through the exporter's
   command line (python -m camc.export, run in process), examples/data/demo.safetensors
   (256 test images, f16 A/G at features.relu4, target = the model's prediction, label = the
   true digit, boxes, image, score, ablation) and examples/data/demo_perturbed.safetensors
   (same images + gaussian noise sigma 0.05, no image).

   With --export-only, --layer and --name export another layer of the committed model under
   another name; the README's demo cache is made this way (16 x 16 maps instead of 8 x 8):

    .venv-py/bin/python examples/pytorch/train_demo.py --export-only --layer features.relu3 \
        --name demo16 --export 96 --no-perturbed      # examples/data/demo16.safetensors

Everything is derived from --seed; on the same machine and torch version the files are
bit-identical from run to run (across machines, float rounding in training may differ).

The exporter is camc's `camc.export` (python/camc/export.py): camc must be importable,
pip-installed or with PYTHONPATH=python (its native module built).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from demo_model import MEAN, STD, DemoNet  # noqa: E402

try:
    import camc.export as camc_export  # noqa: E402
except ImportError:  # not installed (or an installed camc without it): the repository's python/
    for _m in [m for m in sys.modules if m == "camc" or m.startswith("camc.")]:
        del sys.modules[_m]
    sys.path.insert(0, str(HERE.parents[1] / "python"))
    import camc.export as camc_export  # noqa: E402

CANVAS = 64
DIGIT = 24


def load_digits_24():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8]
    x = F.interpolate(x, size=(DIGIT, DIGIT), mode="bilinear", align_corners=False).clamp(0, 1)
    return x[:, 0].numpy(), d.target.astype(np.int64)


def _line(canvas, rng, color):
    h, w, _ = canvas.shape
    x0, y0, x1, y1 = rng.uniform(0, w, 4)
    thick = rng.uniform(0.6, 1.6)
    n = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 2
    ts = np.linspace(0, 1, n)
    px, py = x0 + (x1 - x0) * ts, y0 + (y1 - y0) * ts
    yy, xx = np.mgrid[0:h, 0:w]
    lo_x, hi_x = int(max(0, min(x0, x1) - 3)), int(min(w, max(x0, x1) + 4))
    lo_y, hi_y = int(max(0, min(y0, y1) - 3)), int(min(h, max(y0, y1) + 4))
    sub_x, sub_y = xx[lo_y:hi_y, lo_x:hi_x], yy[lo_y:hi_y, lo_x:hi_x]
    d2 = ((sub_x[..., None] - px) ** 2 + (sub_y[..., None] - py) ** 2).min(-1)
    alpha = np.clip(thick - np.sqrt(d2), 0, 1)[..., None] * rng.uniform(0.5, 0.9)
    canvas[lo_y:hi_y, lo_x:hi_x] = canvas[lo_y:hi_y, lo_x:hi_x] * (1 - alpha) + color * alpha


def _blob(canvas, rng, color):
    h, w, _ = canvas.shape
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    rx, ry = rng.uniform(2, 6, 2)
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    alpha = np.exp(-d * 1.5)[..., None] * rng.uniform(0.4, 0.8)
    canvas[:] = canvas * (1 - alpha) + color * alpha


def make_canvas(digit: np.ndarray, rng: np.random.Generator):
    """One 64x64 RGB canvas (uint8 [3,64,64]) and the digit's box [x0,y0,x1,y1] (exclusive)."""
    bg = rng.uniform(0.0, 0.45, 3)
    canvas = np.broadcast_to(bg, (CANVAS, CANVAS, 3)).copy()
    # low-frequency shading + pixel noise
    coarse = rng.normal(0, 0.08, (4, 4, 3))
    shade = F.interpolate(
        torch.from_numpy(coarse).permute(2, 0, 1)[None].float(), size=(CANVAS, CANVAS), mode="bilinear", align_corners=False
    )[0].permute(1, 2, 0).numpy()
    canvas += shade + rng.normal(0, 0.05, canvas.shape)
    for _ in range(rng.integers(2, 5)):
        _line(canvas, rng, rng.uniform(0.2, 1.0, 3))
    for _ in range(rng.integers(1, 4)):
        _blob(canvas, rng, rng.uniform(0.2, 1.0, 3))
    if rng.random() < 0.5:  # a light rectangle, like the patch behind dark digits, but empty
        ph, pw = rng.integers(10, 29, 2)
        py, px = rng.integers(0, CANVAS - ph + 1), rng.integers(0, CANVAS - pw + 1)
        patch = rng.uniform(0.6, 0.9, 3)
        canvas[py : py + ph, px : px + pw] = canvas[py : py + ph, px : px + pw] * 0.3 + patch * 0.7
    x, y = rng.integers(0, CANVAS - DIGIT + 1, 2)
    color = rng.uniform(0.55, 1.0, 3)
    if rng.random() < 0.5:  # sometimes a dark digit on a lighter patch
        color = rng.uniform(0.0, 0.2, 3)
        patch = rng.uniform(0.6, 0.9, 3)
        canvas[y : y + DIGIT, x : x + DIGIT] = canvas[y : y + DIGIT, x : x + DIGIT] * 0.3 + patch * 0.7
    alpha = digit[..., None]
    region = canvas[y : y + DIGIT, x : x + DIGIT]
    canvas[y : y + DIGIT, x : x + DIGIT] = region * (1 - alpha) + color * alpha
    ys, xs = np.nonzero(digit > 0.25)
    box = [int(x + xs.min()), int(y + ys.min()), int(x + xs.max() + 1), int(y + ys.max() + 1)]
    img = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8).transpose(2, 0, 1)
    return img, box


def make_set(digits, labels, idx, count, rng):
    pick = rng.choice(idx, size=count, replace=count > len(idx))
    imgs, boxes = zip(*(make_canvas(digits[i], rng) for i in pick))
    return torch.from_numpy(np.stack(imgs)), boxes, torch.from_numpy(labels[pick])


def normalize(u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (u8.float() / 255.0 - mean) / std


def accuracy(model, images, labels, bs=256):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), bs):
            correct += int((model(normalize(images[i : i + bs])).argmax(1) == labels[i : i + bs]).sum())
    return correct / len(images)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE.parent / "data"), help="folder for the data files (default examples/data)")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--train-size", type=int, default=6000, help="training canvases (generated once)")
    ap.add_argument("--test-size", type=int, default=600, help="test canvases for the accuracy")
    ap.add_argument("--export", type=int, default=256, help="test images in the exported cache")
    ap.add_argument("--sigma", type=float, default=0.05, help="noise of the perturbed cache")
    ap.add_argument("--no-perturbed", action="store_true", help="do not write the perturbed cache NAME_perturbed")
    ap.add_argument("--layer", default="features.relu4", help="the CAM layer exported (default features.relu4)")
    ap.add_argument("--name", default="demo", help="the cache is OUT/NAME.safetensors (default demo)")
    ap.add_argument("--export-only", action="store_true", help="reuse OUT/demo_model.safetensors, skip training")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    digits, labels = load_digits_24()
    perm = np.random.default_rng(args.seed).permutation(len(digits))
    n_test = len(digits) // 5
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    test_rng = np.random.default_rng([args.seed, 1])
    test_x, test_boxes, test_y = make_set(digits, labels, test_idx, max(args.test_size, args.export), test_rng)

    model = DemoNet()
    weights = out / "demo_model.safetensors"
    if args.export_only:
        camc_export.load_weights(model, str(weights))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        steps_per_epoch = (args.train_size + 127) // 128
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, pct_start=0.2, total_steps=args.epochs * steps_per_epoch)
        tx, _, ty = make_set(digits, labels, train_idx, args.train_size, np.random.default_rng([args.seed, 100]))
        tx = normalize(tx)
        print(f"{len(tx)} training canvases ({time.time() - t0:.0f}s)", flush=True)
        for epoch in range(args.epochs):
            model.train()
            g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
            order = torch.randperm(len(tx), generator=g)
            total = 0.0
            for s in range(steps_per_epoch):
                b = order[s * 128 : (s + 1) * 128]
                loss = F.cross_entropy(model(tx[b]), ty[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(b)
            acc = accuracy(model, test_x[: args.test_size], test_y[: args.test_size])
            print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(tx):.4f}, test accuracy {acc:.4f}"
                  f" ({time.time() - t0:.0f}s)", flush=True)
        from safetensors.torch import save_file

        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(weights), metadata={"model": "examples/pytorch/demo_model.py:DemoNet",
                                              "seed": str(args.seed), "epochs": str(args.epochs)})
    model.eval()
    acc = accuracy(model, test_x[: args.test_size], test_y[: args.test_size])
    print(f"test accuracy: {acc:.4f} on {args.test_size} test canvases (digits never seen in training)")

    # Export through the documented command line, from files in a temporary folder.
    n = args.export
    with tempfile.TemporaryDirectory() as tmp:
        imgs = Path(tmp) / "test_images.pt"
        boxes = Path(tmp) / "test_boxes.json"
        torch.save(test_x[:n].clone(), imgs)
        boxes.write_text(json.dumps([list(b) for b in test_boxes[:n]]))
        argv = [
            "--model", str(HERE / "demo_model.py") + ":DemoNet",
            "--model-name", "examples/pytorch/demo_model.py:DemoNet",
            "--weights", str(weights),
            "--layer", args.layer,
            "--images", str(imgs),
            "--boxes", str(boxes),
            "--mean", ",".join(map(str, MEAN)),
            "--std", ",".join(map(str, STD)),
            "--dtype", "f16",
            "--score", "--ablation",
        ]
        if not args.no_perturbed:
            argv += ["--perturb", str(args.sigma), "--no-perturbed-image", "--seed", str(args.seed)]
        argv += [
            "--extra", f"label={tmp}/labels.npy",
            "-o", str(out / f"{args.name}.safetensors"),
        ]
        np.save(Path(tmp) / "labels.npy", test_y[:n].numpy())
        print("python -m camc.export " + " ".join(a if "/" not in a else Path(a).name for a in argv))
        rc = camc_export.main(argv)
        if rc != 0:
            sys.exit(rc)
    print(f"done in {time.time() - t0:.0f}s")
    for f in sorted(out.iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
