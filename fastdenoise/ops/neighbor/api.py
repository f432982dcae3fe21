"""Public Nb2Nb ops: ``neighbor_subsample``, ``nb2nb_loss`` and ``neighbor_pairs`` (autograd wrappers
over the fused ops)."""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from fastdenoise._rng import resolve_seed
from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import scale_saved_grad
from fastdenoise._runtime import skip_checks
from fastdenoise.ops._args import check_partner
from fastdenoise.ops._args import number
from fastdenoise.ops._args import promote
from fastdenoise.ops.neighbor import ops
from fastdenoise.ops.neighbor.reference import PAIRS
from fastdenoise.ops.neighbor.reference import nb2nb_terms_ref
from fastdenoise.ops.neighbor.reference import neighbor_choice_ref
from fastdenoise.ops.neighbor.reference import neighbor_subsample_ref


class NeighborSubsampleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, seed, need_g2, backend):
        g1, g2 = ops.neighbor_subsample_fwd(x, seed, need_g2, backend)
        ctx.seed, ctx.backend, ctx.hw = seed, backend, (x.shape[-2], x.shape[-1])
        if not need_g2:
            ctx.mark_non_differentiable(g2)  # an empty placeholder
        return g1, g2

    @staticmethod
    @once_differentiable
    def backward(ctx, dg1, dg2):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        if dg1 is None:
            dg1 = torch.zeros_like(dg2)
        if dg2 is None or dg2.shape != dg1.shape:
            dg2 = torch.zeros_like(dg1)
        dx = ops.neighbor_subsample_bwd(dg1, dg2, ctx.seed, ctx.hw[0], ctx.hw[1], ctx.backend)
        return dx, None, None, None


class Nb2NbLossFunction(torch.autograd.Function):
    """Returns (loss, terms): terms = the two means, a non-differentiable output for logging."""

    @staticmethod
    def forward(ctx, out, y, fy, seed, w1, w2, backend):
        terms, grad = ops.nb2nb_loss_fwd(out, y, fy, seed, w1, w2, ctx.needs_input_grad[0], backend)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(terms)
        ctx.set_materialize_grads(False)     # no zero gradient is made for the terms
        # narrow() views, not indexing: indexing and 0-dim tensors trip FakeTensorMode's device rules
        return (terms.narrow(0, 0, 1).mul(w1) + terms.narrow(0, 1, 1).mul(w2)).sum(), terms

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss, dterms):
        if dloss is None or not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None, None
        (grad,) = ctx.saved_tensors
        return scale_saved_grad(grad, dloss), None, None, None, None, None, None


