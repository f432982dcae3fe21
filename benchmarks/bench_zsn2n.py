"""ZS-N2N pair downsampler and loss, forward+backward: fused vs torch reference vs upstream-style eager.

"upstream" re-creates the official code path (written here, not copied): the downsampler as two
depthwise stride-2 F.conv2d calls with the diagonal 2x2 filters (repeated per channel on every call),
the loss as four separate mse calls on sub-images materialised by those convolutions (of y and of
y - n_y), autograd doing the backward. "fused_down" answers whether the fused loss pays: the fused
downsampler with the same eager mse loss as upstream.
"""
import pytest
import torch
import torch.nn.functional as nnf

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import SHAPES
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import shape_params
from fastdenoise.ops.zsn2n.reference import pair_downsample_ref
from fastdenoise.ops.zsn2n.reference import zsn2n_loss_ref

# ZS-N2N trains on one image: 1x3x256x256 first, then the shapes every bench uses
ZSN2N_SHAPES = shape_params([(1, 3, 256, 256), *SHAPES])


def upstream_pair(img):
    c = img.shape[1]
    f1 = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]]], dtype=img.dtype, device=img.device).repeat(c, 1, 1, 1)
    f2 = torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]], dtype=img.dtype, device=img.device).repeat(c, 1, 1, 1)
    return nnf.conv2d(img, f1, stride=2, groups=c), nnf.conv2d(img, f2, stride=2, groups=c)


def eager_loss(down, y, n_y, n1, n2):
    """The upstream loss expression on top of the downsampler ``down``."""
    d1, d2 = down(y)
    p1, p2 = d1 - n1, d2 - n2
    loss_res = 0.5 * (nnf.mse_loss(d1, p2) + nnf.mse_loss(d2, p1))
    e1, e2 = down(y - n_y)
    loss_cons = 0.5 * (nnf.mse_loss(p1, e1) + nnf.mse_loss(p2, e2))
    return loss_res + loss_cons


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    b, c, h, w = shape
    y = torch.rand(shape, generator=g).to(DEVICE)
    n_y = (0.1 * torch.randn(shape, generator=g)).to(DEVICE).requires_grad_(True)
    n1 = (0.1 * torch.randn(b, c, h // 2, w // 2, generator=g)).to(DEVICE).requires_grad_(True)
    n2 = (0.1 * torch.randn(b, c, h // 2, w // 2, generator=g)).to(DEVICE).requires_grad_(True)
    return y, n_y, n1, n2


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", ZSN2N_SHAPES)
def test_downsample_fwd_bwd(benchmark, provider, shape):
    y, _, n1, n2 = _inputs(shape)
    x = y.clone().requires_grad_(True)
    g1, g2 = n1.detach(), n2.detach()  # incoming gradients
    be = fused_backend()
    down = {"fused": lambda t: F.pair_downsample(t, backend=be), "torch_ref": pair_downsample_ref,
            "upstream": upstream_pair}[provider]

    def fn():
        d1, d2 = down(x)
        return torch.autograd.grad((d1, d2), x, (g1, g2))

    nbytes = y.numel() * y.element_size() * 3  # forward: read x, write d1, d2; backward: read g1, g2, write dx
    run(benchmark, fn, group=f"zsn2n_down/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream", "fused_down"])
@pytest.mark.parametrize("shape", ZSN2N_SHAPES)
def test_loss_fwd_bwd(benchmark, provider, shape):
    """The loss from given network outputs (n_y, n1, n2 leaves) to their gradients: only the loss (with
    its downsamplings of y and y - n_y) is timed, not the network."""
    y, n_y, n1, n2 = _inputs(shape)
    be = fused_backend()
    loss_fn = {
        "fused": lambda *t: F.zsn2n_loss(*t, backend=be),
        "torch_ref": zsn2n_loss_ref,
        "upstream": lambda *t: eager_loss(upstream_pair, *t),
        "fused_down": lambda *t: eager_loss(lambda u: F.pair_downsample(u, backend=be), *t),
    }[provider]

    def fn():
        loss = loss_fn(y, n_y, n1, n2)
        return loss, torch.autograd.grad(loss, (n_y, n1, n2))

    # read y, n_y, n1, n2 (2.5 full images), write the gradients of n_y, n1, n2 (1.5)
    nbytes = y.numel() * y.element_size() * 4
    run(benchmark, fn, group=f"zsn2n_loss/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
