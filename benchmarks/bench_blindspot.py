"""Shifted max-pool (fused vs torch reference vs upstream pad+crop+max_pool2d) and AT-BSN
forward+backward: rotation-free ``ATBSN`` vs the upstream rotated form vs the same layer sizes with
plain convs/pools and no shifts or rotations ("plain", the lower bound).

"upstream" pool re-creates the official code path (written here, not copied): F.pad one zero row at
the top, slice off the last row, nn.MaxPool2d(2) (which saves int64 indices).
In smoke mode (--benchmark-disable) the network cases use a small image so CPU CI stays quick.
"""
import pytest
import torch
import torch.nn.functional as nnf

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import smoke
from fastdenoise.models.atbsn import ATBSN
from fastdenoise.models.atbsn import ATBSNRotated
from fastdenoise.models.atbsn import BlindUNet
from fastdenoise.ops.blindspot.reference import shifted_max_pool2d_ref

POOL_SHAPES = [pytest.param((4, 48, 256, 256), id="4x48x256x256"),
               pytest.param((1, 48, 1024, 1024), id="1x48x1024x1024", marks=[pytest.mark.gpu_only])]
NET_SHAPES = [pytest.param((4, 3, 256, 256), id="4x3x256x256")]


def upstream_shifted_pool(x):
    x = nnf.pad(x, (0, 0, 1, 0))
    x = x[:, :, :-1]
    return nnf.max_pool2d(x, 2)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_shifted_pool_fwd_bwd(benchmark, provider, shape):
    x = torch.randn(shape, device=DEVICE, requires_grad=True)
    dy = torch.randn((shape[0], shape[1], shape[2] // 2, shape[3] // 2), device=DEVICE)
    be = fused_backend()
    pool = {"fused": lambda t: F.shifted_max_pool2d(t, "down", backend=be),
            "torch_ref": lambda t: shifted_max_pool2d_ref(t, 0),
            "upstream": upstream_shifted_pool}[provider]

    def fn():
        x.grad = None
        y = pool(x)
        y.backward(dy)
        return y

    es = x.element_size()
    # forward: read x, write y (+1-byte index); backward: read dy (+index), write dx
    nbytes = x.numel() * es * 2 + x.numel() * es // 2 + x.numel() // 2
    run(benchmark, fn, group=f"shifted_pool_fwd_bwd/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


class PlainNet(ATBSN):
    """Same layer sizes as ATBSN, plain convs/pools, no shifts/rotations: the 4 "branches" are one
    batched U-Net call on the input repeated 4 times (the cost floor for a 4-branch network)."""

    def __init__(self, in_ch=3):
        super().__init__(in_ch)
        self.unet = BlindUNet(in_ch, 96, blind=False)

    def forward(self, x, s=None):
        f = self.unet(x.repeat(4, 1, 1, 1))
        return self.head(torch.cat(torch.chunk(f, 4, 0), 1))


@pytest.mark.parametrize("provider", ["atbsn", "rotated", "plain"])
@pytest.mark.parametrize("shape", NET_SHAPES)
def test_atbsn_fwd_bwd(benchmark, provider, shape):
    if smoke(benchmark):
        shape = (1, 3, 64, 64)
    torch.manual_seed(0)
    net = {"atbsn": ATBSN, "rotated": ATBSNRotated, "plain": PlainNet}[provider]().to(DEVICE)
    x = torch.rand(shape, device=DEVICE)

    def fn():
        net.zero_grad(set_to_none=True)
        out = net(x, 5)
        out.square().mean().backward()
        return out

    nbytes = x.numel() * x.element_size() * 2  # nominal (compute-bound): image in + out
    run(benchmark, fn, group=f"atbsn_fwd_bwd/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes,
        rounds=None if DEVICE.type == "cuda" else 3)
