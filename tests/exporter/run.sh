#!/usr/bin/env bash
# The exporter's tests (tests/exporter/test_exporter.py: camc.export and python -m camc.export),
# with the interpreter that scripts/install-torch.sh set up. Ends with
# 'exporter: N passed, N failed, N skipped'; exits 1 on a failure. Arguments select tests by
# name substring.
#   scripts/install-torch.sh && tests/exporter/run.sh
# camc is the pip-installed package when the interpreter has one, else the repository's python/
# (PYTHONPATH; its native module python/camc/_camc.abi3.so must be built).
# The camc comparison tests use target/release/camc (else target/debug/camc, or $CAMC) and
# skip, saying so, while it has no working `run`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-py/bin/python}"
if ! "$PY" -c "import torch, safetensors, numpy" 2>/dev/null; then
    echo "tests/exporter/run.sh: $PY lacks torch/safetensors/numpy; run scripts/install-torch.sh first" >&2
    exit 1
fi
if ! "$PY" -c "import camc.export" 2>/dev/null; then
    export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
    if ! err=$("$PY" -c "import camc.export" 2>&1); then
        echo "tests/exporter/run.sh: cannot import camc.export, neither installed nor from $PWD/python:" >&2
        echo "$err" | tail -n 3 >&2
        echo "(build the native module: pip install ./python, or maturin develop in python/)" >&2
        exit 1
    fi
fi
exec "$PY" tests/exporter/test_exporter.py "$@"
