"""camc.torch.CAM vs pytorch-grad-cam on the same model and batch (docs/benchmarks.md).

ResNet-50 with random weights (seed 0), a batch of random images, targets = the argmax class,
target layer `layer4[-1]`. In one run, best of --repeats (after one warm-up call each):
  - forward + backward alone, twice: with the backward pass through the whole model (every
    parameter's gradient, as `loss.backward()` computes it), and down to the target layer only
    (`torch.autograd.grad` of the summed target logits with respect to the layer's output: what
    any gradient CAM has to pay, and the baseline of the ratios);
  - pytorch-grad-cam 1.5.7's GradCAM and GradCAMPlusPlus (`cam(input_tensor, targets)`);
  - camc.torch.CAM with program "gradcam" and "gradcampp";
and prints each one's time, its ratio to forward + backward to the layer (the least a gradient
CAM computes; camc's target: ≤ 1.05), camc's
speed-up over pytorch-grad-cam, and the largest difference between their maps. On a GPU it also
counts the host↔device copies made during one camc call (torch.profiler).

    bash scripts/install-torch.sh            # torch, pytorch-grad-cam into .venv-py
    PYTHONPATH=python .venv-py/bin/python benches/python_cam.py [--device cpu|cuda]
        [--batch 32] [--size 224] [--repeats 3] [--threads N]
"""
import argparse
import time

import torch
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camc.torch import CAM


def timed(fn, device, repeats):
    """Best wall time of `repeats` calls after one warm-up, and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def copies_during(fn):
    """Host↔device memcpy events recorded while `fn` runs on a GPU."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    return sum("HtoD" in n for n in names), sum("DtoH" in n for n in names)


def resnet50_batch(parser):
    """Parses the common options (--device --batch --size --repeats --threads and the caller's
    own), sets torch's threads and builds ResNet-50 with random weights (seed 0), a batch of
    random images and their argmax classes: (args, device, model, x, classes)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    print(f"resnet50 (random weights), batch {args.batch}, {args.size}x{args.size}, {device}, "
          f"{torch.get_num_threads()} CPU threads, best of {args.repeats}")
    return args, device, model, x, classes


def main():
    args, device, model, x, classes = resnet50_batch(argparse.ArgumentParser())
    layers = [model.layer4[-1]]

    def forward_backward():
        model.zero_grad(set_to_none=True)
        out = model(x)
        out[torch.arange(len(classes)), classes].sum().backward()

    def forward_backward_to_layer():
        kept = []
        handle = layers[0].register_forward_hook(lambda m, i, o: kept.append(o))
        try:
            out = model(x)
        finally:
            handle.remove()
        torch.autograd.grad(out[torch.arange(len(classes)), classes].sum(), kept[0])

    full, _ = timed(forward_backward, device, args.repeats)
    base, _ = timed(forward_backward_to_layer, device, args.repeats)
    print(f"{'forward + full backward':<28}{full * 1e3:10.1f} ms   {full / base:.3f}   (every parameter's gradient)")
    print(f"{'forward + backward to layer':<28}{base * 1e3:10.1f} ms   1.000   (the gradient a CAM needs: the baseline)")
    rows = {}
    for method, reference in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)):
        targets = [ClassifierOutputTarget(c) for c in classes]
        with reference(model=model, target_layers=layers) as pgc:
            t_ref, ref_maps = timed(lambda: pgc(input_tensor=x, targets=targets), device, args.repeats)
        with CAM(model, target_layers=layers, program=method) as cam:
            t_camc, maps = timed(lambda: cam(x, targets=classes), device, args.repeats)
            copies = copies_during(lambda: cam(x, targets=classes)) if device.type == "cuda" else None
        diff = float((maps.float().cpu() - torch.from_numpy(ref_maps)).abs().max())
        rows[method] = (t_ref, t_camc)
        print(f"{'pytorch-grad-cam ' + method:<28}{t_ref * 1e3:10.1f} ms   {t_ref / base:.3f}")
        print(f"{'camc.torch.CAM ' + method:<28}{t_camc * 1e3:10.1f} ms   {t_camc / base:.3f}   "
              f"{t_ref / t_camc:.2f}x faster than pytorch-grad-cam, max |diff| {diff:.1e}"
              + (f", host<->device copies during a call: {copies[0]} HtoD, {copies[1]} DtoH" if copies else ""))
    worst = max(t_camc for _, t_camc in rows.values()) / base
    print(f"camc adds {100 * (worst - 1):+.1f}% to forward + backward to the layer (target: at most +5%)")


if __name__ == "__main__":
    main()