def neighbor_subsample(x: torch.Tensor, seed: int | torch.Tensor | None = None, *, need_g2: bool = True,
                       generator: torch.Generator | None = None,
                       backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Neighbor2Neighbor's random neighbour sub-sampler.

    The image is tiled into 2x2 cells (positions 0=top-left, 1=top-right, 2=bottom-left,
    3=bottom-right). For every cell and image one of the 8 ordered edge-adjacent pairs
    (0,1) (0,2) (1,3) (2,3) (1,0) (2,0) (3,1) (3,2) is drawn uniformly from the Philox stream of
    ``seed`` and shared across channels (:func:`neighbor_pairs` returns the draws); g1 takes the
    first position, g2 the second. Odd H or W drop the last row or column (as the official code does).

    Args:
        x: (B, C, H, W) float tensor, H and W >= 2. Any strides; outputs are contiguous.
        seed: integer in [0, 2**63) (or a one-element integer tensor); the same seed gives
            bit-identical samples on every backend. None (default) draws a fresh seed from
            ``generator`` or torch's default generator: a new pattern on every call, the same
            sequence of patterns after the same ``torch.manual_seed``. The loss needs the seed of
            its sampler, so a training loop draws it once per iteration
            (``seed = fastdenoise.functional.draw_seed()``) and passes it to both.
        need_g2: False skips g2 and returns ``(g1, None)``: Nb2Nb feeds only g1(y) to the network
            and :func:`nb2nb_loss` regenerates g2 from the seed, so the fused backends write one
            sub-image instead of two.
        generator: a ``torch.Generator`` to draw the seed from when ``seed`` is None.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto, or the
            ``FASTDENOISE_BACKEND`` environment variable).

    Returns:
        (g1, g2), each (B, C, H // 2, W // 2); g2 is None when ``need_g2`` is False.
        Differentiable with respect to ``x``.

    Example:
        >>> seed = draw_seed()  # once per iteration
        >>> g1, _ = neighbor_subsample(torch.rand(1, 3, 8, 8), seed, need_g2=False)
    """
    seed = resolve_seed(seed, generator)
    if not skip_checks():
        check_tensor("x", x, min_hw=2)
        if not isinstance(need_g2, bool):
            raise TypeError(f"need_g2 must be a bool, got {type(need_g2).__name__}")
    be = resolve_backend(backend, x.device)
    if be == "torch":
        g1, g2 = neighbor_subsample_ref(x, seed)
    else:
        g1, g2 = NeighborSubsampleFunction.apply(x, seed, bool(need_g2), be)
    return (g1, g2) if need_g2 else (g1, None)


def neighbor_pairs(x: torch.Tensor, seed: int | torch.Tensor) -> torch.Tensor:
    """The per-cell draws of :func:`neighbor_subsample`: pair index in [0, 8) of shape (B, H // 2, W // 2)
    (int64, on x's device), indexing the table ``(0,1) (0,2) (1,3) (2,3) (1,0) (2,0) (3,1) (3,2)``
    (the official Neighbor2Neighbor ``idx_pair`` table, in its order). ``x`` only supplies the shape
    and device. For tests and for feeding the same draws to another implementation.
    """
    seed = resolve_seed(seed)
    check_tensor("x", x, min_hw=2)
    b, _, h, w = x.shape
    return neighbor_choice_ref(seed, b, h // 2, w // 2, x.device)


NEIGHBOR_PAIRS = PAIRS


def nb2nb_loss(out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int | torch.Tensor,
               gamma: float | torch.Tensor = 2.0, *, lambda1: float | torch.Tensor = 1.0, return_terms: bool = False,
               backend: str | None = None):
    """Neighbor2Neighbor loss, fused: no sub-image of ``y`` or ``fy`` is materialised.

    ``L = lambda1 * mean((out - g2(y))^2) + gamma * mean((out - g2(y) - (g1(fy) - g2(fy)))^2)`` where
    g1, g2 are the sub-samplers of ``seed`` (the same draw as ``neighbor_subsample(y, seed)``).
    The official code's ``Lambda1 * loss1 + Lambda2 * Lambda * loss2'`` is ``lambda1=Lambda1``,
    ``gamma=Lambda2 * Lambda`` (``fastdenoise.compat.neighbor2neighbor.loss_terms`` does this).

    Args:
        out: (B, C, H // 2, W // 2) network output on ``g1(y)``; the only input that gets a gradient.
        y: (B, C, H, W) noisy image.
        fy: (B, C, H, W) network output on the full ``y``, treated as a constant (stop-gradient).
            Mixed floating dtypes (a bfloat16 ``out`` or ``fy`` from autocast with a float32 ``y``)
            are promoted to a common dtype first; the gradient comes back in ``out``'s dtype.
        seed: the seed used to sample ``g1(y)`` (int or one-element integer tensor; required).
        gamma: weight >= 0 of the regulariser (Nb2Nb ramps it to 2 for sRGB, 1 for raw); a Python
            number or a one-element tensor (a constant: no gradient reaches it).
        lambda1: weight >= 0 of the reconstruction term (1; 0 keeps only the regulariser).
        return_terms: also return the two means, detached, for logging.
        backend: as for :func:`neighbor_subsample`.

    Returns:
        Scalar loss (float32 for half inputs, float64 for float64); with ``return_terms``,
        ``(loss, mean_d2, mean_r2)`` where ``loss = lambda1 * mean_d2 + gamma * mean_r2``.
    """
    if seed is None:
        raise TypeError("nb2nb_loss needs the seed its sampler used: draw one per iteration with "
                        "fastdenoise.functional.draw_seed() and pass it to neighbor_subsample and nb2nb_loss")
    seed = resolve_seed(seed)
    gamma, lambda1 = number("gamma", gamma), number("lambda1", lambda1)
    if not skip_checks():
        check_tensor("y", y, min_hw=2)
        check_partner("fy", fy, "y", y)
        b, c, h, w = y.shape
        check_partner("out", out, "y", y, shape=(b, c, h // 2, w // 2))
        gamma = check_float("gamma", gamma, lo=0.0)
        lambda1 = check_float("lambda1", lambda1, lo=0.0)
    out, y, fy = promote(out, y, fy)
    be = resolve_backend(backend, out.device)
    if be == "torch":
        t1, t2 = nb2nb_terms_ref(out, y, fy, seed)
        loss = lambda1 * t1 + gamma * t2
        terms = (t1.detach(), t2.detach())
    else:
        loss, t = Nb2NbLossFunction.apply(out, y.detach(), fy.detach(), seed, float(lambda1), float(gamma), be)
        terms = t.unbind(0) if return_terms else ()
    return (loss, *terms) if return_terms else loss
