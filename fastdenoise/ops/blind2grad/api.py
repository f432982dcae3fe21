"""Public Blind2Grad ops: ``dual_mask`` and ``blind2grad_loss`` (autograd wrappers over the fused ops)."""
from __future__ import annotations

import torch

from fastdenoise._runtime import FusedLossFunction
from fastdenoise._rng import resolve_seed
from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_like
from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import save_loss_grads
from fastdenoise._runtime import skip_checks
from fastdenoise.ops._args import check_partner
from fastdenoise.ops._args import number
from fastdenoise.ops._args import promote
from fastdenoise.ops.blind2grad import ops
from fastdenoise.ops.blind2grad.reference import blind2grad_loss_ref
from fastdenoise.ops.blind2grad.reference import dual_mask_ref
from fastdenoise.ops.blind2grad.reference import mask_count

GRAD_ON = ("all", "masked")


class Blind2GradLossFunction(FusedLossFunction):
    @staticmethod
    def forward(ctx, a, f, y, mask, omega, gamma, masked_only, backend):
        ga, gf = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, grad_a, grad_f = ops.blind2grad_loss_fwd(a, f, y, mask, omega, gamma, masked_only, ga, gf, backend)
        save_loss_grads(ctx, grad_a, grad_f)
        return loss


def dual_mask(y: torch.Tensor, x_m: torch.Tensor, seed: int | torch.Tensor | None = None, rate: float = 0.25,
              eps_g: float = 40 / 255, *, generator: torch.Generator | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Blind2Grad's dual mask: exact-count random mask on the flat pixels, detail pixels kept visible.

    Detail pixels D = {max over channels |y - x_m| >= eps_g} (difference in float32, or float64 for
    float64 inputs) are never masked. Among the other ("flat") pixels, exactly
    K = floor(rate * H * W + 0.5) pixels per image are masked, uniformly without replacement (all flat
    pixels when fewer than K are flat): the flat pixels with the K smallest Philox keys
    ``philox(seed, b*H*W + i*W + j)``, ties broken by the pixel index. The mask is shared across
    channels and bit-identical on every backend (see reference.py for the exact rule).

    Args:
        y: (B, C, H, W) noisy image (float16/bfloat16/float32/float64, any strides).
        x_m: (B, C, H, W) current estimate, same dtype and device as ``y``.
        seed: integer in [0, 2**63) or a one-element integer tensor; None (default) draws a fresh seed
            from ``generator`` or torch's default generator (the same ``torch.manual_seed`` gives the
            same draws).
        rate: target masked fraction in [0, 1] (paper: 0.25).
        eps_g: detail threshold on the image's scale (paper: 40 on 0..255, so 40/255 for [0, 1] images).
        generator: a ``torch.Generator`` to draw the seed from when ``seed`` is None.
        backend: ``"torch"``, ``"cpp"``, ``"triton"`` or None (auto / ``FASTDENOISE_BACKEND``).

    Returns:
        (B, 1, H, W) mask in y's dtype, 1 = masked. Not differentiable.

    Example:
        >>> m = dual_mask(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), seed=0)
    """
    seed = resolve_seed(seed, generator)
    rate, eps_g = number("rate", rate), number("eps_g", eps_g)
    if not skip_checks():
        check_tensor("y", y)
        check_like("x_m", x_m, "y", y)
        rate = check_float("rate", rate, lo=0.0, hi=1.0)
        eps_g = check_float("eps_g", eps_g, lo=0.0)
    be = resolve_backend(backend, y.device)
    with torch.no_grad():
        if be == "torch":
            return dual_mask_ref(y, x_m, seed, rate, eps_g)
        k = mask_count(rate, y.shape[-2], y.shape[-1])
        return ops.dual_mask_fwd(y.detach(), x_m.detach(), seed, k, float(eps_g), be)


def blind2grad_loss(out_masked: torch.Tensor, out_full: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                    omega: float = 0.8, gamma: float = 0.5, grad_on: str = "all", detach_full: bool = True, *,
                    backend: str | None = None) -> torch.Tensor:
    """Blind2Grad loss (the paper's eq. 3.9 read as an orthogonal sum of a pixel and an edge term), fused.

    With a = out_masked, f = out_full, m = mask broadcast over channels:
    ``L = (1 + gamma) * sum((m (a - y))^2) / n_m + omega^2 * sum(w * (D f - D a)^2) / n_d`` where D are
    the forward differences along W and H, n_m = C * sum(m), and w = 1 / n_d = number of differences
    (``grad_on="all"``) or w = 1 only on differences with a masked end point (``grad_on="masked"``).
    Value and gradients are computed in one fused pass; backward only scales them.

    Args:
        out_masked: (B, C, H, W) network output on the masked input; gets a gradient.
        out_full: (B, C, H, W) network output on the full image (the reference f(y)).
        y: (B, C, H, W) noisy image (constant).
        mask: (B, 1, H, W) mask of :func:`dual_mask` (1 = masked; constant). Mixed floating dtypes
            (autocast) are promoted to a common one.
        omega: weight of the gradient term (paper: 0.8 synthetic, 0.5 real).
        gamma: extra weight of the reconstruction term (paper: 0.5).
        grad_on: ``"all"`` (default) or ``"masked"`` difference locations.
        detach_full: True (default) treats out_full as a constant; False lets gradient flow into it.
        backend: as for :func:`dual_mask`.

    Returns:
        Scalar loss (float32 for half inputs, else the input dtype).
    """
    omega, gamma = number("omega", omega), number("gamma", gamma)
    if not skip_checks():
        check_tensor("out_masked", out_masked)
        check_partner("out_full", out_full, "out_masked", out_masked)
        check_partner("y", y, "out_masked", out_masked)
        b, _, h, w = out_masked.shape
        check_partner("mask", mask, "out_masked", out_masked, shape=(b, 1, h, w))
        omega = check_float("omega", omega, lo=0.0)
        gamma = check_float("gamma", gamma, lo=0.0)
        if grad_on not in GRAD_ON:
            raise ValueError(f"grad_on must be one of {GRAD_ON}, got {grad_on!r}")
    out_masked, out_full, y, mask = promote(out_masked, out_full, y, mask)
    be = resolve_backend(backend, out_masked.device)
    if be == "torch":
        return blind2grad_loss_ref(out_masked, out_full, y, mask, omega, gamma, grad_on, detach_full)
    f = out_full.detach() if detach_full else out_full
    return Blind2GradLossFunction.apply(out_masked, f, y.detach(), mask.detach(), float(omega), float(gamma),
                                        grad_on == "masked", be)
