#!/usr/bin/env bash
# The whole test suite, Rust and Python — the README's test command:
#
#     bash scripts/test.sh
#
# 1. `cargo test --workspace`: compiler, runtime, analysis, CLI, and the Python crate's Rust side.
# 2. scripts/install-torch.sh: torch, pytorch-grad-cam and the other Python test dependencies
#    into the git-ignored .venv-py/ (minutes the first time, seconds after).
# 3. The native module `camc._camc` built by cargo into python/camc/ (git-ignored; the same
#    library `pip install ./python` builds, without maturin's release build), then the package's
#    tests (python/tests: camc.compile, camc.torch against pytorch-grad-cam) and the exporter's
#    (tests/exporter) with that package on PYTHONPATH.
# Arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

echo "== cargo test --workspace"
cargo test --workspace "$@"

echo "== Python test dependencies (.venv-py)"
bash scripts/install-torch.sh

echo "== camc._camc (cargo build -p camc-python --features extension-module)"
cargo build --profile test -p camc-python --features extension-module --message-format=json-render-diagnostics >target/camc-python-build.json
library=$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "_camc":
        print(*[f for f in m["filenames"] if f.endswith(".so")])' target/camc-python-build.json | tail -n 1)
cp "$library" python/camc/_camc.abi3.so
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"

echo "== Python package tests (python/tests)"
.venv-py/bin/python -m unittest discover -s python/tests -t python/tests

echo "== exporter tests (tests/exporter)"
bash tests/exporter/run.sh

echo "scripts/test.sh: all passed in $(( $(date +%s) - start )) s"
