"""Plain-torch reference of Blind2Grad's dual mask and loss: the oracle.

Dual mask (``dual_mask_ref``), one mask per image shared across channels, shape (B, 1, H, W):

* detail set D = {pixel: max over channels |y - x_m| >= eps_g}, the difference taken in
  ``opmath_dtype(dtype)`` (half inputs are compared in float32) against ``eps_g`` rounded to that
  dtype. Detail pixels are never masked; all other pixels are "flat".
* K = floor(rate * H * W + 0.5) pixels per image are masked among the flat ones (all flat pixels when
  fewer than K are flat), chosen uniformly without replacement: each pixel gets the Philox word
  ``key = philox(seed, b * H * W + i * W + j, stream=0)`` and the flat pixels with the K smallest
  (key, i * W + j) pairs (ties of the 32-bit key broken by the index) are masked. Equivalently, with the
  composite ``c = key * H * W + (i * W + j)`` (detail pixels get the sentinel ``2**32 * H * W``), the
  image's threshold T is the K-th smallest c (T = -1 for K = 0) and ``mask = (c <= T) & (c < sentinel)``.

Loss (``blind2grad_loss_ref``), a = out_masked, f = out_full, m = mask (B, 1, H, W) broadcast over C:

* d_c = m * (a - y): the reconstruction residual on the masked pixels (a pixel field);
* d_g = (D_x f - D_x a, D_y f - D_y a) with forward differences D_x x = x[..., 1:] - x[..., :-1]
  (B, C, H, W-1) and D_y x = x[..., 1:, :] - x[..., :-1, :] (B, C, H-1, W) (edge fields).
* d_c lives on pixels and d_g on edges, so eq. 3.9's ``||d_c + omega d_g||^2`` is read in the direct
  sum of the two spaces, where they are orthogonal (no cross terms), each norm a mean over its support:

      L = (1 + gamma) * sum(d_c^2) / n_m + omega^2 * (sum(w_x dgx^2) + sum(w_y dgy^2)) / n_d

  with n_m = C * sum(m) (masked elements) and, for ``grad_on="all"``, w = 1 and
  n_d = C * (H (W-1) + (H-1) W) * B; for ``grad_on="masked"``, w = 1 on the differences with at least
  one masked end point (m != 0), else 0, and n_d = C * sum(w). A zero count makes its term 0.
* ``detach_full=True`` treats f as a constant (stop-gradient). y and m never get a gradient.
"""
from __future__ import annotations

import math

import torch

from fastdenoise import _rng
from fastdenoise._runtime import opmath_dtype


def mask_count(rate: float, h: int, w: int) -> int:
    """Number of pixels to mask per image: floor(rate * H * W + 0.5)."""
    return int(math.floor(float(rate) * h * w + 0.5))


def detail_ref(y: torch.Tensor, x_m: torch.Tensor, eps_g: float) -> torch.Tensor:
    """(B, H, W) bool: max over channels |y - x_m| >= eps_g, computed in opmath_dtype(dtype)."""
    dt = opmath_dtype(y.dtype)
    diff = (y.detach().to(dt) - x_m.detach().to(dt)).abs().amax(1)
    return diff >= torch.tensor(eps_g, dtype=dt, device=y.device)


def mask_keys_ref(y: torch.Tensor, x_m: torch.Tensor, seed: int, eps_g: float) -> torch.Tensor:
    """(B, H * W) int64 composite keys c = key * H * W + index, detail pixels at 2**32 * H * W."""
    b, _, h, w = y.shape
    hw = h * w
    words = _rng.philox(seed, torch.arange(b * hw, dtype=torch.int64, device=y.device)).view(b, hw)
    comp = words * hw + torch.arange(hw, dtype=torch.int64, device=y.device)
    flat = ~detail_ref(y, x_m, eps_g).view(b, hw)
    return torch.where(flat, comp, torch.full_like(comp, (2**32) * hw))


def dual_mask_ref(y: torch.Tensor, x_m: torch.Tensor, seed: int, rate: float = 0.25,
                  eps_g: float = 40 / 255) -> torch.Tensor:
    """Blind2Grad dual mask (B, 1, H, W) in y's dtype, 1 = masked (see the module docstring)."""
    b, _, h, w = y.shape
    hw = h * w
    comp = mask_keys_ref(y, x_m, seed, eps_g)
    k = mask_count(rate, h, w)
    if k == 0:
        sel = torch.zeros_like(comp, dtype=torch.bool)
    else:
        thr = torch.sort(comp, dim=1).values[:, k - 1 : k]  # K-th smallest composite key per image
        sel = (comp <= thr) & (comp < (2**32) * hw)
    return sel.view(b, 1, h, w).to(y.dtype)


def _edge_weights(m: torch.Tensor, grad_on: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if grad_on == "all":
        return None, None
    nz = m != 0
    return (nz[..., 1:] | nz[..., :-1]).to(m.dtype), (nz[..., 1:, :] | nz[..., :-1, :]).to(m.dtype)


def blind2grad_loss_ref(out_masked: torch.Tensor, out_full: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                        omega: float = 0.8, gamma: float = 0.5, grad_on: str = "all",
                        detach_full: bool = True) -> torch.Tensor:
    """The Blind2Grad loss of the module docstring; differentiable in out_masked (and out_full when
    ``detach_full=False``). Returns a scalar in opmath_dtype(dtype)."""
    dt = opmath_dtype(out_masked.dtype)
    a = out_masked.to(dt)
    f = (out_full.detach() if detach_full else out_full).to(dt)
    yy = y.detach().to(dt)
    m = mask.detach().to(dt)
    c = a.shape[1]
    d_c = m * (a - yy)
    n_m = (m.sum() * c).clamp_min(1)
    gx = (f[..., 1:] - f[..., :-1]) - (a[..., 1:] - a[..., :-1])
    gy = (f[..., 1:, :] - f[..., :-1, :]) - (a[..., 1:, :] - a[..., :-1, :])
    wx, wy = _edge_weights(m, grad_on)
    if wx is None:
        sg = (gx * gx).sum() + (gy * gy).sum()
        n_d = max(gx.numel() + gy.numel(), 1)
    else:
        sg = (wx * gx * gx).sum() + (wy * gy * gy).sum()
        n_d = ((wx.sum() + wy.sum()) * c).clamp_min(1)
    return (1 + gamma) * (d_c * d_c).sum() / n_m + omega**2 * sg / n_d
