"""P2N renoised data construction and renoise+loss forward+backward: fused vs torch reference vs
upstream-style eager.

"upstream" follows the way the paper's pipeline is written in eager PyTorch (our own code; the official
code is not available): torch.randn scales per image, the positive and negative images by separate
elementwise ops and a cat, then the loss as separate sub / abs / add / pow / mean ops.
"""
import pytest
import torch

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import shape_params
from fastdenoise.ops.p2n.reference import draw_scales
from fastdenoise.ops.p2n.reference import p2n_loss_ref
from fastdenoise.ops.p2n.reference import rdc_renoise_ref

SIGMA, GAMMA, EPS = 0.75, 1.75, 1e-8


def upstream_renoise(y, x_hat, generator):
    b = y.shape[0]
    x_hat = x_hat.detach()
    n = y - x_hat
    a = 1 + SIGMA * torch.randn((b, 1, 1, 1), generator=generator, device=y.device, dtype=y.dtype)
    bb = 1 + SIGMA * torch.randn((b, 1, 1, 1), generator=generator, device=y.device, dtype=y.dtype)
    y_pos = x_hat + a * n
    y_neg = x_hat - bb * n
    return torch.cat([y_pos, y_neg], 0)


def upstream_loss(out_pos, out_neg):
    return torch.mean((torch.abs(out_pos - out_neg) + EPS) ** GAMMA)


def _inputs(shape, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=g).to(DEVICE)
    x_hat = (y + 0.05 * torch.randn(shape, generator=g).to(DEVICE)).contiguous()
    return y.requires_grad_(requires_grad), x_hat


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_renoise(benchmark, provider, shape):
    y, x_hat = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    if provider == "fused":
        be = fused_backend()
        fn = lambda: F.rdc_renoise(y, x_hat, 1, SIGMA, backend=be)  # noqa: E731
    elif provider == "torch_ref":
        def fn():
            s = draw_scales(1, y.shape, SIGMA, "image", y.dtype, y.device)
            return rdc_renoise_ref(y, x_hat, s, "image")
    else:
        fn = lambda: upstream_renoise(y, x_hat, gen)  # noqa: E731
    nbytes = y.numel() * y.element_size() * 4  # read y, x_hat; write 2 images
    run(benchmark, fn, group=f"p2n_renoise/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_renoise_loss_fwd_bwd(benchmark, provider, shape):
    """Renoise + loss forward and backward with an identity stand-in network; the gradient flows back
    through the loss and the renoising into y (so both backward kernels run)."""
    y, x_hat = _inputs(shape, requires_grad=True)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    be = fused_backend()

    def fused():
        z, _ = F.rdc_renoise(y, x_hat, 1, SIGMA, backend=be)
        loss = F.p2n_loss(*z.chunk(2), GAMMA, EPS, backend=be)
        loss.backward()
        return loss

    def reference():
        s = draw_scales(1, y.shape, SIGMA, "image", y.dtype, y.device)
        z = rdc_renoise_ref(y, x_hat, s, "image")
        loss = p2n_loss_ref(*z.chunk(2), GAMMA, EPS)
        loss.backward()
        return loss

    def upstream():
        z = upstream_renoise(y, x_hat, gen)
        loss = upstream_loss(*z.chunk(2))
        loss.backward()
        return loss

    def fn():
        y.grad = None
        return {"fused": fused, "torch_ref": reference, "upstream": upstream}[provider]()

    es = y.element_size()
    # renoise (read y, x_hat; write z) + loss (read z; write grad) + backward (read grad; write dy)
    nbytes = y.numel() * es * (4 + 3 + 2)
    run(benchmark, fn, group=f"p2n_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
