"""One training iteration of every registered method (``fastdenoise.methods.available()``), as its
trainer runs it: the method's default network, fused ops and speed options (``fused``) against the
reference configuration (``torch_ref``: plain-torch ops, fp32, no graphs), and, where written, an
upstream-style eager step (``upstream``: the way the official code does it, kept here, never in the
package). Shape: one 3x128x128 image on the CPU, 3x256x256 on CUDA. ``nbytes`` is not meaningful for a
whole step (networks dominate), so no GB/s is reported."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as Fnn

from benchmarks.benchutil import DEVICE
from benchmarks.benchutil import run
from benchmarks.benchutil import shape_id
from benchmarks.benchutil import smoke
from fastdenoise.methods import available
from fastdenoise.methods import get_builder

SHAPE = (1, 3, 256, 256) if DEVICE.type == "cuda" else (1, 3, 128, 128)


def upstream_zsn2n(shape):
    """ZS-N2N's step as the official notebook writes it: two depthwise conv2d downsamplings, three
    network passes (d1, d2, y), separate MSE modules, autograd for the backward."""
    from fastdenoise.models.zsn2n import ZSN2NNet

    torch.manual_seed(0)
    model = ZSN2NNet(shape[1]).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = torch.rand(shape, device=DEVICE)
    mse = torch.nn.MSELoss()

    def pair_downsampler(img):
        c = img.shape[1]
        f1 = torch.tensor([[[[0, 0.5], [0.5, 0]]]], device=img.device).repeat(c, 1, 1, 1)
        f2 = torch.tensor([[[[0.5, 0], [0, 0.5]]]], device=img.device).repeat(c, 1, 1, 1)
        return Fnn.conv2d(img, f1, stride=2, groups=c), Fnn.conv2d(img, f2, stride=2, groups=c)

    def step():
        noisy1, noisy2 = pair_downsampler(y)
        pred1 = noisy1 - model(noisy1)
        pred2 = noisy2 - model(noisy2)
        loss_res = 0.5 * (mse(noisy1, pred2) + mse(noisy2, pred1))
        denoised1, denoised2 = pair_downsampler(y - model(y))
        loss = loss_res + 0.5 * (mse(pred1, denoised1) + mse(pred2, denoised2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


UPSTREAM = {"zsn2n": upstream_zsn2n}
CASES = [(m, p) for m in available() for p in ("fused", "torch_ref", "upstream") if p != "upstream" or m in UPSTREAM]


@pytest.mark.parametrize(("method", "provider"), CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_method_step(benchmark, method, provider):
    shape = (1, 3, 64, 64) if smoke(benchmark) else SHAPE    # the CI smoke run: one small step each
    if provider == "upstream":
        fn = UPSTREAM[method](shape)
    else:
        tr = get_builder(method)(device=DEVICE.type, reference=provider == "torch_ref")
        it = tr.stepper(torch.rand(shape, generator=torch.Generator().manual_seed(0)), total=100)
        t = iter(range(10**9))
        fn = lambda: it(next(t))  # noqa: E731
    rounds = None if DEVICE.type == "cuda" else 5
    run(benchmark, fn, group=f"{method}_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=0,
        rounds=rounds, warmup_rounds=1)
