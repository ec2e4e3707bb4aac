"""Recipro-CAM in camc (fused kernel and hook path) against the official code and pytorch-grad-cam
on the same model and batch (docs/benchmarks.md).

ResNet-50 with random weights (seed 0), a batch of random images, targets = the argmax class. In
one run, best of --repeats after one warm-up call each:
  - the forward pass alone (no_grad): what any CAM of the batch pays at least; and one image at
    a time, as the official code runs it (on a CPU, often faster per image than a batch of 32);
  - the floor of the hook path: the forward pass plus the layers after the target layer on the
    batch's h·w mosaic copies per image (ResNet's tail written out in plain torch, copies built
    beforehand), in chunks of 256 inputs;
  - camc.torch.CAM(program="reciprocam") at `layer4` (the fused kernel: GAP + fc head) and with
    the fused kernel switched off (the hook path), and at `layer3` (hook path: no head follows);
  - the fused kernel alone on the captured activations (`camc.compile("reciprocam")`);
  - the official Recipro-CAM (sybyun/ReciproCAM, src/recipro_cam.py, ported line by line in
    python/tests/test_torch_recipro.py): one image per call, as its `__call__` does;
  - pytorch-grad-cam 1.5.7's GradCAM on the batch, and ScoreCAM on --scorecam-images images
    (one forward pass per channel per image: 2048 per image here), scaled to the batch.
It prints each time, its ratio to the forward pass, the model calls the hook path makes, and the
largest difference between camc's maps and the official code's.

    bash scripts/install-torch.sh
    PYTHONPATH=python:python/tests .venv-py/bin/python benches/python_recipro.py [--device cpu|cuda]
        [--batch 32] [--size 224] [--repeats 3] [--threads N] [--scorecam-images 1]
        [--layers layer4,layer3]
"""
import argparse
import os
import sys
import time

import torch
from pytorch_grad_cam import GradCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import camc
from camc.torch import CAM
from camc.torch._recipro import mosaic, placements
from test_torch_recipro import official_maps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_cam import resnet50_batch, timed  # noqa: E402


def resnet_tail(model, layer_name):
    """The layers after `layer_name` (`layer3` or `layer4`) of a torchvision ResNet."""
    def tail(a):
        if layer_name == "layer3":
            a = model.layer4(a)
        return model.fc(torch.flatten(model.avgpool(a), 1))
    return tail


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="layer4,layer3",
                        help="target layers, of layer4 (fused kernel and hooks) and layer3 (hooks)")
    parser.add_argument("--scorecam-images", type=int, default=0,
                        help="images ScoreCAM runs on (default: 1 on a CPU, the batch on a GPU)")
    args, device, model, x, classes = resnet50_batch(parser)

    def forward():
        with torch.no_grad():
            return model(x)

    base, _ = timed(forward, device, args.repeats)

    def row(name, seconds, note=""):
        print(f"{name:<44}{seconds * 1e3:11.1f} ms {seconds / base:9.4f}  {note}")

    row("forward pass (no_grad)", base, "the baseline")

    def forward_one_by_one():
        with torch.no_grad():
            return [model(x[i:i + 1]) for i in range(x.shape[0])]

    t_single, _ = timed(forward_one_by_one, device, args.repeats)
    row("forward pass, one image at a time", t_single, "what the official code's loop runs")
    for layer_name in args.layers.split(","):
        layer = getattr(model, layer_name)
        kept = []
        handle = layer.register_forward_hook(lambda m, i, o: kept.append(o))
        forward()
        handle.remove()
        a = kept[0]
        h, w = a.shape[2:]
        copies = mosaic(a, placements(h, w, False, a.device, a.dtype))
        tail = resnet_tail(model, layer_name)

        def tail_on_copies():
            with torch.no_grad():
                return [tail(chunk) for chunk in copies.split(256)]

        t_tail, _ = timed(tail_on_copies, device, args.repeats)
        floor = base + t_tail
        row(f"{layer_name}: floor (forward + tail on copies)", floor,
            f"{h}x{w} positions, {copies.shape[0]} copies")
        del copies
        calls = []
        counter = model.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))
        with CAM(model, [layer], program="reciprocam") as cam:
            if layer_name == "layer4":
                t_fused, fused = timed(lambda: cam(x, targets=classes), device, args.repeats)
                assert cam.path == "fused", cam
                row(f"{layer_name}: camc fused path", t_fused, f"{100 * (t_fused - base) / base:+.2f}% of a forward")
            cam._fused = None  # the hook path, even where the head allows the fused kernel
            calls.clear()
            t_hooks, hooks = timed(lambda: cam(x, targets=classes), device, args.repeats)
            assert cam.path == "hooks", cam
            model_calls = len(calls) // (args.repeats + 1)
        counter.remove()
        row(f"{layer_name}: camc hook path", t_hooks,
            f"{t_hooks / floor:.3f} x the floor; {model_calls} model calls per CAM call")
        t_official, (reference, _) = timed(
            lambda: official_maps(model, layer, x, False, classes), device, 1)
        diff = float((hooks.cpu() - torch.from_numpy(reference)).abs().max())
        note = f"{t_official / t_hooks:.2f}x camc's hook path; camc hooks vs official max |diff| {diff:.1e}"
        if layer_name == "layer4":
            note += f", fused vs official {float((fused.cpu() - torch.from_numpy(reference)).abs().max()):.1e}"
        row(f"{layer_name}: official Recipro-CAM (per image)", t_official, note)
        if layer_name == "layer4":
            prog = camc.compile("reciprocam")
            fc = model.fc
            target = torch.tensor(classes, device=device)
            t_kernel, _ = timed(lambda: prog(A=a, head_weight=fc.weight.detach(), head_bias=fc.bias.detach(),
                                             target=target, size=(args.size, args.size)), device, args.repeats)
            row("layer4: camc fused kernel alone", t_kernel,
                f"{100 * t_kernel / base:.2f}% of a forward (target < 1%)")
    layers = [model.layer4[-1]]
    targets = [ClassifierOutputTarget(c) for c in classes]
    with GradCAM(model=model, target_layers=layers) as pgc:
        t_gradcam, _ = timed(lambda: pgc(input_tensor=x, targets=targets), device, args.repeats)
    row("pytorch-grad-cam GradCAM", t_gradcam)
    few = args.scorecam_images or (args.batch if device.type == "cuda" else 1)
    with ScoreCAM(model=model, target_layers=layers) as pgc:
        start = time.perf_counter()
        pgc(input_tensor=x[:few], targets=targets[:few])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_score = (time.perf_counter() - start) * args.batch / few
    row("pytorch-grad-cam ScoreCAM", t_score,
        f"one run on {few} image(s), scaled to {args.batch}" if few < args.batch else "one run")


if __name__ == "__main__":
    main()
