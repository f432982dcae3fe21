"""Public RD op: ``recharge_l1_loss`` (autograd wrapper over the fused multi-target L1 op)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdenoise._runtime import FusedLossFunction
from fastdenoise._rng import resolve_seed
from fastdenoise.ops._args import check_partner
from fastdenoise.ops._args import promote
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import save_loss_grads
from fastdenoise._runtime import skip_checks
from fastdenoise.ops.recharge import ops
from fastdenoise.ops.recharge.reference import recharge_l1_loss_ref


class RechargeL1Function(FusedLossFunction):
    @staticmethod
    def forward(ctx, student, y, teachers, seed, backend):
        loss, grad = ops.recharge_l1_fwd(student, y, teachers, seed, ctx.needs_input_grad[0], backend)
        save_loss_grads(ctx, grad)
        return loss


def recharge_l1_loss(student: torch.Tensor, y: torch.Tensor, teachers: torch.Tensor | Sequence[torch.Tensor],
                     seed: int | torch.Tensor | None = None, *, generator: torch.Generator | None = None,
                     backend: str | None = None) -> torch.Tensor:
    """RD's recharged multi-target L1 loss, fused: no recharged target is materialised.

    For every pixel (b, r, c) an index ``k = choice(philox(seed, (b * H + r) * W + c), J)`` is drawn
    (shared across channels); target j is ``y`` at pixels with ``k == j`` and ``teachers[j]``
    elsewhere, so each pixel is recharged in exactly one target. ``L = sum_j mean|student - target_j|``.

    Args:
        student: (B, C, H, W) student output; the only input that gets a gradient (sum_j sign / N).
        y: (B, C, H, W) noisy image (constant).
        teachers: (J, B, C, H, W) tensor, or a sequence of J (B, C, H, W) tensors (stacked here), J >= 1;
            constants (the teachers run under no_grad upstream).
        seed: integer in [0, 2**63) or a one-element integer tensor; None (default) draws a fresh seed
            from ``generator`` or torch's default generator (the same ``torch.manual_seed`` gives the
            same draws).
        generator: a ``torch.Generator`` to draw the seed from when ``seed`` is None.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto).

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).
    """
    if isinstance(teachers, (list, tuple)):
        if len(teachers) < 1:
            raise ValueError("teachers must hold J >= 1 tensors, got an empty sequence")
        if not skip_checks():
            for i, t in enumerate(teachers):
                check_partner(f"teachers[{i}]", t, "student", student)
        teachers = torch.stack([t.detach() for t in teachers])
    if not skip_checks():
        check_tensor("student", student)
        check_partner("y", y, "student", student)
        if not isinstance(teachers, torch.Tensor):
            raise TypeError(f"teachers must be a torch.Tensor or a sequence of tensors, got {type(teachers).__name__}")
        if teachers.dim() != 5 or teachers.shape[0] < 1:
            raise ValueError(f"teachers must have shape (J, B, C, H, W) with J >= 1, got {tuple(teachers.shape)}")
        check_partner("teachers", teachers, "student", student, shape=(teachers.shape[0], *student.shape))
    student, y, teachers = promote(student, y, teachers)     # autocast: a bf16 student, f32 data
    seed = resolve_seed(seed, generator)
    be = resolve_backend(backend, student.device)
    if be == "torch":
        return recharge_l1_loss_ref(student, y, teachers, seed)
    return RechargeL1Function.apply(student, y.detach(), teachers.detach(), seed, be)
