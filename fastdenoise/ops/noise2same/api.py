"""Public Noise2Same ops: ``stratified_mask``, ``noise2same_loss`` and the ``standardize`` helper."""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from fastdenoise._rng import resolve_seed
from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import skip_checks
from fastdenoise.ops._args import check_partner
from fastdenoise.ops._args import number
from fastdenoise.ops._args import promote
from fastdenoise.ops.noise2same import ops
from fastdenoise.ops.noise2same.reference import REPLACE_MODES
from fastdenoise.ops.noise2same.reference import box_size
from fastdenoise.ops.noise2same.reference import noise2same_loss_ref
from fastdenoise.ops.noise2same.reference import standardize  # noqa: F401 (re-exported)
from fastdenoise.ops.noise2same.reference import stratified_mask_ref


class StratifiedMaskFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, seed, box, mode, sigma_m, backend):
        xm, mask = ops.noise2same_mask_fwd(x, seed, box, mode, sigma_m, backend)
        ctx.mark_non_differentiable(mask)
        ctx.save_for_backward(mask)
        ctx.seed, ctx.box, ctx.mode, ctx.backend = seed, box, mode, backend
        return xm, mask

    @staticmethod
    @once_differentiable
    def backward(ctx, dxm, dmask):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        (mask,) = ctx.saved_tensors
        dx = ops.noise2same_mask_bwd(dxm, mask, ctx.seed, ctx.box, ctx.mode, ctx.backend)
        return dx, None, None, None, None, None


class Noise2SameLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, full, masked, x, mask, lam, eps, backend):
        loss, coef = ops.noise2same_loss_fwd(full, masked, x, mask, lam, eps, backend)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(coef, full, masked, x, mask)
        ctx.backend = backend
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return None, None, None, None, None, None, None
        coef, full, masked, x, mask = ctx.saved_tensors
        gf, gm = ops.noise2same_loss_bwd(coef * dloss.to(coef.dtype), full, masked, x, mask, ctx.backend)
        return (gf if ctx.needs_input_grad[0] else None, gm if ctx.needs_input_grad[1] else None,
                None, None, None, None, None)


def stratified_mask(x: torch.Tensor, seed: int | torch.Tensor | None = None, perc: float = 0.5,
                    replace: str = "gaussian", sigma_m: float = 0.2, *, generator: torch.Generator | None = None,
                    backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise2Same's stratified J-mask with replacement, in one kernel.

    Boxes of side ``s = round(sqrt(100 / perc))`` (14 at the default 0.5 %) tile the image from (0, 0);
    in every box and channel (channels independent) one position is drawn uniformly from the Philox
    stream of ``seed`` (counter layout in ``reference.py``); positions outside the image are dropped.
    The masked positions are replaced by ``N(0, sigma_m)`` values (``"gaussian"``, values drawn on the
    host, so every backend is bit-identical) or by the 3x3 weighted mean of the neighbours
    ``[[.5, 1, .5], [1, 0, 1], [.5, 1, .5]] / 6`` with zero padding (``"donut"``).

    Args:
        x: (B, C, H, W) float tensor (standardised per image and channel, as upstream). Any strides;
            outputs are contiguous.
        seed: integer in [0, 2**63) or a one-element integer tensor; None (default) draws a fresh seed
            from ``generator`` or torch's default generator (the same ``torch.manual_seed`` gives the
            same draws).
        perc: masked percentage in (0, 100] (defines the box side).
        replace: ``"gaussian"`` or ``"donut"``.
        sigma_m: standard deviation of the Gaussian replacement (ignored for the donut), >= 0.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto, or the
            ``FASTDENOISE_BACKEND`` environment variable).
        generator: a ``torch.Generator`` to draw the seed from when ``seed`` is None.

    Returns:
        (x_masked, mask), each (B, C, H, W) of x's dtype; mask is 1 at the masked positions, else 0.
        x_masked is differentiable w.r.t. ``x`` (identity off the mask; at masked positions the donut's
        transpose, or zero for the Gaussian).

    Example:
        >>> xm, m = stratified_mask(torch.randn(1, 3, 64, 64), seed=0)
    """
    seed = resolve_seed(seed, generator)
    perc, sigma_m = number("perc", perc), number("sigma_m", sigma_m)
    if not skip_checks():
        check_tensor("x", x)
        perc = check_float("perc", perc, lo=0.0, hi=100.0, lo_open=True)
        if replace not in REPLACE_MODES:
            raise ValueError(f"replace must be one of {REPLACE_MODES}, got {replace!r}")
        sigma_m = check_float("sigma_m", sigma_m, lo=0.0)
    box = box_size(perc)
    be = resolve_backend(backend, x.device)
    if be == "torch":
        return stratified_mask_ref(x, seed, box, replace, sigma_m)
    mode = ops.DONUT if replace == "donut" else ops.GAUSSIAN
    return StratifiedMaskFunction.apply(x, seed, box, mode, float(sigma_m), be)


def noise2same_loss(out_full: torch.Tensor, out_masked: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                    lam: float = 2.0, eps: float = 1e-12, *, backend: str | None = None) -> torch.Tensor:
    """Noise2Same loss, one fused reduction: ``rec + lam * sqrt(max(inv, eps))``.

    ``rec = mean((out_full - x)^2)`` over all elements, ``inv = sum(mask (out_full - out_masked)^2) /
    sum(mask)`` (``inv = 0`` when ``sum(mask) == 0``). The clamp at ``eps`` keeps the value finite and
    makes the invariance gradient zero while ``inv < eps``. Gradients flow to both network outputs
    (no stop-gradient, as upstream); ``x`` and ``mask`` are constants.

    Args:
        out_full: (B, C, H, W) network output on the full image.
        out_masked: (B, C, H, W) network output on ``x_masked``.
        x: (B, C, H, W) the (standardised) noisy input.
        mask: (B, C, H, W) mask from :func:`stratified_mask` (any non-negative weights work). Mixed floating
            dtypes (bfloat16 outputs of an autocast network with float32 data) are promoted to a common one.
        lam: weight of the invariance term (2 by default; 0.95 for BSD68 with the donut), >= 0.
        eps: clamp of ``inv`` under the square root, > 0.
        backend: as for :func:`stratified_mask`.

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).
    """
    lam, eps = number("lam", lam), number("eps", eps)
    if not skip_checks():
        check_tensor("out_full", out_full)
        check_partner("out_masked", out_masked, "out_full", out_full)
        check_partner("x", x, "out_full", out_full)
        check_partner("mask", mask, "out_full", out_full)
        lam = check_float("lam", lam, lo=0.0)
        eps = check_float("eps", eps, lo=0.0, lo_open=True)
    out_full, out_masked, x, mask = promote(out_full, out_masked, x, mask)   # autocast: bf16 outputs, f32 data
    be = resolve_backend(backend, out_full.device)
    if be == "torch":
        return noise2same_loss_ref(out_full, out_masked, x, mask, lam, eps)
    return Noise2SameLossFunction.apply(out_full, out_masked, x.detach(), mask.detach(), float(lam), float(eps), be)
