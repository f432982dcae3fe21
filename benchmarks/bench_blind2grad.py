"""Blind2Grad dual mask and mask+loss forward+backward: fused vs torch reference vs upstream-style eager.

"upstream" is how a paper-only re-implementation would write it (no official code exists; written
here): a torch.bernoulli mask, the detail set from |y - x_m| unmasked, then per image a rebalance to the
exact count by boolean indexing + randperm over the flat pixels (host syncs), and the loss with
torch.diff gradients and separate reductions.
"""
import pytest
import torch

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import shape_params
from fastdenoise.ops.blind2grad.reference import blind2grad_loss_ref
from fastdenoise.ops.blind2grad.reference import dual_mask_ref

RATE, EPS, OMEGA, GAMMA = 0.25, 40 / 255, 0.8, 0.5


def upstream_dual_mask(y, xm, generator):
    b, _, h, w = y.shape
    k = int(RATE * h * w + 0.5)
    mask = torch.bernoulli(torch.full((b, 1, h, w), RATE, device=y.device), generator=generator)
    detail = ((y - xm).abs().amax(1, keepdim=True) >= EPS)
    mask[detail] = 0.0
    flat = mask.new_ones(()) - detail.float()
    for i in range(b):  # rebalance to exactly k masked flat pixels
        mi, fi = mask[i].view(-1), flat[i].view(-1)
        n = int(mi.sum().item())
        if n > k:
            on = torch.nonzero(mi > 0).squeeze(1)
            drop = on[torch.randperm(on.numel(), generator=generator, device=y.device)[: n - k]]
            mi[drop] = 0.0
        elif n < k:
            free = torch.nonzero((mi == 0) & (fi > 0)).squeeze(1)
            add = free[torch.randperm(free.numel(), generator=generator, device=y.device)[: k - n]]
            mi[add] = 1.0
    return mask


def upstream_loss(a, f, y, mask):
    c = a.shape[1]
    d_c = mask * (a - y)
    rec = torch.sum(d_c**2) / torch.clamp(torch.sum(mask) * c, min=1)
    gx = torch.diff(f.detach(), dim=-1) - torch.diff(a, dim=-1)
    gy = torch.diff(f.detach(), dim=-2) - torch.diff(a, dim=-2)
    grad_term = (torch.sum(gx**2) + torch.sum(gy**2)) / (gx.numel() + gy.numel())
    return (1 + GAMMA) * rec + OMEGA**2 * grad_term


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=g).to(DEVICE)
    xm = (y + 0.15 * torch.randn(shape, generator=g).to(DEVICE)).contiguous()  # current estimate
    f = (y + 0.05 * torch.randn(shape, generator=g).to(DEVICE)).contiguous()  # f(y), stop-grad
    return y, xm, f


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_dual_mask(benchmark, provider, shape):
    y, xm, _ = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    if provider == "fused":
        be = fused_backend()
        fn = lambda: F.dual_mask(y, xm, 1, RATE, EPS, backend=be)  # noqa: E731
    elif provider == "torch_ref":
        fn = lambda: dual_mask_ref(y, xm, 1, RATE, EPS)  # noqa: E731
    else:
        fn = lambda: upstream_dual_mask(y, xm, gen)  # noqa: E731
    b, c, h, w = shape
    nbytes = 2 * y.numel() * y.element_size() + b * h * w * y.element_size()  # read y, x_m; write mask
    run(benchmark, fn, group=f"b2g_mask/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_mask_loss_fwd_bwd(benchmark, provider, shape):
    """Identity stand-in network: out = the masked y as a leaf; the step ends with d loss / d out
    (torch.autograd.grad), so only the mask and the loss are timed."""
    y, xm, f = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    be = fused_backend()

    def fused():
        mask = F.dual_mask(y, xm, 1, RATE, EPS, backend=be)
        out = (y * (1 - mask)).requires_grad_()
        loss = F.blind2grad_loss(out, f, y, mask, OMEGA, GAMMA, backend=be)
        return loss, torch.autograd.grad(loss, out)

    def reference():
        mask = dual_mask_ref(y, xm, 1, RATE, EPS)
        out = (y * (1 - mask)).requires_grad_()
        loss = blind2grad_loss_ref(out, f, y, mask, OMEGA, GAMMA)
        return loss, torch.autograd.grad(loss, out)

    def upstream():
        mask = upstream_dual_mask(y, xm, gen)
        out = (y * (1 - mask)).requires_grad_()
        loss = upstream_loss(out, f, y, mask)
        return loss, torch.autograd.grad(loss, out)

    fn = {"fused": fused, "torch_ref": reference, "upstream": upstream}[provider]
    b, c, h, w_ = shape
    es = y.element_size()
    # mask (read y, x_m; write mask) + loss (read out, f, y, mask; write grad)
    nbytes = 2 * y.numel() * es + b * h * w_ * es + 4 * y.numel() * es + b * h * w_ * es
    run(benchmark, fn, group=f"b2g_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
