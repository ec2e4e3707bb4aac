#!/usr/bin/env python3
"""Tests of camc's PyTorch exporter, `camc.export` (python/camc/export.py; plain Python, no pytest).

    tests/exporter/run.sh            # after scripts/install-torch.sh
    PYTHONPATH=python .venv-py/bin/python tests/exporter/test_exporter.py [NAME_SUBSTRING...]

The function `camc.export(...)` and the command line `python -m camc.export` (mostly run in
process through `camc.export.main`, some tests as a separate process) are both tested.

Prints one line per test and ends with 'exporter: N passed, N failed, N skipped'; exit 1 on a
failure. The camc comparisons skip (visibly) while target/{release,debug}/camc cannot `run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import camc.export  # noqa: F401  (pip-installed, or on PYTHONPATH)
except ImportError:  # else the repository's python/ (also over an installed camc without it)
    for _m in [m for m in sys.modules if m == "camc" or m.startswith("camc.")]:
        del sys.modules[_m]
    sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import camc  # noqa: E402
import camc.export as ce  # noqa: E402
from models import Tiny, TinySmooth, TinyStride, images  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# `python -m camc.export` in a subprocess finds the same camc as this process
CAMC_PARENT = str(Path(camc.__file__).resolve().parents[1])
CLI_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [CAMC_PARENT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
MODELS = str(HERE / "models.py")
TESTS = []


class Skip(Exception):
    pass


def test(fn):
    TESTS.append(fn)
    return fn


TMP = Path(tempfile.mkdtemp(prefix="camc-exporter-tests-"))


def tmp(name: str) -> Path:
    return TMP / name


def save_images(n: int, size: int = 16, seed: int = 0, name: str = None) -> Path:
    p = tmp(name or f"images-{n}-{size}-{seed}.pt")
    if not p.exists():
        torch.save(images(n, size, seed), p)
    return p


def export(*argv) -> int:
    """In-process run of the command line (fast); returns the exit code."""
    return ce.main(["--quiet", *map(str, argv)])


def cli(*argv):
    """Subprocess run of `python -m camc.export` (what a user sees)."""
    r = subprocess.run([sys.executable, "-m", "camc.export", *map(str, argv)], capture_output=True, text=True,
                       env=CLI_ENV)
    return r.returncode, r.stdout, r.stderr


def meta(path) -> dict:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def tiny_args(out, n=5, *extra, model="Tiny", size=16, kwargs=None):
    args = ["--model", f"{MODELS}:{model}", "--images", save_images(n, size), "-o", out]
    if kwargs:
        args += ["--model-kwargs", json.dumps(kwargs)]
    return args + list(extra)


def assert_close(a, b, tol, what):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    d = float(np.abs(a - b).max()) if a.size else 0.0
    assert d <= tol, f"{what}: max abs difference {d:.3g} > {tol:g}"


# ------------------------------------------------------------------------------------------
# Names, shapes, dtypes
# ------------------------------------------------------------------------------------------


@test
def tensors_names_shapes_dtypes():
    out = tmp("basic.safetensors")
    boxes = tmp("boxes5.json")
    boxes.write_text(json.dumps([[0, 0, 10, 10], [1, 2, 3, 4], [0, 0, 16, 16], [5, 5, 9, 9], [2, 3, 12, 13]]))
    assert export(*tiny_args(out, 5, "--layer", "body.relu2", "--dtype", "f16", "--boxes", boxes)) == 0
    t = load_file(str(out))
    n, k, C = 5, 6, 5
    want = {
        "A": ([n, k, 16, 16], torch.float16),
        "G": ([n, k, 16, 16], torch.float16),
        "target": ([n], torch.int64),
        "logits": ([n, C], torch.float32),
        "logit": ([n], torch.float32),
        "W": ([n, k], torch.float32),
        "head.weight": ([C, k], torch.float32),
        "head.bias": ([C], torch.float32),
        "image": ([n, 3, 16, 16], torch.uint8),
        "boxes": ([n, 4], torch.float32),
    }
    assert set(t) == set(want), f"tensors {sorted(t)} != {sorted(want)}"
    for name, (shape, dtype) in want.items():
        assert list(t[name].shape) == shape, f"{name}: shape {list(t[name].shape)} != {shape}"
        assert t[name].dtype == dtype, f"{name}: dtype {t[name].dtype} != {dtype}"
    m = meta(out)
    assert m["image_size"] == "16,16", m
    assert m["layer"] == "body.relu2" and "Tiny" in m["model"], m
    # values: image is the input, target is the argmax, logit its logit, W the head row
    assert torch.equal(t["image"], images(5, 16, 0))
    assert torch.equal(t["target"], t["logits"].argmax(1))
    assert torch.allclose(t["logit"], t["logits"].gather(1, t["target"][:, None])[:, 0])
    assert torch.equal(t["W"], t["head.weight"][t["target"]])
    assert t["boxes"][1].tolist() == [1, 2, 3, 4]
    model = Tiny().eval()
    with torch.no_grad():
        logits = model(images(5, 16, 0).float() / 255)
    assert_close(t["logits"], logits, 1e-5, "logits")


@test
def dtypes_f32_bf16():
    for dt, tdt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        out = tmp(f"dtype-{dt}.safetensors")
        assert export(*tiny_args(out, 3, "--layer", "body.relu2", "--dtype", dt)) == 0
        t = load_file(str(out))
        assert t["A"].dtype == tdt and t["G"].dtype == tdt, (dt, t["A"].dtype)
    a32 = load_file(str(tmp("dtype-f32.safetensors")))["A"]
    a16 = load_file(str(tmp("dtype-bf16.safetensors")))["A"].float()
    assert_close(a16, a32, 0.01 * float(a32.abs().max()), "bf16 vs f32")


@test
def several_boxes_per_image_are_padded():
    out = tmp("multibox.safetensors")
    boxes = tmp("multibox.json")
    boxes.write_text(json.dumps([[[0, 0, 4, 4], [8, 8, 12, 12]], [[1, 1, 5, 5]], [2, 2, 6, 6]]))
    assert export(*tiny_args(out, 3, "--layer", "body.relu2", "--boxes", boxes)) == 0
    t = load_file(str(out))
    assert list(t["boxes"].shape) == [3, 2, 4], t["boxes"].shape
    assert t["box_count"].tolist() == [2, 1, 1]
    assert t["boxes"][0, 1].tolist() == [8, 8, 12, 12]
    assert t["boxes"][1, 1].tolist() == [0, 0, 0, 0]
    assert t["boxes"][2, 0].tolist() == [2, 2, 6, 6]


@test
def given_targets_and_no_head_before_relu():
    out = tmp("targets.safetensors")
    # the layer before the ReLU: head(GAP(A)) is not the logits, so no W / head.*
    assert export(*tiny_args(out, 4, "--layer", "body.conv2", "--target", "1,0,3,4")) == 0
    t = load_file(str(out))
    assert t["target"].tolist() == [1, 0, 3, 4]
    assert torch.allclose(t["logit"], t["logits"][torch.arange(4), t["target"]])
    assert "W" not in t and "head.weight" not in t, sorted(t)
    assert meta(out)["target"] == "given"
    out2 = tmp("target-one.safetensors")
    assert export(*tiny_args(out2, 4, "--layer", "body.relu2", "--target", "2")) == 0
    assert load_file(str(out2))["target"].tolist() == [2, 2, 2, 2]


@test
def shards_concatenate_to_the_whole():
    whole = tmp("whole.safetensors")
    shards = tmp("shards")
    common = ["--layer", "body.relu2", "--batch-size", "2"]
    assert export(*tiny_args(whole, 7, *common)) == 0
    assert export(*tiny_args(shards, 7, *common, "--shard-size", "3")) == 0
    files = sorted(shards.iterdir())
    assert [f.name for f in files] == ["cache-00000.safetensors", "cache-00001.safetensors", "cache-00002.safetensors"], files
    parts = [load_file(str(f)) for f in files]
    assert [p["A"].shape[0] for p in parts] == [3, 3, 1]
    w = load_file(str(whole))
    for name in ("A", "G", "target", "logits", "logit", "W", "image"):
        assert torch.equal(torch.cat([p[name] for p in parts]), w[name]), name
    for p in parts:
        assert torch.equal(p["head.weight"], w["head.weight"])
    assert all(meta(f)["image_size"] == "16,16" for f in files)


@test
def images_from_a_folder_with_resize_and_scaled_boxes():
    from PIL import Image

    folder = tmp("pngs")
    folder.mkdir(exist_ok=True)
    imgs = images(3, 32, 5)
    for i in range(3):
        Image.fromarray(imgs[i].permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    boxes = tmp("folder-boxes.json")
    boxes.write_text(json.dumps({"img0.png": [0, 0, 16, 16], "img1": [[2, 2, 10, 10]], "img2.png": [8, 8, 32, 32]}))
    out = tmp("folder.safetensors")
    args = ["--model", f"{MODELS}:Tiny", "--layer", "body.relu2", "--images", folder, "--size", "16,16",
            "--boxes", boxes, "--normalize", "imagenet", "-o", out]
    assert export(*args) == 0
    t = load_file(str(out))
    assert list(t["image"].shape) == [3, 3, 16, 16]
    assert t["boxes"].tolist() == [[0, 0, 8, 8], [1, 1, 5, 5], [4, 4, 16, 16]], t["boxes"].tolist()
    assert meta(out)["image_size"] == "16,16"


# ------------------------------------------------------------------------------------------
# The Python function, several layers, --model-seed
# ------------------------------------------------------------------------------------------


def same_cache(a_path, b_path, what, ignore_meta=("layer",)):
    a, b = load_file(str(a_path)), load_file(str(b_path))
    assert set(a) == set(b), f"{what}: tensors {sorted(a)} vs {sorted(b)}"
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), f"{what}: {name} differs"
    ma, mb = meta(a_path), meta(b_path)
    for key in set(ma) | set(mb):
        if key not in ignore_meta:
            assert ma.get(key) == mb.get(key), f"{what}: metadata {key}: {ma.get(key)!r} vs {mb.get(key)!r}"


@test
def python_function_equals_the_command_line():
    boxes = [[0, 0, 10, 10], [1, 2, 3, 4], [[0, 0, 16, 16], [2, 2, 5, 5]], [5, 5, 9, 9]]
    bf = tmp("fn-boxes.json")
    bf.write_text(json.dumps(boxes))
    by_cli = tmp("fn-cli.safetensors")
    assert export(*tiny_args(by_cli, 4, "--layer", "body.relu2", "--target", "1,0,3,4", "--boxes", bf,
                             "--normalize", "imagenet", "--dtype", "f16", "--model-name", "Tiny")) == 0
    model = Tiny()
    by_fn = tmp("fn.safetensors")
    # camc.export is callable (the module); a layer given as the module itself; uint8 tensor images
    summary = camc.export(model, [model.body.relu2], images(4, 16, 0), by_fn, target=[1, 0, 3, 4], boxes=boxes,
                          normalize="imagenet", dtype="f16")
    assert summary["files"] == [str(by_fn)] and summary["n"] == 4, summary
    assert summary["layers"]["body.relu2"]["head"] == "fc", summary
    same_cache(by_cli, by_fn, "camc.export() vs python -m camc.export")
    assert model.training, "the model's training mode was not restored"
    assert all(p.requires_grad for p in model.parameters()), "requires_grad was not restored"
    # mistakes raise camc.export.ExportError, a camc.InputError
    for call, needle in (
        (lambda: ce.export(model, "body.conv3", images(2, 16, 0), tmp("fn-e1.safetensors")), "body.conv2"),
        (lambda: ce.export(model, ["body.relu2"], images(2, 16, 0), tmp("fn-e2.safetensors"), target=[1, 2, 3]),
         "3 targets for 2 images"),
        (lambda: ce.export(model, [torch.nn.ReLU()], images(2, 16, 0), tmp("fn-e3.safetensors")),
         "not a submodule"),
        (lambda: ce.export(model, ["body.relu2"], images(2, 16, 0).float(), tmp("fn-e4.safetensors")), "[0, 1]"),
    ):
        try:
            call()
        except camc.InputError as e:
            assert isinstance(e, ce.ExportError) and needle in str(e), (needle, str(e))
        else:
            raise AssertionError(f"no error ({needle})")
    assert not any(tmp(f"fn-e{i}.safetensors").exists() for i in range(1, 5))


@test
def several_layers_write_one_cache_each_equal_to_single_layer_exports():
    common = ["--score", "--perturb", "0.1", "--seed", "2", "--batch-size", "3"]
    singles = {}
    for layer in ("body.conv2", "body.relu2"):
        singles[layer] = tmp(f"single-{layer}.safetensors")
        assert export(*tiny_args(singles[layer], 5, "--layer", layer, *common)) == 0
    # a folder: --layer twice
    folder = tmp("layers")
    assert export(*tiny_args(folder, 5, "--layer", "body.conv2", "--layer", "body.relu2", *common)) == 0
    assert sorted(f.name for f in folder.iterdir()) == [
        "body.conv2.safetensors", "body.conv2_perturbed.safetensors",
        "body.relu2.safetensors", "body.relu2_perturbed.safetensors"], sorted(folder.iterdir())
    for layer, single in singles.items():
        same_cache(folder / f"{layer}.safetensors", single, f"{layer} of a two-layer export")
        assert meta(folder / f"{layer}.safetensors")["layer"] == layer
        same_cache(folder / f"{layer}_perturbed.safetensors", tmp(f"single-{layer}_perturbed.safetensors"),
                   f"{layer} perturbed")
    assert "W" in load_file(str(folder / "body.relu2.safetensors"))
    assert "W" not in load_file(str(folder / "body.conv2.safetensors"))
    # a stem: a comma list, -o X.safetensors -> X.LAYER.safetensors; the Python function alike
    stem = tmp("stem.safetensors")
    assert export(*tiny_args(stem, 5, "--layer", "body.relu2,body.conv2", *common)) == 0
    for layer, single in singles.items():
        same_cache(tmp(f"stem.{layer}.safetensors"), single, f"{layer} under a stem")
    model = Tiny()
    summary = ce.export(model, [model.body.conv2, "body.relu2"], images(5, 16, 0), tmp("fn-layers"), score=True,
                        batch_size=3, model_name=f"{MODELS}:Tiny")
    assert sorted(summary["layers"]) == ["body.conv2", "body.relu2"], summary
    for layer, single in singles.items():
        same_cache(tmp("fn-layers") / f"{layer}.safetensors", single, f"{layer} from the function",
                   ignore_meta=("layer", "perturbation"))
    # shards: OUT/LAYER/cache-00000.safetensors
    assert export(*tiny_args(tmp("layer-shards"), 5, "--layer", "body.conv2,body.relu2", "--shard-size", "4")) == 0
    assert sorted(p.name for p in (tmp("layer-shards") / "body.relu2").iterdir()) == [
        "cache-00000.safetensors", "cache-00001.safetensors"]
    # mistakes: the same layer twice; a file where the folder would go
    expect_error(tiny_args(tmp("twice"), 2, "--layer", "body.relu2", "--layer", "body.relu2"), "given twice")
    tmp("a-file").write_text("x")
    expect_error(tiny_args(tmp("a-file"), 2, "--layer", "body.relu2,body.conv2"), "is a file")
    assert tmp("a-file").read_text() == "x"


@test
def model_seed_makes_random_weights_reproducible():
    def run(name, *seed):
        out = tmp(f"seed-{name}.safetensors")
        assert export("--model", f"{MODELS}:Unseeded", "--layer", "relu", "--images", save_images(3),
                      "-o", out, *seed) == 0
        return load_file(str(out))

    a, b, c = run("a", "--model-seed", "3"), run("b", "--model-seed", "3"), run("c", "--model-seed", "4")
    for name in ("A", "G", "logits"):
        assert torch.equal(a[name], b[name]), f"--model-seed 3 twice: {name} differs"
    assert not torch.equal(a["A"], c["A"]), "--model-seed 3 and 4 give the same weights"
    # --seed seeds the noise only: the model is the same for different --seed
    d = run("d", "--model-seed", "3", "--seed", "9")
    assert torch.equal(a["A"], d["A"])


# ------------------------------------------------------------------------------------------
# Gradients: finite differences, in-place aliasing
# ------------------------------------------------------------------------------------------


def finite_difference(model, layer, x, target, index, eps=1e-4):
    """d logit[target] / d A[index] by central differences, perturbing A through a hook."""
    vals = []
    for sign in (1, -1):
        def hook(m, i, o, sign=sign):
            o = o.clone()
            o[index] += sign * eps
            return o

        h = layer.register_forward_hook(hook)
        with torch.no_grad():
            vals.append(float(model(x)[0, target]))
        h.remove()
    return (vals[0] - vals[1]) / (2 * eps)


@test
def gradient_matches_finite_differences():
    for inplace, layer_name in ((False, "body.conv2"), (True, "body.conv2"), (False, "body.relu2")):
        model = Tiny(inplace=inplace).double()
        out = tmp(f"fd-{inplace}-{layer_name}.safetensors")
        x_u8 = images(3, 16, 0)
        ce.export(model, [layer_name], x_u8.float() / 255, out)
        t = load_file(str(out))
        layer = model.get_submodule(layer_name)
        rng = np.random.default_rng(0)
        checked = 0
        for i in range(3):
            x = (x_u8[i : i + 1].double() / 255)
            for _ in range(6):
                c, yy, xx = int(rng.integers(6)), int(rng.integers(16)), int(rng.integers(16))
                if layer_name == "body.relu2" and float(t["A"][i, c, yy, xx]) <= 1e-3:
                    continue  # ReLU kink: the derivative is one-sided there
                fd = finite_difference(model, layer, x, int(t["target"][i]), (0, c, yy, xx))
                g = float(t["G"][i, c, yy, xx])
                assert abs(fd - g) <= 1e-5 + 1e-4 * abs(fd), (
                    f"{layer_name} inplace={inplace} image {i} entry {(c, yy, xx)}: G {g} vs finite difference {fd}")
                checked += 1
        assert checked >= 8, checked


@test
def inplace_relu_after_the_layer_does_not_alias():
    """`body.relu2` is ReLU(inplace=True): A must be the conv output (with negative values)."""
    model = Tiny(inplace=True).eval()
    out = tmp("inplace.safetensors")
    assert export(*tiny_args(out, 4, "--layer", "body.conv2", kwargs={"inplace": True})) == 0
    t = load_file(str(out))
    x = images(4, 16, 0).float() / 255
    ref = Tiny(inplace=False).eval()
    # reference: the conv output and d logit / d conv-output, computed without any in-place op
    with torch.enable_grad():
        h1 = ref.body.relu1(ref.body.conv1(x))
        a = ref.body.conv2(h1).detach().requires_grad_(True)
        logits = ref.fc(torch.relu(a).mean((2, 3)))
        tg = logits.argmax(1)
        logits.gather(1, tg[:, None]).sum().backward()
    assert float(t["A"].min()) < 0, "A has no negative values: it was overwritten by the in-place ReLU"
    assert_close(t["A"], a.detach(), 1e-5, "A (pre-ReLU conv output)")
    assert_close(t["G"], a.grad, 1e-6, "G (gradient w.r.t. the conv output)")
    assert torch.equal(t["target"], tg)
    # the naive approach (keep the hook's output tensor) would have seen the post-ReLU values:
    kept = []
    h = model.body.conv2.register_forward_hook(lambda m, i, o: kept.append(o))
    with torch.no_grad():
        model(x)
    h.remove()
    assert float(kept[0].min()) >= 0, "the test model no longer exercises aliasing"


# ------------------------------------------------------------------------------------------
# Score-CAM, Ablation-CAM, Grad-CAM against pytorch-grad-cam (from the cache, in numpy)
# ------------------------------------------------------------------------------------------


def postprocess(cams: np.ndarray, size) -> np.ndarray:
    """docs/run.md, pytorch-grad-cam: min-max, bilinear resize, min-max again."""
    import cv2

    out = []
    for c in cams:
        c = c - c.min()
        c = c / (1e-7 + c.max())
        out.append(cv2.resize(c.astype(np.float32), (size[1], size[0])))
    out = np.maximum(np.stack(out), 0)
    res = []
    for c in out:
        c = c - c.min()
        res.append(c / (1e-7 + c.max()))
    return np.stack(res).astype(np.float32)


def library_cam(cls, model, layer, x, targets, **kw):
    try:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise Skip("pytorch-grad-cam is not installed (scripts/install-torch.sh installs it)")
    cam = cls(model=model, target_layers=[layer], **kw)
    if hasattr(cam, "batch_size"):
        cam.batch_size = 64
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
        res = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return res


def comparison_cache():
    """TinyStride on 6 random 32x32 images, f32, with score and ablation."""
    out = tmp("compare.safetensors")
    if not out.exists():
        assert export("--model", f"{MODELS}:TinyStride", "--layer", "features.3", "--images",
                      save_images(6, 32, 3), "--score", "--ablation", "-o", out) == 0
    return out, load_file(str(out))


@test
def cache_reproduces_pytorch_grad_cam_gradcam():
    from pytorch_grad_cam import GradCAM

    out, t = comparison_cache()
    A, G = t["A"].numpy(), t["G"].numpy()
    mine = postprocess(np.maximum((G.mean((2, 3))[:, :, None, None] * A).sum(1), 0), (32, 32))
    model = TinyStride().eval()
    lib = library_cam(GradCAM, model, model.features[3], images(6, 32, 3).float() / 255, t["target"])
    assert_close(mine, lib, 1e-4, "Grad-CAM from the cache vs pytorch-grad-cam")


@test
def score_matches_pytorch_grad_cam_scorecam():
    from pytorch_grad_cam import ScoreCAM

    out, t = comparison_cache()
    A, score = t["A"].numpy(), t["score"]
    w = torch.softmax(score, -1).numpy()
    mine = postprocess(np.maximum((w[:, :, None, None] * A).sum(1), 0), (32, 32))
    model = TinyStride().eval()
    lib = library_cam(ScoreCAM, model, model.features[3], images(6, 32, 3).float() / 255, t["target"])
    assert_close(mine, lib, 1e-4, "Score-CAM from the cached score vs pytorch-grad-cam")


@test
def ablation_matches_pytorch_grad_cam_ablationcam():
    from pytorch_grad_cam import AblationCAM

    out, t = comparison_cache()
    A, abl, logit = t["A"].numpy(), t["ablation"].numpy(), t["logit"].numpy()
    w = (logit[:, None] - abl) / logit[:, None]
    mine = postprocess(np.maximum((w[:, :, None, None] * A).sum(1), 0), (32, 32))
    model = TinyStride().eval()
    lib = library_cam(AblationCAM, model, model.features[3], images(6, 32, 3).float() / 255, t["target"])
    assert_close(mine, lib, 1e-4, "Ablation-CAM from the cached ablation vs pytorch-grad-cam")
    # a layer with negative activations (before the ReLU): the library's AblationLayer sets the
    # j-th channel of each batch to min - (j+1)*1e7; the same batch (64 here, library_cam's) gives the same
    out2 = tmp("compare-prerelu.safetensors")
    assert export("--model", f"{MODELS}:TinyStride", "--layer", "features.2", "--images", save_images(6, 32, 3),
                  "--ablation", "--channel-batch", "64", "-o", out2) == 0
    t2 = load_file(str(out2))
    assert float(t2["A"].min()) < 0
    A, abl, logit = t2["A"].numpy(), t2["ablation"].numpy(), t2["logit"].numpy()
    w = (logit[:, None] - abl) / logit[:, None]
    mine = postprocess(np.maximum((w[:, :, None, None] * A).sum(1), 0), (32, 32))
    lib = library_cam(AblationCAM, model, model.features[2], images(6, 32, 3).float() / 255, t2["target"])
    assert_close(mine, lib, 1e-4, "Ablation-CAM before the ReLU vs pytorch-grad-cam")


@test
def recipro_equals_camc_torch_reciprocam():
    from camc.torch import CAM

    out = tmp("recipro.safetensors")
    assert export("--model", f"{MODELS}:TinyStride", "--layer", "features.3", "--images",
                  save_images(4, 32, 5), "--recipro", "--channel-batch", "20", "-o", out) == 0
    t = load_file(str(out))
    assert list(t["recipro"].shape) == [4] + list(t["A"].shape[2:]), t["recipro"].shape
    assert "Recipro-CAM" in meta(out)["recipro"]
    mine = postprocess(t["recipro"].numpy(), (32, 32))
    model = TinyStride().eval()
    x = images(4, 32, 5).float() / 255
    with CAM(model, [model.features[3]], program="reciprocam") as cam:
        ref = cam(x, targets=[int(c) for c in t["target"]]).numpy()
    assert_close(mine, ref, 1e-5, "cached recipro vs camc.torch.CAM(program='reciprocam')")


def shapley_cache():
    """TinySmooth on 6 random 32x32 images, f32, with H (--hvp)."""
    out = tmp("shapley.safetensors")
    if not out.exists():
        assert export("--model", f"{MODELS}:TinySmooth", "--layer", "features.2", "--images",
                      save_images(6, 32, 4), "--hvp", "-o", out) == 0
    return out, load_file(str(out))


@test
def hvp_matches_pytorch_grad_cam_shapleycam():
    from pytorch_grad_cam import ShapleyCAM

    out, t = shapley_cache()
    A, G, H = t["A"].numpy(), t["G"].numpy(), t["H"].numpy()
    assert H.shape == A.shape and t["H"].dtype == torch.float32, (H.shape, t["H"].dtype)
    assert float(np.abs(H).max()) > 1e-3 * float(np.abs(G).max()), "H is ~0: the test model exercises nothing"
    assert "hvp" in meta(out)
    # stdlib/shapleycam.cam, in numpy
    w = (G - 0.5 * H).mean((2, 3))
    mine = postprocess(np.maximum((w[:, :, None, None] * A).sum(1), 0), (32, 32))
    model = TinySmooth().eval()
    lib = library_cam(ShapleyCAM, model, model.features[2], images(6, 32, 4).float() / 255, t["target"])
    assert_close(mine, lib, 1e-4, "ShapleyCAM from the cached H vs pytorch-grad-cam")


@test
def hvp_is_the_hessian_times_a_also_under_inplace_ops():
    """H = d(G . A)/dA = Hessian(logit) A: the change of G along A, by central differences
    (scaling the layer's output by 1 +- eps through a hook), in float64; the same with a
    SiLU(inplace=True) right after the layer. The perturbed cache gets H too."""
    x_u8 = images(2, 32, 4)
    ref = None
    for inplace in (False, True):
        model = TinySmooth(inplace=inplace).double()
        out = tmp(f"hvp-fd-{inplace}.safetensors")
        ce.export(model, ["features.2"], x_u8, out, hvp=True, perturb=0.05)
        t = load_file(str(out))
        assert "H" in load_file(str(tmp(f"hvp-fd-{inplace}_perturbed.safetensors")))
        layer = model.features[2]
        x = x_u8.double() / 255
        eps = 1e-5
        grads = []
        for sign in (1, -1):
            kept = []

            def hook(m, i, o, sign=sign):
                o = o * (1 + sign * eps)
                kept.append(o)
                return o.clone()  # the in-place SiLU must not modify the tensor differentiated against

            h = layer.register_forward_hook(hook)
            logits = model(x)
            h.remove()
            grads.append(torch.autograd.grad(logits.gather(1, t["target"][:, None]).sum(), kept[0])[0])
        # G(A (1 + eps)) - G(A (1 - eps)) = 2 eps Hess A
        fd = (grads[0] - grads[1]) / (2 * eps)
        assert_close(t["H"], fd.detach(), 1e-6 + 1e-5 * float(fd.abs().max()), f"H vs finite differences (inplace={inplace})")
        if ref is None:
            ref = t
        else:
            for name in ("A", "G", "H"):
                assert_close(t[name], ref[name], 1e-10, f"{name} with an in-place SiLU after the layer")


@test
def perturbed_cache():
    out = tmp("pert.safetensors")
    assert export(*tiny_args(out, 4, "--layer", "body.relu2", "--perturb", "0.1", "--seed", "3")) == 0
    p = tmp("pert_perturbed.safetensors")
    assert p.exists(), "no perturbed cache"
    a, b = load_file(str(out)), load_file(str(p))
    assert set(a) == set(b), (sorted(a), sorted(b))
    assert torch.equal(a["target"], b["target"])
    assert not torch.equal(a["image"], b["image"]) and not torch.equal(a["A"], b["A"])
    diff = (a["image"].float() - b["image"].float()).abs().mean() / 255
    assert 0.03 < float(diff) < 0.12, float(diff)
    assert "perturbation" in meta(p)
    # deterministic for a seed
    out2 = tmp("pert2.safetensors")
    assert export(*tiny_args(out2, 4, "--layer", "body.relu2", "--perturb", "0.1", "--seed", "3")) == 0
    assert torch.equal(load_file(str(tmp("pert2_perturbed.safetensors")))["A"], b["A"])


# ------------------------------------------------------------------------------------------
# User mistakes: exit 1 with a message, no traceback, nothing written
# ------------------------------------------------------------------------------------------


def in_process(*argv):
    """main() in this process with stderr captured: (exit code, stdout, stderr). An uncaught
    exception (what a user would see as a traceback) propagates and fails the test."""
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = ce.main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def expect_error(args, *needles, subprocess=False):
    out = None
    if "-o" in args:
        out = Path(args[args.index("-o") + 1])
    rc, so, se = (cli if subprocess else in_process)(*args)
    assert rc == 1, f"exit {rc} (want 1); stderr: {se.strip()[-500:]}"
    assert "Traceback" not in se, f"traceback on a user mistake:\n{se}"
    assert se.startswith("camc.export: error:"), se
    for nd in needles:
        assert nd in se, f"{nd!r} not in the message: {se.strip()}"
    if out is not None and out.suffix == ".safetensors":
        assert not out.exists(), f"{out} written despite the error"
    return se


@test
def error_unknown_layer_lists_close_names():
    # as a user runs it: a separate process, exit status 1, one message, no traceback
    expect_error(tiny_args(tmp("e1.safetensors"), 2, "--layer", "body.conv3"), "body.conv3", "body.conv2",
                 subprocess=True)
    expect_error(tiny_args(tmp("e1b.safetensors"), 2, "--layer", "bdy.relu2"), "body.relu2")


@test
def error_target_count():
    expect_error(tiny_args(tmp("e2.safetensors"), 3, "--layer", "body.relu2", "--target", "1,2"), "2 targets for 3 images")
    tf = tmp("targets4.json")
    tf.write_text("[0, 1, 2, 3]")
    expect_error(tiny_args(tmp("e2b.safetensors"), 3, "--layer", "body.relu2", "--target", tf), "4 targets for 3 images")
    expect_error(tiny_args(tmp("e2c.safetensors"), 2, "--layer", "body.relu2", "--target", "7"), "out of range", "5 classes")


@test
def error_box_count():
    bf = tmp("boxes-wrong.json")
    bf.write_text(json.dumps([[0, 0, 4, 4]] * 4))
    expect_error(tiny_args(tmp("e3.safetensors"), 3, "--layer", "body.relu2", "--boxes", bf), "4 images", "3 images")
    bf2 = tmp("boxes-bad.json")
    bf2.write_text(json.dumps([[0, 0, 4], [0, 0, 4, 4], [0, 0, 4, 4]]))
    expect_error(tiny_args(tmp("e3b.safetensors"), 3, "--layer", "body.relu2", "--boxes", bf2), "image 0")
    bf3 = tmp("boxes-empty.json")
    bf3.write_text(json.dumps([[4, 0, 4, 4]] * 3))
    expect_error(tiny_args(tmp("e3c.safetensors"), 3, "--layer", "body.relu2", "--boxes", bf3), "empty")


@test
def error_inputs_and_model():
    expect_error(["--model", f"{MODELS}:Tiny", "--layer", "body.relu2", "--images", tmp("nope.pt"), "-o", tmp("e4.safetensors")],
                 "no such file")
    expect_error(["--model", f"{MODELS}:Tinny", "--layer", "x", "--images", save_images(2), "-o", tmp("e5.safetensors")],
                 "Tiny")
    expect_error(["--model", "no_such_module_xyz:Net", "--layer", "x", "--images", save_images(2), "-o", tmp("e6.safetensors")],
                 "cannot import")
    bad = tmp("channels-last.npy")
    np.save(bad, np.zeros((2, 16, 16, 3), dtype=np.uint8))
    expect_error(["--model", f"{MODELS}:Tiny", "--layer", "body.relu2", "--images", bad, "-o", tmp("e7.safetensors")],
                 "channels-last")
    tmp("a-folder").mkdir(exist_ok=True)
    expect_error(["--model", f"{MODELS}:Tiny", "--layer", "body.relu2", "--images", save_images(2), "-o", tmp("a-folder")],
                 "is a folder")
    expect_error(tiny_args(tmp("e8.safetensors"), 2, "--layer", "body.conv2", "--head", "fc"), "--head fc")
    expect_error(tiny_args(tmp("e9.safetensors"), 2, "--layer", "body.relu2", "--size", "16x16"), "--size")
    w = tmp("wrong-weights.safetensors")
    from safetensors.torch import save_file
    save_file({"fc.weight": torch.zeros(2, 2)}, str(w))
    expect_error(tiny_args(tmp("e10.safetensors"), 2, "--layer", "body.relu2", "--weights", w), "does not fit")
    for hvp in ([], ["--hvp"]):
        expect_error(["--model", f"{MODELS}:WithTuple", "--layer", "pair", "--images", save_images(2),
                      "-o", tmp("e11.safetensors"), *hvp], "tuple", "not a tensor")


@test
def command_line_writes_one_cache_per_layer_and_says_where():
    """`python -m camc.export` as a user runs it: the summary lines, exit 0."""
    out = tmp("cli-layers")
    rc, so, se = cli(*tiny_args(out, 3, "--layer", "body.conv2", "--layer", "body.relu2", "--hvp"))
    assert rc == 0, f"exit {rc}: {se.strip()[-800:]}"
    lines = so.strip().splitlines()
    assert lines == [
        f"camc.export: 3 images, layer body.conv2 -> {out / 'body.conv2.safetensors'} (no GAP+linear head found: no W/head.*)",
        f"camc.export: 3 images, layer body.relu2 -> {out / 'body.relu2.safetensors'} (head: fc)",
    ], lines
    assert "H" in load_file(str(out / "body.conv2.safetensors"))


@test
def usage_error_exits_2():
    rc, so, se = cli("--layer", "x")
    assert rc == 2 and "required" in se and "Traceback" not in se, (rc, se)


# ------------------------------------------------------------------------------------------
# camc itself (needs `camc run`; skips until it exists)
# ------------------------------------------------------------------------------------------


def camc_binary():
    cands = [os.environ.get("CAMC")] if os.environ.get("CAMC") else []
    cands += [ROOT / "target" / "release" / "camc", ROOT / "target" / "debug" / "camc"]
    found = [Path(c) for c in cands if c and Path(c).exists()]
    if not found:
        raise Skip("no camc binary (target/release/camc or target/debug/camc); build it first")
    for b in found:
        r = subprocess.run([str(b), "run", "--help"], capture_output=True, text=True)
        if r.returncode == 0:
            return b
    raise Skip(f"{found[0]} has no working `run` subcommand yet (camc run --help exited {r.returncode})")


def camc_run(program, cache, *extra):
    b = camc_binary()
    out = tmp(f"camc-{program}.npy")
    r = subprocess.run([str(b), "run", program, "--cache", str(cache), "--backend", "interp", "-o", str(out), *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"camc run {program} exited {r.returncode}: {r.stderr.strip()[-800:]}"
    res = np.load(out)
    assert res.dtype == np.float32, res.dtype
    return res


@test
def camc_gradcam_matches_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM

    out, t = comparison_cache()
    res = camc_run("gradcam", out)
    model = TinyStride().eval()
    lib = library_cam(GradCAM, model, model.features[3], images(6, 32, 3).float() / 255, t["target"])
    assert_close(res, lib, 1e-4, "camc gradcam vs pytorch-grad-cam GradCAM")


@test
def camc_gradcam_on_f16_demo_style_cache():
    from pytorch_grad_cam import GradCAM

    out = tmp("compare-f16.safetensors")
    assert export("--model", f"{MODELS}:TinyStride", "--layer", "features.3", "--images",
                  save_images(6, 32, 3), "--dtype", "f16", "--shard-size", "4", "-o", tmp("compare-f16")) == 0
    res = camc_run("gradcam", str(tmp("compare-f16")) + "/*.safetensors")
    t = load_file(str(tmp("compare-f16") / "cache-00000.safetensors"))
    A = torch.cat([load_file(str(f))["A"] for f in sorted(tmp("compare-f16").iterdir())]).float().numpy()
    G = torch.cat([load_file(str(f))["G"] for f in sorted(tmp("compare-f16").iterdir())]).float().numpy()
    mine = postprocess(np.maximum((G.mean((2, 3))[:, :, None, None] * A).sum(1), 0), (32, 32))
    assert_close(res, mine, 1e-4, "camc gradcam on sharded f16 vs numpy on the same f16 tensors")


@test
def camc_scorecam_and_ablationcam_match_pytorch_grad_cam():
    from pytorch_grad_cam import AblationCAM, ScoreCAM

    out, t = comparison_cache()
    model = TinyStride().eval()
    x = images(6, 32, 3).float() / 255
    for prog, cls in (("scorecam", ScoreCAM), ("ablationcam", AblationCAM)):
        res = camc_run(prog, out)
        lib = library_cam(cls, model, model.features[3], x, t["target"])
        assert_close(res, lib, 1e-4, f"camc {prog} vs pytorch-grad-cam")


@test
def camc_shapleycam_matches_pytorch_grad_cam():
    from pytorch_grad_cam import ShapleyCAM

    out, t = shapley_cache()
    res = camc_run("shapleycam", out)
    model = TinySmooth().eval()
    lib = library_cam(ShapleyCAM, model, model.features[2], images(6, 32, 4).float() / 255, t["target"])
    assert_close(res, lib, 1e-4, "camc shapleycam vs pytorch-grad-cam ShapleyCAM")


@test
def demo_cache_is_consistent():
    demo = ROOT / "examples" / "data" / "demo.safetensors"
    if not demo.exists():
        raise Skip("examples/data/demo.safetensors not generated")
    t = load_file(str(demo))
    n = t["A"].shape[0]
    assert t["A"].dtype == torch.float16 and list(t["A"].shape[1:]) == [64, 8, 8], t["A"].shape
    assert list(t["image"].shape) == [n, 3, 64, 64] and list(t["boxes"].shape) == [n, 4]
    for name in ("G", "target", "logits", "logit", "W", "head.weight", "head.bias", "score", "ablation", "label"):
        assert name in t, name
    assert meta(demo)["image_size"] == "64,64"
    b = t["boxes"]
    assert bool(((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]) & (b >= 0).all(1) & (b <= 64).all(1)).all())
    # the committed model reproduces the cached logits
    sys.path.insert(0, str(ROOT / "examples" / "pytorch"))
    from demo_model import MEAN, STD, DemoNet

    model = DemoNet()
    ce.load_weights(model, str(ROOT / "examples" / "data" / "demo_model.safetensors"))
    model.eval()
    x = (t["image"][:16].float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x)
    assert_close(logits, t["logits"][:16], 1e-3, "demo model logits vs cache")
    acc = float((t["target"] == t["label"]).float().mean())
    assert acc > 0.9, f"demo model accuracy on the cached images {acc:.3f}"
    pert = ROOT / "examples" / "data" / "demo_perturbed.safetensors"
    if pert.exists():
        p = load_file(str(pert))
        assert torch.equal(p["target"], t["target"]) and p["A"].shape == t["A"].shape


def main(argv):
    wanted = [a for a in argv if not a.startswith("-")]
    passed = failed = skipped = 0
    t00 = time.time()
    print(f"camc from {CAMC_PARENT}", flush=True)
    for fn in TESTS:
        name = fn.__name__
        if wanted and not any(w in name for w in wanted):
            continue
        t0 = time.time()
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"SKIP {name}: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name}\n" + "".join("    " + ln for ln in traceback.format_exc().splitlines(True)), flush=True)
        else:
            passed += 1
            print(f"ok   {name} ({time.time() - t0:.1f}s)", flush=True)
    if failed or os.environ.get("KEEP_SCRATCH"):
        print(f"({time.time() - t00:.0f}s; scratch files kept in {TMP})")
    else:
        import shutil

        shutil.rmtree(TMP, ignore_errors=True)
        print(f"({time.time() - t00:.0f}s)")
    print(f"exporter: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
