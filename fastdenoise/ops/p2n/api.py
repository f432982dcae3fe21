"""Public P2N ops: ``rdc_renoise``, ``p2n_loss`` and the ``p2n_gamma`` schedule."""
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
from fastdenoise.ops.p2n import ops
from fastdenoise.ops.p2n.reference import GRANULARITIES
from fastdenoise.ops.p2n.reference import draw_scales
from fastdenoise.ops.p2n.reference import group_size
from fastdenoise.ops.p2n.reference import scales_count
from fastdenoise.ops.p2n.reference import p2n_loss_ref
from fastdenoise.ops.p2n.reference import rdc_renoise_ref


class RdcRenoiseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, x_hat, scales, group, clamp, backend):
        z = ops.rdc_renoise_fwd(y, x_hat, scales, group, clamp, backend)
        ctx.save_for_backward(y, x_hat, scales)
        ctx.group, ctx.clamp, ctx.backend = group, clamp, backend
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, dz):
        y, x_hat, scales = ctx.saved_tensors
        need_dy, need_dx = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_dy or need_dx):
            return None, None, None, None, None, None
        dy, dx = ops.rdc_renoise_bwd(dz, y, x_hat, scales, ctx.group, ctx.clamp, need_dy, need_dx, ctx.backend)
        return dy if need_dy else None, dx if need_dx else None, None, None, None, None


class P2NLossFunction(FusedLossFunction):
    @staticmethod
    def forward(ctx, out_pos, out_neg, gamma, eps, backend):
        need = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, grad = ops.p2n_loss_fwd(out_pos, out_neg, gamma, eps, need, backend)
        save_loss_grads(ctx, grad, (grad, -1.0))
        return loss


