"""camc vs pytorch-grad-cam on the same tensors (docs/benchmarks.md, CPU).

Writes a ResNet-50-like cache (n=256, k=2048, 7x7, f32 random A >= 0 and signed G), then times:
  - pytorch-grad-cam's post-backward compute on the tensors already in memory: its
    `get_cam_weights` + weighted sum (`get_cam_image`) + ReLU + `scale_cam_image` to 224x224;
  - the whole `camc run METHOD --cache C -o out.npy --size 224,224` process (load, compile,
    compute, post-process, write), best of 3, each into a new file (the previous run's output is
    removed first, untimed: truncating a 51 MB file in place costs the kernel ~20 ms that is
    no part of computing the new one; `--overwrite` keeps it in the timing);
and prints the ratios measured in this run, plus the largest difference between the outputs.

    scripts/install-torch.sh && cargo build --release
    .venv-py/bin/python benches/vs_pytorch_grad_cam.py [--images 256] [--camc target/release/camc]
        [--backends cpu,cuda] [--methods gradcam,gradcampp,eigencam]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import save_file

from pytorch_grad_cam_compute import best, camera, compare, grad_cam_compute


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--camc", default="target/release/camc")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="cpu", help="comma-separated camc backends to time (cpu, cuda)")
    parser.add_argument("--methods", default="gradcam,gradcampp",
                        help="comma-separated: gradcam, gradcampp, eigencam (pytorch-grad-cam's SVD is slow)")
    parser.add_argument("--overwrite", action="store_true", help="time camc writing over the previous output")
    args = parser.parse_args()
    n, k, h, w, size = args.images, 2048, 7, 7, 224
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(n, k, h, w)), 0).astype(np.float32)
    g = rng.normal(size=(n, k, h, w)).astype(np.float32)
    print(f"n={n} k={k} {h}x{w} -> {size}x{size}, f32; torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache.safetensors")
        save_file({"A": a, "G": g}, cache, metadata={"image_size": f"{size},{size}"})
        for method in args.methods.split(","):
            cam = camera(method)
            t_pgc, expected = best(args.repeats, lambda: grad_cam_compute(cam, a, g, size))
            out = os.path.join(tmp, "out.npy")
            for backend in args.backends.split(","):
                cmd = [args.camc, "run", method, "--cache", cache, "-o", out, "--size", f"{size},{size}",
                       "--backend", backend]
                def remove_output():
                    if not args.overwrite and os.path.exists(out):
                        os.remove(out)

                t_camc, _ = best(args.repeats, lambda: subprocess.run(cmd, check=True), remove_output)
                got = np.load(out)
                print(f"{method:10s} pytorch-grad-cam {t_pgc*1e3:8.1f} ms   camc run --backend {backend:4s} "
                      f"(whole process) {t_camc*1e3:8.1f} ms   speed-up {t_pgc/t_camc:6.1f}x   "
                      f"{compare(method, got, expected)}")


if __name__ == "__main__":
    sys.exit(main())
