"""Opti-CAM in camc against the official algorithm (a line-by-line port of hanwei0912/OptiCAM's
Basic_OptCAM in python/tests/test_torch_opticam.py, plain torch) on the same model and batch
(docs/benchmarks.md).

ResNet-50 with random weights (seed 0), a batch of random images, targets = the argmax class,
target layer `layer4`, 50 steps of Adam (lr 0.1), one timed run each after a warm-up of camc's
kernels. Prints both times, the steps each ran (early stop included), the largest difference of
their maps, and camc's part of a step: the program's map and its gradient with respect to `w`
(forward + backward of `S`, post-processing included) against the whole step.

    PYTHONPATH=python:python/tests .venv-py/bin/python benches/python_opticam.py --threads 2 --batch 16
"""
import argparse
import os
import sys
import time

import torch

import camc
from camc.torch import CAM
from test_torch_opticam import OfficialOptCAM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_cam import resnet50_batch  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    args, device, model, x, classes = resnet50_batch(parser)
    layer = model.layer4
    calls = []
    counter = model.register_forward_pre_hook(lambda m, i: calls.append(1))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    official = OfficialOptCAM(model, layer)
    sync()
    start = time.perf_counter()
    expected = official(x, torch.tensor(classes, device=device))
    sync()
    t_official = time.perf_counter() - start
    official_steps = len(calls) - 2  # the hooked capture and f(x) are not steps
    with CAM(model, [layer], program="opticam") as cam:
        cam(x[:1], targets=classes[:1])  # compiles camc's kernels for these sizes
        calls.clear()
        sync()
        start = time.perf_counter()
        got = cam(x, targets=classes)
        sync()
        t_camc = time.perf_counter() - start
    camc_steps = len(calls) - 1  # the capture is not a step
    counter.remove()
    # camc's part of one step: S and its gradient with respect to w.
    kept = []
    handle = layer.register_forward_hook(lambda m, i, o: kept.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    prog = camc.compile("opticam")
    w = torch.full((x.shape[0], kept[0].shape[1]), 0.5, device=device, requires_grad=True)
    size = tuple(x.shape[2:])
    grad = torch.randn(x.shape[0], *size, device=device)

    def s_step():
        maps = prog(A=kept[0], w=w, size=size)
        (g,) = torch.autograd.grad(maps, [w], grad)
        return g

    s_step()
    sync()
    start = time.perf_counter()
    reps = 10
    for _ in range(reps):
        s_step()
    sync()
    t_s = (time.perf_counter() - start) / reps
    diff = (got - expected.to(got.device)).abs()
    print(f"official Basic_OptCAM port   {t_official:9.2f} s  {official_steps} steps")
    print(f"camc CAM(program='opticam')  {t_camc:9.2f} s  {camc_steps} steps   "
          f"{t_official / t_camc:.2f}x the official's speed; maps: mean |diff| {float(diff.mean()):.1e}, "
          f"max {float(diff.max()):.1e}")
    per_step = t_camc / max(1, camc_steps)
    print(f"camc's part of a step (S + dS/dw) {t_s * 1e3:9.1f} ms of {per_step * 1e3:.1f} ms "
          f"= {100 * t_s / per_step:.2f}% (target < 5%)")


if __name__ == "__main__":
    main()
