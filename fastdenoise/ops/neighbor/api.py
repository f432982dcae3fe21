"""Public Nb2Nb ops: ``neighbor_subsample`` and ``nb2nb_loss`` (autograd wrappers over the fused ops)."""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from fastdenoise._runtime import FusedLossFunction
from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_like
from fastdenoise._runtime import check_seed
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import save_loss_grads
from fastdenoise._runtime import skip_checks
from fastdenoise.ops.neighbor import ops
from fastdenoise.ops.neighbor.reference import nb2nb_loss_ref
from fastdenoise.ops.neighbor.reference import neighbor_subsample_ref


class NeighborSubsampleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, seed, backend):
        g1, g2 = ops.neighbor_subsample_fwd(x, seed, backend)
        ctx.seed, ctx.backend, ctx.hw = seed, backend, (x.shape[-2], x.shape[-1])
        return g1, g2

    @staticmethod
    @once_differentiable
    def backward(ctx, dg1, dg2):
        dx = ops.neighbor_subsample_bwd(dg1, dg2, ctx.seed, ctx.hw[0], ctx.hw[1], ctx.backend)
        return dx, None, None


class Nb2NbLossFunction(FusedLossFunction):
    @staticmethod
    def forward(ctx, out, y, fy, seed, gamma, backend):
        loss, grad = ops.nb2nb_loss_fwd(out, y, fy, seed, gamma, ctx.needs_input_grad[0], backend)
        save_loss_grads(ctx, grad)
        return loss


def neighbor_subsample(x: torch.Tensor, seed: int, *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbor2Neighbor's random neighbour sub-sampler.

    The image is tiled into 2x2 cells (positions 0=top-left, 1=top-right, 2=bottom-left,
    3=bottom-right). For every cell and image one of the 8 ordered edge-adjacent pairs
    (0,1) (0,2) (1,3) (2,3) (1,0) (2,0) (3,1) (3,2) is drawn uniformly from the Philox stream of
    ``seed`` and shared across channels; g1 takes the first position, g2 the second. Odd H or W drop
    the last row or column (as the official code does).

    Args:
        x: (B, C, H, W) float tensor, H and W >= 2. Any strides; outputs are contiguous.
        seed: integer in [0, 2**63); the same seed gives bit-identical samples on every backend.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto, or the
            ``FASTDENOISE_BACKEND`` environment variable).

    Returns:
        (g1, g2), each (B, C, H // 2, W // 2). Differentiable with respect to ``x``.

    Example:
        >>> g1, g2 = neighbor_subsample(torch.rand(1, 3, 8, 8), seed=0)
    """
    if not skip_checks():
        check_tensor("x", x, min_hw=2)
        seed = check_seed(seed)
    be = resolve_backend(backend, x.device)
    if be == "torch":
        return neighbor_subsample_ref(x, seed)
    return NeighborSubsampleFunction.apply(x, seed, be)


def nb2nb_loss(out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int, gamma: float = 2.0, *,
               backend: str | None = None) -> torch.Tensor:
    """Neighbor2Neighbor loss, fused: no sub-image of ``y`` or ``fy`` is materialised.

    ``L = mean((out - g2(y))^2) + gamma * mean((out - g2(y) - (g1(fy) - g2(fy)))^2)`` where g1, g2 are
    the sub-samplers of ``seed`` (the same draw as ``neighbor_subsample(y, seed)``).

    Args:
        out: (B, C, H // 2, W // 2) network output on ``g1(y)``; the only input that gets a gradient.
        y: (B, C, H, W) noisy image.
        fy: (B, C, H, W) network output on the full ``y``, treated as a constant (stop-gradient).
        seed: the seed used to sample ``g1(y)``.
        gamma: weight of the regulariser (Nb2Nb ramps it to 2 for sRGB, 1 for raw).
        backend: as for :func:`neighbor_subsample`.

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).
    """
    if not skip_checks():
        check_tensor("y", y, min_hw=2)
        check_like("fy", fy, "y", y)
        b, c, h, w = y.shape
        check_like("out", out, "y", y, shape=(b, c, h // 2, w // 2))
        seed = check_seed(seed)
        gamma = check_float("gamma", gamma, lo=0.0)
    be = resolve_backend(backend, out.device)
    if be == "torch":
        return nb2nb_loss_ref(out, y, fy, seed, gamma)
    return Nb2NbLossFunction.apply(out, y.detach(), fy.detach(), seed, float(gamma), be)
