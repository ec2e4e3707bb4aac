#!/usr/bin/env python3
"""Runs a kernel emitted by `camc emit PROGRAM --target ptx` from another runtime: plain
CUDA driver calls through ctypes (no CuPy, no PyTorch), following the ABI of docs/cuda.md.

    camc emit gradcam --target ptx --arch sm_90 -o gradcam.ptx
    python3 examples/cuda_abi/run_ptx.py gradcam.ptx camc_gradcam_f32

Feeds random A and G for n images of [k,h,w] = [512,7,7] and prints the first image's [h,w]
map next to the same Grad-CAM computed with numpy. Needs numpy, a GPU and its driver.
"""
import ctypes
import sys

import numpy as np

THREADS = 512  # blockDim.x every entry point is launched with


def check(result, what):
    if result != 0:
        raise RuntimeError(f"{what} failed with CUresult {result}")


def main(ptx_path, entry, n=4, k=512, h=7, w=7):
    cuda = ctypes.CDLL("libcuda.so.1")
    check(cuda.cuInit(0), "cuInit")
    device, context = ctypes.c_int(), ctypes.c_void_p()
    check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")

    module, function = ctypes.c_void_p(), ctypes.c_void_p()
    ptx = open(ptx_path, "rb").read() + b"\0"
    check(cuda.cuModuleLoadData(ctypes.byref(module), ptx), "cuModuleLoadData")
    check(cuda.cuModuleGetFunction(ctypes.byref(function), module, entry.encode()), "cuModuleGetFunction")

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, k, h, w), dtype=np.float32)
    g = rng.standard_normal((n, k, h, w), dtype=np.float32)
    grid = min(n, 1024)  # any gridDim.x >= 1: images are grid-strided
    scratch_floats = grid * (k + h * w + h * w)  # the .cu header gives this sum for each kernel

    def device_buffer(nbytes, host=None):
        ptr = ctypes.c_uint64()
        check(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cuMemAlloc")
        if host is not None:
            check(cuda.cuMemcpyHtoD_v2(ptr, ctypes.c_void_p(host.ctypes.data), ctypes.c_size_t(host.nbytes)), "cuMemcpyHtoD")
        return ptr

    d_a, d_g = device_buffer(a.nbytes, a), device_buffer(g.nbytes, g)
    d_out = device_buffer(n * h * w * 4)
    d_scratch = device_buffer(scratch_floats * 4)
    # The ABI: one pointer per input in the kernel's order, out, scratch, bad (NULL: raw maps),
    # then n, k, d, h, w, out_h, out_w (0, 0: the raw maps, no post-processing).
    args = [d_a, d_g, d_out, d_scratch, ctypes.c_uint64(0)] + [ctypes.c_int(v) for v in (n, k, 1, h, w, 0, 0)]
    params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.byref(x), ctypes.c_void_p) for x in args])
    check(cuda.cuLaunchKernel(function, ctypes.c_uint(grid), 1, 1, THREADS, 1, 1, 0, None, params, None), "cuLaunchKernel")
    check(cuda.cuCtxSynchronize(), "cuCtxSynchronize")

    out = np.empty((n, h, w), dtype=np.float32)
    check(cuda.cuMemcpyDtoH_v2(ctypes.c_void_p(out.ctypes.data), d_out, ctypes.c_size_t(out.nbytes)), "cuMemcpyDtoH")
    weights = g.mean(axis=(2, 3))
    expected = np.maximum((weights[:, :, None, None] * a).sum(axis=1), 0)
    print("cuda :", out[0].ravel()[:6])
    print("numpy:", expected[0].ravel()[:6])
    print("max abs difference:", float(np.abs(out - expected).max()))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
