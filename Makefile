# Quick start: `make test` (tests) and `make demo` / `make bench` (main job). Each target creates or
# reuses .venv, installs the pinned dev requirements and builds the C++ extension (required).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.fastdenoise-installed
SOURCES := $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp) setup.py pyproject.toml requirements-dev.txt

.PHONY: install demo test bench quality quality-reduced gpu-test gpu-bench gpu-quality gpu-check gpu-pretrain clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	FASTDENOISE_REQUIRE_EXT=1 $(BIN)/python -m pip install -q --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# The main job: denoise a noisy 256x256 astronaut crop (Gaussian sigma 25, fixed seed) with P2N from the
# shipped Gaussian-pretrained U-Net; prints PSNR before/after and the time, writes out/demo/.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Every test (Triton kernels in the CPU interpreter when there is no GPU), then each benchmark once
# as a smoke test.
test: $(STAMP)
	FASTDENOISE_REQUIRE_EXT=1 $(BIN)/python -m pytest -q tests
	FASTDENOISE_REQUIRE_EXT=1 $(BIN)/python -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider

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

# One GPU window (H100/H200, torch + Triton preinstalled, no registry), at most ~8 minutes: builds the
# extension, runs the CUDA op tests, the op benchmarks at 4x3x256x256 and 8x3x1024x1024 beside the modeled
# times, P2N per-image latency (100 iterations, cold and warm), fit_many throughput and the compile-check
# subset; writes gpu-check-<device>.json into $FASTDENOISE_GPU_CHECK_DIR (default $OUT, else benchmarks/results).
gpu-check:
	PYTHONPATH=. python3 scripts/gpu_check.py

# Starts for every network on one GPU window (~8 minutes: 80 s per method, 1.5 min for P2N's supervised
# start), weights and logs into $FASTDENOISE_OUT (default $OUT, else out/gpu-starts); copy the *.pt files
# into fastdenoise/weights/ to ship them (see docs/STARTS.md).
gpu-pretrain:
	FASTDENOISE_OUT=$${FASTDENOISE_OUT:-$${OUT:-out/gpu-starts}} bash scripts/pretrain_gpu.sh
