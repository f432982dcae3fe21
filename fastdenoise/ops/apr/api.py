"""Public APR ops: ``apr_sample`` and ``apr_loss`` (autograd wrappers over the fused ops)."""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from fastdenoise._rng import resolve_seed
from fastdenoise._runtime import FusedLossFunction
from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import save_loss_grads
from fastdenoise._runtime import skip_checks
from fastdenoise.ops._args import check_partner
from fastdenoise.ops._args import number
from fastdenoise.ops._args import promote
from fastdenoise.ops.apr import ops
from fastdenoise.ops.apr.reference import apr_loss_ref
from fastdenoise.ops.apr.reference import apr_sample_ref


class APRSampleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, seed, need_h2, backend):
        h1, h2 = ops.apr_sample_fwd(x, seed, need_h2, backend)
        ctx.seed, ctx.backend = seed, backend
        if not need_h2:
            ctx.mark_non_differentiable(h2)  # an empty placeholder
        return h1, h2

    @staticmethod
    @once_differentiable
    def backward(ctx, dh1, dh2):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        if dh1 is None:
            dh1 = torch.zeros_like(dh2)
        if dh2 is None or dh2.shape != dh1.shape:
            dh2 = torch.zeros_like(dh1)
        return ops.apr_sample_bwd(dh1, dh2, ctx.seed, ctx.backend), None, None, None


class APRLossFunction(FusedLossFunction):
    @staticmethod
    def forward(ctx, out, y, fy, seed, lam, grad_through_reg, backend):
        grad_fy = grad_through_reg and ctx.needs_input_grad[2]
        loss, gout, gfy = ops.apr_loss_fwd(out, y, fy, seed, lam, ctx.needs_input_grad[0], grad_fy, backend)
        save_loss_grads(ctx, gout, None, gfy if grad_fy else None)
        return loss


def apr_sample(x: torch.Tensor, seed: int | torch.Tensor | None = None, *, need_h2: bool = True,
               generator: torch.Generator | None = None,
               backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """APR's Adjacent Pixel Replacer: two random 3x3-neighbour images of ``x``.

    For every pixel and image one of the 72 ordered pairs (p, q) of distinct 3x3 window positions
    (centre allowed; table in ``fastdenoise.ops.apr.reference.PAIRS72``) is drawn uniformly from the
    Philox stream of ``seed`` and shared across channels; h1 takes position p, h2 position q.
    Source coordinates are clamped at the borders (replicate edge, as the official code), so h1
    and h2 may coincide there.

    Args:
        x: (B, C, H, W) float tensor, H and W >= 1. Any strides; outputs are contiguous.
        seed: integer in [0, 2**63) (or a one-element integer tensor); the same seed gives
            bit-identical samples on every backend. None (default) draws a fresh seed from
            ``generator`` or torch's default generator (same ``torch.manual_seed``, same samples);
            :func:`apr_loss` needs the sampler's seed, so a loop draws one per iteration with
            ``draw_seed()`` and passes it to both.
        need_h2: False skips h2 and returns ``(h1, None)``: the APR training step feeds only h1(y)
            to the network, and :func:`apr_loss` regenerates h2 from the seed, so the fused
            backends then read ``x`` once and write one image instead of two.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto, or the
            ``FASTDENOISE_BACKEND`` environment variable).
        generator: a ``torch.Generator`` to draw the seed from when ``seed`` is None.

    Returns:
        (h1, h2), each (B, C, H, W); h2 is None when ``need_h2`` is False. Differentiable with
        respect to ``x`` (deterministic gather-form backward, no atomics).

    Example:
        >>> h1, h2 = apr_sample(torch.rand(1, 3, 8, 8), seed=0)
    """
    seed = resolve_seed(seed, generator)
    if not skip_checks():
        check_tensor("x", x)
        if not isinstance(need_h2, bool):
            raise TypeError(f"need_h2 must be a bool, got {type(need_h2).__name__}")
    be = resolve_backend(backend, x.device)
    if be == "torch":
        h1, h2 = apr_sample_ref(x, seed)
    else:
        h1, h2 = APRSampleFunction.apply(x, seed, bool(need_h2), be)
    return (h1, h2) if need_h2 else (h1, None)


def apr_loss(out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int | torch.Tensor,
             lam: float | torch.Tensor = 4.0,
             grad_through_reg: bool = False, *, backend: str | None = None) -> torch.Tensor:
    """APR loss, fused: no h2(y), h1(fy) or h2(fy) is materialised.

    ``L = mean|out - h2(y)| + lam * mean|out - h2(y) - (h1(fy) - h2(fy))|`` where h1, h2 are the
    samplers of ``seed`` (the same draw as ``apr_sample(y, seed)``).

    Args:
        out: (B, C, H, W) network output on ``h1(y)``.
        y: (B, C, H, W) noisy image (a constant).
        fy: (B, C, H, W) network output on the full ``y``. Mixed floating dtypes (autocast) are
            promoted to a common dtype first; gradients come back in each input's dtype.
        seed: the seed used to sample ``h1(y)`` (int or one-element integer tensor; required).
        lam: weight of the regulariser (4 in the paper, constant); a number or one-element tensor.
        grad_through_reg: False (paper, default): ``fy`` is a constant. True (official code): the
            gradient also flows into ``fy`` through ``h1(fy) - h2(fy)``.
        backend: as for :func:`apr_sample`.

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).
    """
    if seed is None:
        raise TypeError("apr_loss needs the seed its sampler used: draw one per iteration with "
                        "fastdenoise.functional.draw_seed() and pass it to apr_sample and apr_loss")
    seed = resolve_seed(seed)
    lam = number("lam", lam)
    if not skip_checks():
        check_tensor("y", y)
        check_partner("fy", fy, "y", y)
        check_partner("out", out, "y", y)
        lam = check_float("lam", lam, lo=0.0)
        if not isinstance(grad_through_reg, bool):
            raise TypeError(f"grad_through_reg must be a bool, got {type(grad_through_reg).__name__}")
    out, y, fy = promote(out, y, fy)
    be = resolve_backend(backend, out.device)
    if be == "torch":
        return apr_loss_ref(out, y, fy, seed, lam, grad_through_reg)
    if not grad_through_reg:
        fy = fy.detach()
    return APRLossFunction.apply(out, y.detach(), fy, seed, float(lam), bool(grad_through_reg), be)
