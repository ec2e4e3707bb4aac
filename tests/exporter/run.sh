#!/usr/bin/env bash
# The exporter's tests (tests/exporter/test_exporter.py), with the interpreter that
# scripts/install-torch.sh set up. Ends with 'exporter: N passed, N failed, N skipped';
# exits 1 on a failure. Arguments select tests by name substring.
#   scripts/install-torch.sh && tests/exporter/run.sh
# The camc comparison tests use target/release/camc (else target/debug/camc, or $CAMC) and
# skip, saying so, while it has no working `run`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-py/bin/python}"
if ! "$PY" -c "import torch, safetensors, numpy" 2>/dev/null; then
    echo "tests/exporter/run.sh: $PY lacks torch/safetensors/numpy; run scripts/install-torch.sh first" >&2
    exit 1
fi
exec "$PY" tests/exporter/test_exporter.py "$@"
