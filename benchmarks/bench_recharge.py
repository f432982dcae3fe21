"""RD recharged multi-target L1 loss forward+backward (J=6): fused vs torch reference vs upstream-style
eager.

"upstream" re-creates the official recharger's code path (written here, not copied): the teachers
stacked into J materialised targets, per target a boolean mask of the pixels drawn for it, nonzero
(a host sync on GPU), a randperm of those indices (percentage = 1), advanced-index assignment of y into
a permuted (channels-last) view of the stacked targets, then the sum of J L1 losses.
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
from fastdenoise.ops.recharge.reference import recharge_l1_loss_ref

J = 6


def upstream_recharge(y, teachers, generator, percentage=1.0):
    b, _, h, w = y.shape
    targets = torch.stack(teachers, 0)  # (J, B, C, H, W): J materialised targets
    view = targets.permute(0, 1, 3, 4, 2)  # (J, B, H, W, C), non-contiguous
    y_hwc = y.permute(0, 2, 3, 1)
    k = torch.randint(0, len(teachers), (b, h, w), generator=generator, device=y.device)
    for j in range(len(teachers)):
        idx = (k == j).nonzero()
        perm = torch.randperm(idx.shape[0], generator=generator, device=y.device)
        idx = idx[perm[: int(idx.shape[0] * percentage)]]
        view[j][idx[:, 0], idx[:, 1], idx[:, 2]] = y_hwc[idx[:, 0], idx[:, 1], idx[:, 2]]
    return targets


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=g).to(DEVICE)
    teachers = torch.stack([(y + 0.02 * torch.randn(shape, generator=g).to(DEVICE)) for _ in range(J)])
    student = (y + 0.01 * torch.randn(shape, generator=g).to(DEVICE)).requires_grad_(True)
    return student, y, teachers


@pytest.mark.parametrize("provider", ["fused", "torch_ref", "upstream"])
@pytest.mark.parametrize("shape", shape_params())
def test_recharge_loss_fwd_bwd(benchmark, provider, shape):
    student, y, teachers = _inputs(shape)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    be = fused_backend()
    tlist = list(teachers.unbind(0))

    def fused():
        loss = F.recharge_l1_loss(student, y, teachers, 1, backend=be)
        loss.backward()
        return loss

    def reference():
        loss = recharge_l1_loss_ref(student, y, teachers, 1)
        loss.backward()
        return loss

    def upstream():
        with torch.no_grad():
            targets = upstream_recharge(y, tlist, gen)
        loss = sum(nnf.l1_loss(student, targets[j]) for j in range(J))
        loss.backward()
        return loss

    def fn():
        student.grad = None
        return {"fused": fused, "torch_ref": reference, "upstream": upstream}[provider]()

    es = y.element_size()
    nbytes = y.numel() * es * (J + 2 + 1)  # read student, y, J teachers; write grad
    run(benchmark, fn, group=f"recharge_step/{shape_id(shape)}", provider=provider, shape=shape, nbytes=nbytes)
