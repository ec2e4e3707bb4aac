#!/usr/bin/env python3
"""Registers, spills and shared memory of every stdlib CUDA kernel, as ptxas reports them when
NVRTC compiles the snapshots (tests/out/cuda/stdlib/*.cu, written for 512 threads) to a cubin for
one architecture. Needs only NVRTC, no GPU:

    eval "$(bash scripts/install-nvrtc.sh)"
    python3 scripts/ptxas-report.py [--arch sm_90] [FILE.cu ...]
"""
import argparse
import ctypes
import glob
import re
import sys


def compile_log(nvrtc, path, arch):
    source = open(path, "rb").read()
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, path.encode(), 0, None, None):
        sys.exit(f"{path}: nvrtcCreateProgram failed")
    options = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"--ptxas-options=-v"]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    if status:
        sys.exit(f"{path}: NVRTC failed:\n{log.value.decode()}")
    return log.value.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    try:
        nvrtc = ctypes.CDLL("libnvrtc.so")
    except OSError as error:
        sys.exit(f"NVRTC not found ({error}): eval \"$(bash scripts/install-nvrtc.sh)\"")
    files = args.files or sorted(glob.glob("tests/out/cuda/stdlib/*.cu"))
    print(f"| entry point ({args.arch}) | registers | spill stores | spill loads | shared memory |")
    print("|---|---|---|---|---|")
    for path in files:
        entry = None
        spills = None
        for line in compile_log(nvrtc, path, args.arch).splitlines():
            if m := re.search(r"Compiling entry function '(\w+)'", line):
                entry, spills = m.group(1), None
            elif m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
                spills = spills or (m.group(1), m.group(2))
            elif (m := re.search(r"Used (\d+) registers.*?(\d+) bytes smem", line)) and entry:
                stores, loads = spills or ("?", "?")
                print(f"| {entry} | {m.group(1)} | {stores} B | {loads} B | {m.group(2)} B |")
                entry = None


if __name__ == "__main__":
    main()
