#!/usr/bin/env bash
# Installs PyTorch and what the exporter and its tests need into .venv-py/ (git-ignored).
# Idempotent: a second run with the same requirements does nothing (a stamp file holds the
# hash of scripts/requirements-torch.txt). About 5-6 minutes and 6 GB on a fresh machine
# (PyPI's torch wheel pulls the CUDA libraries, ~3 GB download); seconds when up to date.
#   PYTHON=python3.11 scripts/install-torch.sh    # choose the interpreter (default python3)
#   scripts/install-torch.sh --force              # reinstall
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-py
REQ=scripts/requirements-torch.txt
PY="${PYTHON:-python3}"
STAMP="$VENV/.camc-requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"

if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
    && "$VENV/bin/python" - "$REQ" <<'PY' 2>/dev/null
import sys, importlib.metadata as md
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, _, version = line.partition("==")
        if md.version(name) != version:
            sys.exit(1)
PY
then
    echo "install-torch: $VENV is up to date"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        echo "install-torch: '$PY -m venv' failed; installing python3-venv" >&2
        if command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        fi
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
    fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off -r "$REQ"
"$VENV/bin/python" -c "import torch, numpy, safetensors, sklearn, PIL, pytorch_grad_cam; print('install-torch: torch', torch.__version__)"
echo "$want" > "$STAMP"
echo "install-torch: done in $(( $(date +%s) - start ))s ($(du -shL "$VENV" | cut -f1) in $VENV)"
