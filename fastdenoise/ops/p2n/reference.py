"""Plain-torch reference of P2N's renoised data construction and loss: the oracle for every backend.

Counter layout of the scale draws (``_rng.normal_exact(seed, arange(2 * M), stream=RENOISE_STREAM)``,
float64): the first M normals give the positive-branch scales ``a``, the next M the negative-branch
scales ``b``, with ``M = 1`` ("batch"), ``B`` ("image") or ``B*C*H*W`` ("pixel", row-major element
order). Scales are ``1 + sigma * normal`` computed in float64 and rounded once to ``opmath_dtype``
(float64 for float64 inputs, else float32). The normal transform uses correctly rounded float64
operations only, so the Triton kernel draws the very same scales on the device (no host work), and the
renoised images are bit-identical on every backend.
"""
from __future__ import annotations

import torch

from fastdenoise import _rng
from fastdenoise._runtime import opmath_dtype

RENOISE_STREAM = 2
GRANULARITIES = ("image", "batch", "pixel")


def draw_scales(seed: int, shape, sigma: float, granularity: str, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Scales (a, b) ~ N(1, sigma), not clamped: (2, B) for "image", (2, 1) for "batch", (2, B, C, H, W)
    for "pixel". ``shape`` is the image shape (B, C, H, W); ``dtype`` the input dtype."""
    b = shape[0]
    per = {"image": (b,), "batch": (1,), "pixel": tuple(shape)}[granularity]
    m = 1
    for s in per:
        m *= int(s)
    return scales_flat(seed, m, sigma, dtype).view(2, *per).to(device)


def scales_flat(seed: int, m: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    """The 2 * m scales (a then b) in ``opmath_dtype(dtype)`` on the CPU."""
    n = _rng.normal_exact(seed, torch.arange(2 * int(m), dtype=torch.int64), stream=RENOISE_STREAM)
    return (1.0 + float(sigma) * n).to(opmath_dtype(dtype))


def scales_count(shape, granularity: str) -> int:
    """M, the number of (a, b) pairs: 1 ("batch"), B ("image") or B*C*H*W ("pixel")."""
    b, c, h, w = shape
    return {"image": b, "batch": 1, "pixel": b * c * h * w}[granularity]


def group_size(shape, granularity: str) -> int:
    """Number of consecutive (row-major) elements sharing one scale."""
    b, c, h, w = shape
    return {"image": c * h * w, "batch": b * c * h * w, "pixel": 1}[granularity]


def rdc_renoise_ref(y: torch.Tensor, x_hat: torch.Tensor, scales: torch.Tensor, granularity: str,
                    clamp: bool = False) -> torch.Tensor:
    """z = cat([x_hat + a (y - x_hat), x_hat - b (y - x_hat)]) in the compute dtype, cast to y's dtype.

    Differentiable in y and x_hat (the caller detaches x_hat for the stop-gradient default)."""
    dt = opmath_dtype(y.dtype)
    yy, xh = y.to(dt), x_hat.to(dt)
    b = y.shape[0]
    if granularity == "pixel":
        a, bb = scales[0], scales[1]
    elif granularity == "image":
        a, bb = scales[0].view(b, 1, 1, 1), scales[1].view(b, 1, 1, 1)
    else:
        a, bb = scales[0].view(1, 1, 1, 1), scales[1].view(1, 1, 1, 1)
    n = yy - xh
    z = torch.cat([xh + a * n, xh - bb * n], 0)
    if clamp:
        z = z.clamp(0.0, 1.0)
    return z.to(y.dtype)


def p2n_loss_ref(out_pos: torch.Tensor, out_neg: torch.Tensor, gamma: float, eps: float = 1e-8) -> torch.Tensor:
    """mean((|out_pos - out_neg| + eps)^gamma) in float32 (half inputs) or the input dtype."""
    dt = opmath_dtype(out_pos.dtype)
    d = out_pos.to(dt) - out_neg.to(dt)
    return ((d.abs() + eps) ** gamma).mean()
