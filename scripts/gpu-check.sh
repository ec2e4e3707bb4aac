#!/usr/bin/env bash
# The checks only a GPU can run, as one prepared script: the `on_a_gpu` CUDA tests (every stdlib method
# against the interpreter, post-processing in the kernel, inputs in device memory on the
# caller's stream, batches split into launches) with CAMC_REQUIRE_GPU set, so that a missing GPU
# fails instead of skipping, then `cargo bench --bench gpu`, then (where a torch with CUDA is
# installed) the Python package's CUDA tests and its benchmark.
#
#     bash scripts/gpu-check.sh build   # here: builds the test and bench binaries into target/gpu-check/
#     bash scripts/gpu-check.sh run     # on the GPU machine (no network, no Rust needed there)
#
# `build` also installs NVRTC into .ci/nvrtc/ (scripts/install-nvrtc.sh); carry target/gpu-check
# and .ci/nvrtc to the GPU machine with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-check

case "${1:-}" in
build)
    bash scripts/install-nvrtc.sh >/dev/null
    mkdir -p "$out"
    for target in "--test cuda" "--bench gpu"; do
        # shellcheck disable=SC2086
        binary=$(cargo test --release $target --no-run --message-format=json 2>/dev/null |
            python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' | tail -n 1)
        cp "$binary" "$out/$(echo "$target" | awk '{print $2}')"
    done
    ls -la "$out"
    ;;
run)
    export LD_LIBRARY_PATH="$PWD/.ci/nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CAMC_REQUIRE_NVRTC=1 CAMC_REQUIRE_GPU=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    echo "== CUDA tests"
    "$out/cuda" --test-threads 1 on_a_gpu 2>&1 | grep -E "^test |skipped|panicked|test result"
    echo "== cargo bench --bench gpu (n = 256, then n = 1024)"
    "$out/gpu" --bench
    CAMC_BENCH_IMAGES=1024 "$out/gpu" --bench
    # The Python package on CUDA tensors: needs a Python with torch (CUDA build) there, and the
    # native module built here (scripts/test.sh puts it in python/camc/; carry that file).
    py="${PYTHON:-.venv-py/bin/python}"
    if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "== Python: camc.compile and camc.torch.CAM on CUDA tensors"
        PYTHONPATH=python "$py" -m unittest -v python/tests/test_cuda.py
        PYTHONPATH=python "$py" benches/python_cam.py --device cuda
        PYTHONPATH=python "$py" benches/python_metrics.py --device cuda --images 256 --size 224
    else
        echo "== Python CUDA tests skipped: no Python with torch and a GPU ($py)"
    fi
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
