#!/usr/bin/env bash
# Installs NVRTC (the CUDA runtime compiler, from PyPI's `nvidia-cuda-nvrtc`) into .ci/nvrtc/
# under the repository, idempotently, and prints the line that puts it on the loader's path:
#     eval "$(bash scripts/install-nvrtc.sh)"
# NVRTC needs no GPU; with it, the CUDA tests compile every kernel to PTX. cudarc looks for
# `libnvrtc.so` (or `.so.12`), so a `libnvrtc.so` link to the wheel's `libnvrtc.so.13` is made.
# Progress goes to stderr; stdout is only the export line.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="$PWD/.ci/nvrtc"
# For a driver older than CUDA 13: CAMC_NVRTC_PACKAGE=nvidia-cuda-nvrtc-cu12 CAMC_NVRTC_VERSION=12.8.93
package="${CAMC_NVRTC_PACKAGE:-nvidia-cuda-nvrtc}"
version="${CAMC_NVRTC_VERSION:-13.0.88}"
lib="$dest/lib"
if ! ls "$lib"/libnvrtc.so.* >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$dest/pkg" "$package==$version" >&2
    mkdir -p "$lib"
    found="$(find "$dest/pkg" -name 'libnvrtc.so.*' ! -name '*builtins*' | sort | head -n 1)"
    if [ -z "$found" ]; then
        echo "install-nvrtc: no libnvrtc.so.* in $package==$version" >&2
        exit 1
    fi
    for f in "$(dirname "$found")"/lib*.so*; do
        ln -sf "$f" "$lib/$(basename "$f")"
    done
fi
main="$(ls "$lib"/libnvrtc.so.* | grep -v builtins | sort | head -n 1)"
ln -sf "$main" "$lib/libnvrtc.so"
echo "install-nvrtc: $(basename "$main") in $lib" >&2
echo "export LD_LIBRARY_PATH=\"$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
