"""Public ZS-N2N ops: ``pair_downsample`` and ``zsn2n_loss`` (autograd wrappers over the fused ops)."""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from fastdenoise._runtime import FusedLossFunction
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import save_loss_grads
from fastdenoise._runtime import skip_checks
from fastdenoise.ops._args import check_partner
from fastdenoise.ops._args import promote
from fastdenoise.ops.zsn2n import ops
from fastdenoise.ops.zsn2n.reference import pair_downsample_ref
from fastdenoise.ops.zsn2n.reference import zsn2n_loss_ref


class PairDownsampleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, backend):
        d1, d2 = ops.pair_downsample_fwd(x, backend)
        ctx.backend, ctx.hw = backend, (x.shape[-2], x.shape[-1])
        return d1, d2

    @staticmethod
    @once_differentiable
    def backward(ctx, g1, g2):
        if not ctx.needs_input_grad[0]:
            return None, None
        return ops.pair_downsample_bwd(g1, g2, ctx.hw[0], ctx.hw[1], ctx.backend), None


class ZSN2NLossFunction(FusedLossFunction):
    @staticmethod
    def forward(ctx, y, n_y, n1, n2, backend):
        need = ctx.needs_input_grad[:4]
        loss, gy, gny, gn1, gn2 = ops.zsn2n_loss_fwd(y, n_y, n1, n2, *need, backend)
        save_loss_grads(ctx, *(g if k else None for g, k in zip((gy, gny, gn1, gn2), need)))
        return loss


def pair_downsample(x: torch.Tensor, *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ZS-N2N's pair downsampler: two depthwise stride-2 2x2 diagonal-averaging filters, one pass.

    With TL, TR, BL, BR the four pixels of each 2x2 cell (no padding; an odd last row or column is
    dropped, its gradient is 0): ``d1 = (TR + BL) * 0.5`` (filter ``[[0, .5], [.5, 0]]``) and
    ``d2 = (TL + BR) * 0.5`` (filter ``[[.5, 0], [0, .5]]``), computed in float32 for half inputs
    (float64 for float64) with exactly this rounding, so every backend is bit-identical.

    Args:
        x: (B, C, H, W) float tensor, H and W >= 2. Any strides; outputs are contiguous.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto, or the
            ``FASTDENOISE_BACKEND`` environment variable).

    Returns:
        (d1, d2), each (B, C, H // 2, W // 2) of x's dtype. Differentiable with respect to ``x``.

    Example:
        >>> d1, d2 = pair_downsample(torch.rand(1, 3, 8, 8))
    """
    if not skip_checks():
        check_tensor("x", x, min_hw=2)
    be = resolve_backend(backend, x.device)
    if be == "torch":
        return pair_downsample_ref(x)
    return PairDownsampleFunction.apply(x, be)


def zsn2n_loss(y: torch.Tensor, n_y: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor, *,
               backend: str | None = None) -> torch.Tensor:
    """ZS-N2N loss (network predicting noise), fused: the four sub-images are recomputed on the fly.

    With ``(d1, d2) = pair_downsample(y)``, ``(e1, e2) = pair_downsample(y - n_y)`` and ``mse`` the mean
    over all elements::

        L = 0.5 * (mse(d1, d2 - n2) + mse(d2, d1 - n1)) + 0.5 * (mse(d1 - n1, e1) + mse(d2 - n2, e2))

    No stop-gradient (as upstream): gradients flow to ``n_y``, ``n1``, ``n2`` and, when it requires
    grad, to ``y`` itself (through both its downsampled copies and ``y - n_y``).

    Args:
        y: (B, C, H, W) noisy image, H and W >= 2 (usually data, without grad).
        n_y: (B, C, H, W) network output on the full ``y`` (the predicted noise).
        n1: (B, C, H // 2, W // 2) network output on ``d1``.
        n2: (B, C, H // 2, W // 2) network output on ``d2``. Mixed floating dtypes (autocast
            outputs with float32 data) are promoted to a common dtype first; gradients come back in
            each input's dtype.
        backend: as for :func:`pair_downsample`.

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).

    Example:
        >>> y = torch.rand(1, 3, 8, 8)
        >>> d1, d2 = pair_downsample(y)
        >>> loss = zsn2n_loss(y, net(y), net(d1), net(d2))  # doctest: +SKIP
    """
    if not skip_checks():
        check_tensor("y", y, min_hw=2)
        check_partner("n_y", n_y, "y", y)
        b, c, h, w = y.shape
        check_partner("n1", n1, "y", y, shape=(b, c, h // 2, w // 2))
        check_partner("n2", n2, "y", y, shape=(b, c, h // 2, w // 2))
    y, n_y, n1, n2 = promote(y, n_y, n1, n2)
    be = resolve_backend(backend, y.device)
    if be == "torch":
        return zsn2n_loss_ref(y, n_y, n1, n2)
    return ZSN2NLossFunction.apply(y, n_y, n1, n2, be)
