"""Test configuration: Triton runs in its CPU interpreter when no CUDA device is present.

TRITON_INTERPRET is read when kernels are decorated, so it is set here before fastdenoise (or any
kernel module) is imported. Options: --device (env FASTDENOISE_TEST_DEVICE) picks cpu or cuda.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("FASTDENOISE_TEST_DEVICE"),
                     help="device for op tests: cpu or cuda (default: cuda if available, else cpu)")


def pytest_configure(config):
    dev = config.getoption("--device") or ("cuda" if torch.cuda.is_available() else "cpu")
    os.environ["FASTDENOISE_TEST_DEVICE"] = dev
    config.addinivalue_line(
        "markers", "cpu_only(reason): the test checks CPU behaviour (CPU defaults, bit-exact repeats, CPU-only "
        "tools); it runs on the CPU on every machine, as if no GPU were present")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cpu_only(request, monkeypatch):
    """Tests marked ``cpu_only(reason)`` see no CUDA device: ``device="auto"`` resolves to the CPU."""
    mark = request.node.get_closest_marker("cpu_only")
    if mark is not None:
        if not (mark.args or mark.kwargs.get("reason")):
            raise pytest.UsageError(f"{request.node.nodeid}: cpu_only needs a reason")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    yield


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny networks: on the shared 2-core machine, oversubscribed
    OpenMP threads slow tiny convolutions down ~40x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
