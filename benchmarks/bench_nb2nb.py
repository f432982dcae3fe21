"""Nb2Nb sub-sampler and sampler+loss forward+backward: fused vs torch reference vs upstream-style eager.

"upstream" re-creates the official code path (written here, not copied): a boolean mask pair built
from an int64 randint over cells, then per channel unfold -> permute -> boolean indexing (a host
sync on GPU) for each of the four sub-images, then the loss in separate elementwise ops.
"""
import pytest
import torch
import torch.nn.functional as nnf

import fastdenoise.functional as F
from benchutil import DEVICE
from benchutil import fused_backend
from benchutil import run
from benchutil import shape_id
from benchutil import shape_params
from fastdenoise.ops.neighbor.reference import nb2nb_loss_ref
from fastdenoise.ops.neighbor.reference import neighbor_subsample_ref

_PAIRS = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3], [1, 0], [2, 0], [3, 1], [3, 2]], dtype=torch.int64)


def upstream_mask_pair(img, generator):
    n, _, h, w = img.shape
    cells = n * (h // 2) * (w // 2)
    mask1 = torch.zeros(cells * 4, dtype=torch.bool, device=img.device)
    mask2 = torch.zeros(cells * 4, dtype=torch.bool, device=img.device)
    rd = torch.randint(0, 8, (cells,), generator=generator, device=img.device)
    pair = _PAIRS.to(img.device)[rd]
    pair = pair + torch.arange(0, cells * 4, 4, dtype=torch.int64, device=img.device).reshape(-1, 1)
    mask1[pair[:, 0]] = True
    mask2[pair[:, 1]] = True
    return mask1, mask2


def upstream_subimage(img, mask):
    n, c, h, w = img.shape
    sub = torch.zeros(n, c, h // 2, w // 2, dtype=img.dtype, device=img.device)
    for i in range(c):
        per = nnf.unfold(img[:, i : i + 1], kernel_size=2, stride=2).view(n, 4, h // 2, w // 2)
        per = per.permute(0, 2, 3, 1).reshape(-1)
        sub[:, i : i + 1] = per[mask].reshape(n, h // 2, w // 2, 1).permute(0, 3, 1, 2)
    return sub


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
        fn = lambda: F.neighbor_subsample(y, 1, backend=be)  # noqa: E731
    elif provider == "torch_ref":
        fn = lambda: neighbor_subsample_ref(y, 1)  # noqa: E731
    else:
        def fn():
            m1, m2 = upstream_mask_pair(y, gen)
            return upstream_subimage(y, m1), upstream_subimage(y, m2)
    nbytes = y.numel() * y.element_size() * 3 // 2  # read y once, write two quarter-size images
    run(benchmark, fn, group=f"nb2nb_sampler/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_sampler_loss_fwd_bwd(benchmark, provider, shape):
    """Identity stand-in network: out = g1(y) as a leaf, and the step ends with d loss / d out
    (torch.autograd.grad), so only the sampler and the loss are timed."""
    y, fy = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    be = fused_backend()

    def fused():
        g1, _ = F.neighbor_subsample(y, 1, backend=be)
        out = g1.requires_grad_()
        loss = F.nb2nb_loss(out, y, fy, 1, 2.0, backend=be)
        return loss, torch.autograd.grad(loss, out)

    def reference():
        g1, _ = neighbor_subsample_ref(y, 1)
        out = g1.requires_grad_()
        loss = nb2nb_loss_ref(out, y, fy, 1, 2.0)
        return loss, torch.autograd.grad(loss, out)

    def upstream():
        m1, m2 = upstream_mask_pair(y, gen)
        s1, s2 = upstream_subimage(y, m1), upstream_subimage(y, m2)
        with torch.no_grad():
            d1, d2 = upstream_subimage(fy, m1), upstream_subimage(fy, m2)
        out = s1.requires_grad_()
        diff = out - s2
        exp_diff = d1 - d2
        loss = torch.mean(diff**2) + 2.0 * torch.mean((diff - exp_diff) ** 2)
        return loss, torch.autograd.grad(loss, out)

    fn = {"fused": fused, "torch_ref": reference, "upstream": upstream}[provider]
    es = y.element_size()
    # sampler (read y, write g1, g2) + loss (read out, y, fy; write grad)
    nbytes = y.numel() * es * 3 // 2 + y.numel() * es * 5 // 2
    run(benchmark, fn, group=f"nb2nb_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
