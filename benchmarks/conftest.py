"""Benchmark configuration: threads pinned, device info recorded, helpers shared by bench_*.py.

Run: `python -m benchmarks.run` (JSON under benchmarks/results/<device>/ and a table), or as a smoke
test `pytest benchmarks --benchmark-disable` (each case once). FASTDENOISE_BENCH_THREADS (default 2)
sets torch's CPU threads; FASTDENOISE_BENCH_DEVICE picks cpu/cuda (default: cuda if available).
"""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from benchutil import DEVICE  # noqa: E402
from benchutil import device_name  # noqa: E402

torch.set_num_threads(int(os.environ.get("FASTDENOISE_BENCH_THREADS", "2")))


def pytest_benchmark_update_machine_info(config, machine_info):
    import datetime

    import fastdenoise

    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = None
    machine_info["fastdenoise"] = {
        "device": device_name(),
        "torch": torch.__version__,
        "triton": tv,
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "backends": fastdenoise.backends(),
    }


def pytest_collection_modifyitems(config, items):
    # GPU-only shapes are skipped on CPU; CPU smoke runs (--benchmark-disable) keep only small shapes.
    for item in items:
        if "gpu_only" in item.keywords and DEVICE.type != "cuda":
            item.add_marker(pytest.mark.skip(reason="GPU-only shape"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu_only: benchmark case that only runs on CUDA")
