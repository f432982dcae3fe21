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


@pytest.fixture(scope="session", autouse=True)
def _warm_machine():
    """About a second of threaded work before the first timed case, so that it does not pay for the
    thread pool's start, the allocator's first growth or a CPU leaving its idle state."""
    import time

    x = torch.rand(4, 3, 512, 512, device=DEVICE)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        (x * 1.0001 + 0.5).abs_().sum()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
    yield
