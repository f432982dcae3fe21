"""Helpers shared by the op tests: devices, backends, inputs in every layout, tolerances."""
from __future__ import annotations

import os

import torch

import fastdenoise
from fastdenoise._runtime import HAS_TRITON
from fastdenoise._runtime import interpreting

DEVICE = torch.device(os.environ.get("FASTDENOISE_TEST_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))


def kernel_backends(device: torch.device = DEVICE) -> list[str]:
    """Fused backends that can run on ``device`` here (the reference 'torch' is not included).

    A missing C++ extension fails the build test when FASTDENOISE_REQUIRE_EXT=1 (CI); here it only
    narrows the list."""
    out = []
    if device.type == "cpu" and fastdenoise.HAS_EXT:
        out.append("cpp")
    if HAS_TRITON and (device.type == "cuda" or interpreting()):
        out.append("triton")
    return out


ALL_BACKENDS = ["torch", *kernel_backends()]
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def make_input(shape, dtype=torch.float32, layout: str = "contiguous", device=DEVICE, gen_seed: int = 0,
               requires_grad: bool = False, fn=torch.randn) -> torch.Tensor:
    """A random tensor in the requested memory layout: contiguous, channels_last or non-contiguous
    (a strided view of a larger buffer)."""
    g = torch.Generator().manual_seed(gen_seed)
    if layout == "noncontiguous":
        b, c, h, w = shape
        base = fn(b, c, h, 2 * w, generator=g, dtype=torch.float64)[..., ::2]
        t = torch.empty((b, c, h, 2 * w), device=device, dtype=dtype)[..., ::2].copy_(base)
    else:
        t = fn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        if layout == "channels_last":
            t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


def tol(dtype: torch.dtype) -> dict:
    """assert_close tolerances: defaults for fp32/fp64, a few ulps for half types."""
    if dtype == torch.float16:
        return {"atol": 2e-3, "rtol": 2e-3}
    if dtype == torch.bfloat16:
        return {"atol": 2e-2, "rtol": 2e-2}
    if dtype == torch.float32:
        return {"atol": 1e-5, "rtol": 1e-5}
    return {"atol": 1e-10, "rtol": 1e-10}


def chi2_uniform_ok(counts: torch.Tensor) -> bool:
    """Every count within 4 sigma of the uniform expectation (binomial std)."""
    n = counts.sum().item()
    k = counts.numel()
    p = 1.0 / k
    mean, std = n * p, (n * p * (1 - p)) ** 0.5
    return bool(((counts.double() - mean).abs() <= 4 * std).all())


def noisy_pair(seed: int = 0, shape=(1, 3, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, noisy) with clean ~ U[0, 1] and Gaussian noise of std 0.1, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    return x, x + 0.1 * torch.randn(shape, generator=g)
