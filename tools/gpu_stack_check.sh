#!/usr/bin/env bash
# The GPU machines' software stack checked on this CPU machine (`make gpu-stack-check`).
#
# The GPU machines run Python 3.12, torch 2.11 (CUDA), Triton 3.6.0 and numpy 2.5 with no package registry.
# The closest this machine can install is Python 3.11 with torch 2.13.0 (CPU, the local wheel) and Triton
# 3.6.0 in a side environment (.venv-gpu-stack). There:
#   1. every kernel is compiled with Triton 3.6.0 for sm_80 and sm_90 (the CI subset: one specialization per
#      kernel), from launches recorded with the dev environment's Triton interpreter (Triton 3.6's interpreter
#      does not run with numpy >= 2.4, as on the GPU machines), checked for spills and bit-identity claims;
#   2. the package is imported and the GPU tests (the op test files that `make gpu-check` runs) are collected
#      with FASTDENOISE_TEST_DEVICE=cuda and no Triton interpreter, as on the GPU machine.
# Writes benchmarks/results/gpucheck-triton36-ci.json. About 2 minutes, plus the side environment's set-up
# on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${DEV_PYTHON:-.venv/bin/python}
SIDE=${SIDE_VENV:-.venv-gpu-stack}
TRITON_GPU=3.6.0
if [ ! -x "$SIDE/bin/python" ] || ! "$SIDE/bin/python" -c "import triton, sys; sys.exit(triton.__version__ != '$TRITON_GPU')" 2>/dev/null; then
  python3 -m venv "$SIDE"
  "$SIDE/bin/python" -m pip install -q --upgrade pip
  "$SIDE/bin/python" -m pip install -q torch==2.13.0 "triton==$TRITON_GPU" numpy pytest
fi
"$SIDE/bin/python" -c "import sys, torch, triton, numpy; print(f'side environment: Python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}, numpy {numpy.__version__}')"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 1. record with the dev Triton's interpreter, compile with Triton 3.6
TRITON_INTERPRET=1 OMP_NUM_THREADS=1 "$DEV" -m tools.gpucheck --record "$tmp/launches.json" --subset ci
env -u TRITON_INTERPRET "$SIDE/bin/python" -m tools.gpucheck --launches "$tmp/launches.json" --subset ci \
  --arch sm_80,sm_90 --jobs 2 --json benchmarks/results/gpucheck-triton36-ci.json
# 2. import and collect the GPU tests as the GPU machine would
files=$("$DEV" -c "import sys; sys.path.insert(0, 'scripts'); import gpu_check; print(' '.join('tests/' + f for f in gpu_check.OP_TESTS))")
env -u TRITON_INTERPRET FASTDENOISE_TEST_DEVICE=cuda PYTHONPATH=. "$SIDE/bin/python" -m pytest -q --collect-only \
  -p no:cacheprovider $files | tail -n 1
