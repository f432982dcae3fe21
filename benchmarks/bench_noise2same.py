"""Noise2Same stratified mask sampler and sampler+loss forward+backward: fused vs torch reference vs
upstream-style eager.

"upstream" re-creates the official code path (written here, not copied): the mask is built on the
host in numpy with Python loops over images, channels and boxes (one uniform pair per box, truncated
to int, positions outside the patch dropped), copied to the device, blended as (1 - M) x + M r with
Gaussian r, then the loss in separate torch ops (rec, masked invariance term, sqrt).
"""
import numpy as np
import pytest
import torch

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import shape_params
from fastdenoise.ops.noise2same.reference import box_size
from fastdenoise.ops.noise2same.reference import noise2same_loss_ref
from fastdenoise.ops.noise2same.reference import stratified_mask_ref

PERC, SIGMA_M, LAM = 0.5, 0.2, 2.0


def upstream_mask(shape, rng: np.random.Generator, perc: float = PERC) -> np.ndarray:
    b, c, h, w = shape
    box = int(np.round(np.sqrt(100.0 / perc)))
    nby, nbx = int(np.ceil(h / box)), int(np.ceil(w / box))
    mask = np.zeros(shape, dtype=np.float32)
    for n in range(b):
        for ch in range(c):
            ys, xs = [], []
            for i in range(nby):
                for j in range(nbx):
                    y = int(i * box + rng.random() * box)
                    x = int(j * box + rng.random() * box)
                    if y < h and x < w:
                        ys.append(y)
                        xs.append(x)
            mask[n, ch, ys, xs] = 1.0
    return mask


def upstream_masked_input(x, rng):
    m = torch.from_numpy(upstream_mask(tuple(x.shape), rng)).to(x.device)
    r = torch.randn_like(x) * SIGMA_M
    return (1 - m) * x + m * r, m


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(DEVICE)
    return x


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_sampler(benchmark, provider, shape):
    x = _inputs(shape)
    rng = np.random.default_rng(0)
    if provider == "fused":
        be = fused_backend()
        fn = lambda: F.stratified_mask(x, 1, PERC, "gaussian", SIGMA_M, backend=be)  # noqa: E731
    elif provider == "torch_ref":
        fn = lambda: stratified_mask_ref(x, 1, box_size(PERC), "gaussian", SIGMA_M)  # noqa: E731
    else:
        fn = lambda: upstream_masked_input(x, rng)  # noqa: E731
    nbytes = x.numel() * x.element_size() * 3  # read x, write x_masked and mask
    run(benchmark, fn, group=f"n2s_sampler/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_sampler_loss_fwd_bwd(benchmark, provider, shape):
    """Stand-in network: out = 0.9 * input, both outputs leaves; the step ends with d loss / d outputs
    (torch.autograd.grad), so only the mask and the loss are timed."""
    x = _inputs(shape)
    rng = np.random.default_rng(0)
    be = fused_backend()

    def fused():
        xm, m = F.stratified_mask(x, 1, PERC, "gaussian", SIGMA_M, backend=be)
        a, b = (0.9 * x).requires_grad_(), (0.9 * xm).requires_grad_()
        loss = F.noise2same_loss(a, b, x, m, LAM, backend=be)
        return loss, torch.autograd.grad(loss, (a, b))

    def reference():
        xm, m = stratified_mask_ref(x, 1, box_size(PERC), "gaussian", SIGMA_M)
        a, b = (0.9 * x).requires_grad_(), (0.9 * xm).requires_grad_()
        loss = noise2same_loss_ref(a, b, x, m, LAM)
        return loss, torch.autograd.grad(loss, (a, b))

    def upstream():
        xm, m = upstream_masked_input(x, rng)
        raw, masked = (0.9 * x).requires_grad_(), (0.9 * xm).requires_grad_()
        rec = torch.mean((raw - x) ** 2)
        inv = torch.sum(m * (raw - masked) ** 2) / torch.sum(m)
        loss = rec + LAM * torch.sqrt(inv)
        return loss, torch.autograd.grad(loss, (raw, masked))

    fn = {"fused": fused, "torch_ref": reference, "upstream": upstream}[provider]
    # sampler (read x; write x_masked, mask) + loss sums (read 4) + gradients (read 4, write 2)
    nbytes = x.numel() * x.element_size() * 13
    run(benchmark, fn, group=f"n2s_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