def rdc_renoise(y: torch.Tensor, x_hat: torch.Tensor, seed: int | torch.Tensor | None = None, sigma: float = 0.75,
                granularity: str = "image", detach: bool = True, *, clamp: bool = False,
                generator: torch.Generator | None = None,
                backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """P2N's Renoised Data Construction in one pass, ready for a single 2B-batch forward.

    With ``n = y - x_hat``: ``z = cat([x_hat + a * n, x_hat - b * n])`` on the batch axis, where the
    scales ``a, b ~ N(1, sigma)`` (not clamped) come from the Philox stream of ``seed`` through the
    exactly reproducible normal transform ``_rng.normal_exact`` (counter layout in
    ``fastdenoise.ops.p2n.reference``): on the host for the CPU backends, by a small kernel on the
    device for Triton (no host work, no copy). Every backend computes the same scales and rounds
    ``x_hat + a * n`` the same way (no FMA), so ``z`` is bit-identical across backends for every
    granularity.

    Args:
        y: (B, C, H, W) noisy image. Any strides; ``z`` is contiguous.
        x_hat: (B, C, H, W) first-pass estimate ``F(y)``, same device as ``y``; a different floating
            dtype (autocast output) is promoted with ``y``'s, and ``z`` has the promoted dtype.
        seed: integer in [0, 2**63) or a one-element integer tensor; None (default) draws a fresh seed
            from ``generator`` or torch's default generator (the same ``torch.manual_seed`` gives the
            same draws).
        sigma: standard deviation of the scales (paper default 0.75; 0 gives "Fixed" P2N).
        granularity: ``"image"`` (default: one a and one b per image), ``"batch"`` (one a and one b for
            the batch, as the "P2N+" ports) or ``"pixel"`` (one pair per element).
        detach: True (default, the stop-gradient decision) treats ``x_hat`` as a constant; False lets
            gradients flow to ``x_hat`` too (dz/dx_hat = 1 - a and 1 + b). ``y`` gets its pointwise
            gradient (a and -b) whenever it requires grad.
        clamp: clamp z to [0, 1] (the "P2N+" ports); the gradient is zero where the clamp is active.
        generator: a ``torch.Generator`` to draw the seed from when ``seed`` is None.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto).

    Returns:
        (z, scales): z of shape (2B, C, H, W) in y's dtype; scales (a and b stacked on dim 0) of shape
        (2, B) for "image", (2, 1) for "batch", (2, B, C, H, W) for "pixel", in float32 (float64 for
        float64 inputs), on y's device.

    Example:
        >>> y = torch.rand(1, 3, 8, 8); xh = y.mean(1, keepdim=True).expand_as(y)
        >>> z, s = rdc_renoise(y, xh, seed=0)  # z[:1] = xh + s[0] * (y - xh)
    """
    seed = resolve_seed(seed, generator)
    sigma = number("sigma", sigma)
    if not skip_checks():
        check_tensor("y", y)
        check_partner("x_hat", x_hat, "y", y)
        sigma = check_float("sigma", sigma, lo=0.0)
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    y, x_hat = promote(y, x_hat)
    if detach:
        x_hat = x_hat.detach()
    be = resolve_backend(backend, y.device)
    if be == "torch":
        scales = draw_scales(seed, y.shape, sigma, granularity, y.dtype, y.device)
        return rdc_renoise_ref(y, x_hat, scales, granularity, bool(clamp)), scales
    m = scales_count(y.shape, granularity)
    per = (m,) if granularity != "pixel" else tuple(y.shape)
    scales = ops.rdc_scales(y.detach(), seed, sigma, m, be).view(2, *per)
    z = RdcRenoiseFunction.apply(y, x_hat, scales, group_size(y.shape, granularity), bool(clamp), be)
    return z, scales


def p2n_loss(out_pos: torch.Tensor, out_neg: torch.Tensor, gamma: float, eps: float = 1e-8, *,
             backend: str | None = None) -> torch.Tensor:
    """P2N's loss ``mean((|out_pos - out_neg| + eps)^gamma)``, value and gradient in one fused pass.

    The gradient ``gamma (|d| + eps)^(gamma - 1) sign(d) / N`` (and its negative for ``out_neg``) is
    written by the forward kernel and scaled by the incoming gradient in backward.

    Args:
        out_pos: (B, C, H, W) network output on the positive renoised images.
        out_neg: (B, C, H, W) network output on the negative ones, same device (mixed floating
            dtypes are promoted to a common dtype).
        gamma: exponent > 0 (use :func:`p2n_gamma` for the 2 -> 1.5 schedule); a number or a
            one-element tensor (a constant).
        eps: offset >= 0 inside the power (paper: 1e-8).
        backend: as for :func:`rdc_renoise`.

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).
    """
    gamma, eps = number("gamma", gamma), number("eps", eps)
    if not skip_checks():
        check_tensor("out_pos", out_pos)
        check_partner("out_neg", out_neg, "out_pos", out_pos)
        gamma = check_float("gamma", gamma, lo=0.0, lo_open=True)
        eps = check_float("eps", eps, lo=0.0)
    out_pos, out_neg = promote(out_pos, out_neg)
    be = resolve_backend(backend, out_pos.device)
    if be == "torch":
        return p2n_loss_ref(out_pos, out_neg, gamma, eps)
    return P2NLossFunction.apply(out_pos, out_neg, float(gamma), float(eps), be)


def p2n_gamma(t: int, total: int, start: float = 2.0, end: float = 1.5, *, endpoint: bool = True,
              floor: float | None = None) -> float:
    """Linear gamma schedule of P2N: ``start + (end - start) * t / (total - 1)`` (``start`` if total == 1).

    ``endpoint=False`` gives the "P2N+" ports' form ``start + (end - start) * t / total`` (``end`` is
    reached only at t = total); ``floor`` bounds gamma from below (the ports' "0" mode: end=0, floor=0.5).
    """
    if isinstance(t, bool) or not hasattr(t, "__index__") or isinstance(total, bool) or not hasattr(total, "__index__"):
        raise TypeError("t and total must be ints")
    t, total = int(t), int(total)
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if not 0 <= t < total + (0 if endpoint else 1):
        raise ValueError(f"t must be in [0, total), got t={t} with total={total}")
    start, end = check_float("start", start), check_float("end", end)
    if endpoint:
        g = start if total == 1 else start + (end - start) * t / (total - 1)
    else:
        g = start + (end - start) * t / total
    return max(g, float(floor)) if floor is not None else g
