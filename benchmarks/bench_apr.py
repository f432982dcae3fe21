"""APR sampler and sampler+loss forward+backward: fused vs torch reference vs upstream-style eager.

"upstream" re-creates the official code path (written here, not copied): int64 row/column index
tensors built with arange/repeat/expand, a torch.randint of pair ids over B*H*W, per-member offsets
added and clamped, linear indices, and four gathers (h1/h2 of y and of f(y)) with the index expanded
over C; the loss in separate elementwise ops.
"""
import pytest
import torch

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import shape_params
from fastdenoise.ops.apr.reference import apr_loss_ref
from fastdenoise.ops.apr.reference import apr_sample_ref

# The 72 ordered pairs of distinct 3x3 offsets, each member as (x offset, y offset) like the official table.
_OFFS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
_PAIRS = torch.tensor([[a, b] for a in _OFFS for b in _OFFS if a != b], dtype=torch.int64)  # (72, 2, 2)


def upstream_index_pair(img, generator):
    n, _, h, w = img.shape
    pairs = _PAIRS.to(img.device)
    rows = torch.arange(h, device=img.device).view(1, h, 1).repeat(n, 1, w)
    cols = torch.arange(w, device=img.device).view(1, 1, w).repeat(n, h, 1)
    rd = torch.randint(0, 72, (n * h * w,), generator=generator, device=img.device)
    sel = pairs[rd].view(n, h, w, 2, 2)
    idx = []
    for m in range(2):
        c = torch.clamp(cols + sel[..., m, 0], 0, w - 1)
        r = torch.clamp(rows + sel[..., m, 1], 0, h - 1)
        idx.append((r * w + c).view(n, 1, h * w))
    return idx


def upstream_gather(img, idx):
    n, c, h, w = img.shape
    return torch.gather(img.view(n, c, h * w), 2, idx.expand(n, c, h * w)).view(n, c, h, w)


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=g).to(DEVICE)
    fy = (y + 0.05 * torch.randn(shape, generator=g).to(DEVICE)).contiguous()
    return y, fy


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_sampler(benchmark, provider, shape):
    y, _ = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    if provider == "fused":
        be = fused_backend()
        fn = lambda: F.apr_sample(y, 1, backend=be)  # noqa: E731
    elif provider == "torch_ref":
        fn = lambda: apr_sample_ref(y, 1)  # noqa: E731
    else:
        def fn():
            i1, i2 = upstream_index_pair(y, gen)
            return upstream_gather(y, i1), upstream_gather(y, i2)
    nbytes = y.numel() * y.element_size() * 3  # read y once, write h1 and h2
    run(benchmark, fn, group=f"apr_sampler/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_sampler_loss_fwd_bwd(benchmark, provider, shape):
    """Identity stand-in network: out = h1(y) as a leaf, and the step ends with d loss / d out
    (torch.autograd.grad), so only the sampler and the loss are timed."""
    y, fy = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    be = fused_backend()

    def fused():
        h1, _ = F.apr_sample(y, 1, need_h2=False, backend=be)  # as the trainer: the loss regenerates h2
        out = h1.requires_grad_()
        loss = F.apr_loss(out, y, fy, 1, 4.0, backend=be)
        return loss, torch.autograd.grad(loss, out)

    def reference():
        h1, _ = apr_sample_ref(y, 1)
        out = h1.requires_grad_()
        loss = apr_loss_ref(out, y, fy, 1, 4.0)
        return loss, torch.autograd.grad(loss, out)

    def upstream():
        i1, i2 = upstream_index_pair(y, gen)
        h1y, h2y = upstream_gather(y, i1), upstream_gather(y, i2)
        h1f, h2f = upstream_gather(fy, i1), upstream_gather(fy, i2)
        out = h1y.requires_grad_()
        diff = out - h2y
        exp_diff = h1f - h2f
        loss = torch.mean(torch.abs(diff)) + 4.0 * torch.mean(torch.abs(diff - exp_diff))
        return loss, torch.autograd.grad(loss, out)

    fn = {"fused": fused, "torch_ref": reference, "upstream": upstream}[provider]
    es = y.element_size()
    # sampler (read y, write h1) + loss (read out, y, fy; write grad)
    nbytes = y.numel() * es * 2 + y.numel() * es * 4
    run(benchmark, fn, group=f"apr_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
