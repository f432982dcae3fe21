# Quick start: `make test` (tests) and `make demo` / `make bench` (main job). Each target creates or
# reuses .venv, installs the pinned dev requirements and builds the C++ extension (required).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.fastdenoise-installed
SOURCES := $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp) setup.py pyproject.toml requirements-dev.txt

.PHONY: install demo test test-compat bench quality quality-reduced real-noise gpu-test gpu-bench gpu-quality gpu-check gpu-check-dry gpu-stack-check \
	compile-check traffic-model gpu-pretrain clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(SOURCES) requirements-compat.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-compat.txt   # deepinv, for the compat tests
	FASTDENOISE_REQUIRE_EXT=1 $(BIN)/python -m pip install -q --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# The main job: denoise a 256x256 astronaut crop with camera noise (fixed seed) with P2N from its shipped
# start; prints the PSNR of the noisy input, a classical blind denoiser, the start and the fit, writes out/demo/
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Every test (Triton kernels in the CPU interpreter when there is no GPU), then each benchmark once
# as a smoke test.
test: $(STAMP)
	FASTDENOISE_REQUIRE_EXT=1 $(BIN)/python -m pytest -q tests
	FASTDENOISE_REQUIRE_EXT=1 $(BIN)/python -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider

# The drop-in adapters (fastdenoise.compat) alone. deepinv is an optional dependency of the package
# (requirements-compat.txt, installed with --no-deps beside the pinned CPU torch); the dev set-up installs it,
# so `make test` runs tests/test_compat_deepinv.py too. The switch benchmark: python benchmarks/bench_compat.py.
test-compat: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps -r requirements-compat.txt
	FASTDENOISE_REQUIRE_EXT=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests/test_compat_deepinv.py \
		tests/test_compat_nb2nb.py tests/test_compat_zsn2n.py tests/test_compat_apr.py

# The benchmark suite on this machine: JSON under benchmarks/results/<device>/, table printed.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The committed quality table: every method on the four held-out 256x256 crops, Gaussian 25/50, Poisson 30,
# correlated 25, noisy and BM3D rows, the reference configuration on astronaut (about 2 h on 2 CPU threads:
# run it under nohup; --resume continues from benchmarks/results/quality-<device>.partial.jsonl).
# quality-reduced: astronaut only, sigma 25, 128x128 (a few minutes).
quality: $(STAMP)
	$(BIN)/python -m pip install -q bm3d==4.0.3
	$(BIN)/python -m benchmarks.quality --resume --reference-images astronaut

quality-reduced: $(STAMP)
	$(BIN)/python -m benchmarks.quality --cpu-reduced

# Real noise: every method on a folder of noisy/clean SIDD blocks (benchmarks/real_noise.py --data; a note and
# exit 0 where the folder is absent), rows appended to benchmarks/results/real-noise-cpu.jsonl (resumes),
# tables in benchmarks/real_noise.md. Hours on 2 CPU threads: run it under nohup.
real-noise: $(STAMP)
	$(BIN)/python -m pip install -q bm3d==4.0.3
	$(BIN)/python -m benchmarks.real_noise --phases base,start,default,clean,low
	$(BIN)/python -m benchmarks.real_noise --markdown --md

clean:
	rm -rf build $(VENV) fastdenoise/_C*.so *.egg-info .pytest_cache .benchmarks

# On the GPU machine (python3 with torch/triton/pytest preinstalled, no registry): run from the tree.
gpu-test:
	python3 setup.py build_ext --inplace
	PYTHONPATH=. python3 -m pytest -q tests

gpu-bench:
	PYTHONPATH=. python3 -m benchmarks.run

gpu-quality:
	PYTHONPATH=. python3 -m benchmarks.quality

# One GPU window (H100/H200 with torch, Triton, pytest and scikit-image preinstalled, no registry), at most
# 8 minutes: the CUDA op tests (in parallel, each file under timeout -s INT), the op benchmarks at 8x3x1024x1024
# and 4x3x256x256 beside the traffic model, every method fitted with CUDA graphs on and off and in the reference
# configuration, P2N latency (100 iterations, cold and warm), fit_many throughput and the compile check. The
# JSON (rewritten after every step) and the test log go to $FASTDENOISE_GPU_CHECK_DIR, else $OUT, else
# benchmarks/results. See docs/GPU.md.
gpu-check:
	PYTHONPATH=. python3 scripts/gpu_check.py

# The same script end to end on this CPU with tiny shapes (CI runs it through tests/test_gpu_check_script.py).
gpu-check-dry: $(STAMP)
	$(BIN)/python scripts/gpu_check.py --dry-run --out out/gpu-check-dry

# The GPU machines' stack (Triton 3.6.0) in a side environment: compile every kernel for sm_80/sm_90 and
# collect the GPU tests (tools/gpu_stack_check.sh).
gpu-stack-check: $(STAMP)
	bash tools/gpu_stack_check.sh

# Developer tools (tools/, not installed): compile check of every kernel with this Triton, traffic model.
compile-check: $(STAMP)
	$(BIN)/python -m tools.gpucheck --arch sm_80,sm_90 --json benchmarks/results/gpucheck-sm80-sm90.json --table

traffic-model: $(STAMP)
	$(BIN)/python -m tools.traffic --json benchmarks/results/traffic-model.json --markdown

# One GPU window (one command under 10 minutes): every shipped start continued on the GPU, kept only where it
# beats the shipped start on the held-out crop (scripts/pretrain_gpu.sh); results in $FASTDENOISE_OUT
# (default out/gpu-starts), packed into $OUT/gpu-starts.tar under the device tool.
gpu-pretrain:
	bash scripts/pretrain_gpu.sh
