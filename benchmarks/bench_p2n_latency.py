"""P2N per-image latency: fit the Gaussian-pretrained U-Net to one 256x256 RGB image and denoise it,
fast path vs the reference configuration, in one run (issue: "sub-second per-image P2N fitting").

Providers:
  fused      the default configuration: fused ops, and on CUDA bf16 autocast, channels_last and the
             network captured in CUDA graphs; on the CPU the fused C++ ops (and channels_last when
             FASTDENOISE_LATENCY_CL=1).
  torch_ref  ``reference=True``: plain-torch ops, fp32, no graphs, no channels_last.
  batched    (CUDA only) :func:`fastdenoise.methods.p2n.fit_many` fitting FASTDENOISE_LATENCY_MANY
             images (default 8) at once as independent models; its median is per call, and
             ``images_per_s`` in extra_info gives the throughput.

Each round is a whole ``trainer.fit`` (weights re-initialised in place, then ``iters`` steps, then the
denoised output), i.e. the warm per-image time; one-time costs (weights loading, CUDA graph capture,
Triton compilation) are paid by the first call, whose time is stored as ``cold_s`` in extra_info.

Iterations: FASTDENOISE_LATENCY_ITERS (default 100 on CUDA, 20 on the CPU where one iteration of the
U-Net takes a good fraction of a second; the ratio, not the absolute time, is the CPU target).
"""
from __future__ import annotations

import os
import time

import pytest
import torch

from benchutil import DEVICE
from benchutil import run
from benchutil import smoke
from benchutil import sync


def _iters() -> int:
    return int(os.environ.get("FASTDENOISE_LATENCY_ITERS", "100" if DEVICE.type == "cuda" else "20"))


def _image(size: int, batch: int = 1) -> torch.Tensor:
    from fastdenoise.noise import add_gaussian

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, size // 8, size // 8, generator=g)
    clean = torch.nn.functional.interpolate(clean, size=(size, size), mode="bilinear", align_corners=False)
    return add_gaussian(clean, 25, seed=1).to(DEVICE)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "batched"])
def test_p2n_fit_latency(benchmark, provider):
    from fastdenoise.methods import p2n

    if provider == "batched" and DEVICE.type != "cuda" and not smoke(benchmark):
        # timing K U-Nets at once on 2 CPU threads says nothing about GPU throughput; runs on CUDA
        pytest.skip("the many-images throughput mode is benchmarked on CUDA")
    size, iters = (64, 2) if smoke(benchmark) else (256, _iters())
    many = int(os.environ.get("FASTDENOISE_LATENCY_MANY", "8")) if provider == "batched" else 1
    if smoke(benchmark):
        many = min(many, 2)
    y = _image(size, many)
    kw = {"reference": True} if provider == "torch_ref" else {}
    if provider == "fused" and os.environ.get("FASTDENOISE_LATENCY_CL") == "1":
        kw["channels_last"] = True
    tr = p2n.build(device=DEVICE.type, iters=iters, progress=False, **kw)

    def fn():
        if provider == "batched":
            return p2n.fit_many(y, trainer=tr, iters=iters)
        return tr.fit(y, iters=iters).output

    t0 = time.perf_counter()
    fn()
    sync()
    cold = time.perf_counter() - t0
    benchmark.extra_info.update(cold_s=cold, iters=iters, images=many, image=f"{many}x3x{size}x{size}")
    # compute-bound: no GB/s (nbytes=0); the cold call above is the warm-up
    run(benchmark, fn, group=f"p2n_fit/{size}x{size}x{iters}it", provider=provider, shape=(many, 3, size, size),
        nbytes=0, rounds=10 if DEVICE.type == "cuda" else 2, warmup_rounds=0 if DEVICE.type != "cuda" else 2)
    if not smoke(benchmark):
        med = benchmark.stats.stats.median
        benchmark.extra_info["images_per_s"] = many / med if med > 0 else None
