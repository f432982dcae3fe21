"""Shared benchmark helpers: device, providers, timing via pytest-benchmark, GB/s bookkeeping."""
from __future__ import annotations

import os

import torch

DEVICE = torch.device(os.environ.get("FASTDENOISE_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
SHAPES = [(4, 3, 256, 256), (1, 3, 1024, 1024), (8, 3, 1024, 1024)]
PROVIDERS = ["fused", "torch_ref", "upstream"]


def device_name() -> str:
    if DEVICE.type == "cuda":
        return torch.cuda.get_device_name(DEVICE)
    import platform

    return f"cpu-{platform.machine()}-{os.cpu_count()}cores"


def fused_backend() -> str:
    return "triton" if DEVICE.type == "cuda" else "cpp"


def shape_id(shape) -> str:
    return "x".join(map(str, shape))


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def smoke(benchmark) -> bool:
    """True when pytest-benchmark is disabled (CI smoke run: each case runs once)."""
    return bool(getattr(benchmark, "disabled", False))


def shape_params(shapes=SHAPES):
    """pytest params for shapes, the 8x1024^2 one marked GPU-only."""
    import pytest

    out = []
    for s in shapes:
        marks = [pytest.mark.gpu_only] if s[0] * s[2] * s[3] > 4 * 1024 * 1024 else []
        out.append(pytest.param(s, id=shape_id(s), marks=marks))
    return out


def run(benchmark, fn, *, group: str, provider: str, shape, nbytes: int, rounds: int | None = None,
        warmup_rounds: int = 2):
    """Time ``fn`` (synchronised) with one warm-up round; record GB/s and metadata in extra_info."""

    def call():
        out = fn()
        sync()
        return out

    if smoke(benchmark):
        return benchmark(call)
    if rounds is None:
        numel = shape[0] * shape[1] * shape[2] * shape[3]
        rounds = 50 if DEVICE.type == "cuda" else (20 if numel <= 1 << 20 else 8)
    benchmark.group = group
    benchmark.extra_info.update(
        provider=provider, shape=shape_id(shape), device=device_name(), bytes=int(nbytes),
        torch=torch.__version__,
    )
    result = benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    med = benchmark.stats.stats.median
    benchmark.extra_info["gbps"] = nbytes / med / 1e9 if med > 0 and nbytes > 0 else None
    return result
