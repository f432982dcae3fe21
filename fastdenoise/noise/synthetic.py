"""Gaussian, Poisson, spatially correlated and demosaicked Poisson-Gaussian noise
(see :mod:`fastdenoise.noise`)."""
from __future__ import annotations

import math

import torch

from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_seed
from fastdenoise._runtime import opmath_dtype
from fastdenoise.noise._common import _as_tensor
from fastdenoise.noise._common import _bshape
from fastdenoise.noise._common import _check_level
from fastdenoise.noise._common import _finish
from fastdenoise.noise._common import _per_image


def add_gaussian(x, sigma, seed: int):
    """Add white Gaussian noise with std ``sigma / 255`` (not clipped).

    Args:
        x: clean image on [0, 1]: tensor or array, any layout; a 4-D input is a batch.
        sigma: std on the 0-255 scale, or ``(lo, hi)``: one std per image, uniform in [lo, hi].
        seed: integer seed of the CPU ``torch.Generator``.

    Returns:
        The noisy image, same type, dtype, device and shape as ``x``.
    """
    t, is_np = _as_tensor("x", x)
    sigma = _check_level("sigma", sigma, lo_open=False)
    g = torch.Generator().manual_seed(check_seed(seed))
    n_img, bshape = _bshape(t)
    std = _per_image(sigma, n_img, g) / 255.0
    work = opmath_dtype(t.dtype)
    z = torch.randn(t.shape, generator=g, dtype=work)
    noise = (z * std.to(work).view(bshape)).to(device=t.device)
    y = (t.to(work) + noise).to(t.dtype)
    return _finish(y, is_np)


def add_poisson(x, lam, seed: int):
    """Poisson noise ``Poisson(lam * x) / lam`` (values are not clipped).

    Args:
        x: clean image on [0, 1] (must be >= 0): tensor or array; a 4-D input is a batch.
        lam: photon count scale (> 0), or ``(lo, hi)``: one value per image, uniform in [lo, hi].
        seed: integer seed of the CPU ``torch.Generator``.

    Returns:
        The noisy image, same type, dtype, device and shape as ``x``.
    """
    t, is_np = _as_tensor("x", x)
    lam = _check_level("lam", lam, lo_open=True)
    g = torch.Generator().manual_seed(check_seed(seed))
    if bool((t < 0).any()) or bool(torch.isnan(t).any()):
        raise ValueError("x must be >= 0 (and not NaN) for Poisson noise")
    n_img, bshape = _bshape(t)
    lam_t = _per_image(lam, n_img, g).view(bshape)
    rate = t.detach().to("cpu", torch.float64) * lam_t
    counts = torch.poisson(rate, generator=g)
    y = (counts / lam_t).to(device=t.device, dtype=t.dtype)
    return _finish(y, is_np)


def _binomial(k: int) -> torch.Tensor:
    """The k x k binomial kernel (outer product of a row of binomial coefficients), float64."""
    row = torch.tensor([float(math.comb(k - 1, i)) for i in range(k)], dtype=torch.float64)
    return row[:, None] * row[None, :]


def _planes(t: torch.Tensor, is_np: bool):
    """float64 CPU (B*C, 1, H, W) planes of an image (arrays channels-last: (H, W), (H, W, C), (B, H, W, C);
    tensors channels-first: (H, W), (C, H, W), (B, C, H, W)) and the function that restores the layout."""
    d = t.dim()
    if d == 2:
        b = t[None, None]
    elif d == 3:
        b = t.permute(2, 0, 1)[None] if is_np else t[None]
    elif d == 4:
        b = t.permute(0, 3, 1, 2) if is_np else t
    else:
        raise ValueError(f"x must be a 2-D, 3-D or 4-D image, got shape {tuple(t.shape)}")
    shape = b.shape
    planes = b.detach().to("cpu", torch.float64).reshape(-1, 1, shape[2], shape[3])

    def restore(p: torch.Tensor) -> torch.Tensor:
        q = p.reshape(shape)
        if d == 2:
            return q[0, 0]
        if d == 3:
            return q[0].permute(1, 2, 0) if is_np else q[0]
        return q.permute(0, 2, 3, 1) if is_np else q

    return planes, restore


def add_correlated(x, sigma, seed: int, kernel: int = 3):
    """Spatially correlated Gaussian noise: white N(0, 1) filtered per channel by the ``kernel`` x ``kernel``
    binomial kernel (normalised to unit L2 norm, so every pixel's std stays ``sigma / 255``; neighbours
    within the kernel are correlated), added without clipping.

    Args:
        x: clean image on [0, 1]: (H, W) or (H, W, C) array, (C, H, W) tensor, or a 4-D batch
            ((B, H, W, C) array, (B, C, H, W) tensor).
        sigma: per-pixel std on the 0-255 scale, or ``(lo, hi)``: one per image.
        seed: integer seed of the CPU ``torch.Generator``.
        kernel: odd kernel side >= 1 (1: white noise).
    """
    t, is_np = _as_tensor("x", x)
    sigma = _check_level("sigma", sigma, lo_open=False)
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd int >= 1, got {kernel!r}")
    g = torch.Generator().manual_seed(check_seed(seed))
    n_img, bshape = _bshape(t)
    std = _per_image(sigma, n_img, g) / 255.0
    planes, restore = _planes(t, is_np)
    k = _binomial(kernel)
    k = (k / k.pow(2).sum().sqrt())[None, None]
    p = kernel // 2
    z = torch.randn((planes.shape[0], 1, planes.shape[2] + 2 * p, planes.shape[3] + 2 * p), generator=g,
                    dtype=torch.float64)
    field = torch.nn.functional.conv2d(z, k)                       # (B*C, 1, H, W), unit std per pixel
    per = std.repeat_interleave(planes.shape[0] // n_img).view(-1, 1, 1, 1)
    y = restore(planes + per * field).to(device=t.device, dtype=t.dtype)
    return _finish(y, is_np)


def add_demosaic(x, lam, seed: int, read: float = 2.0):
    """A raw sensor image through demosaicing: the clean RGB image sampled on an RGGB Bayer mosaic,
    ``Poisson(lam * x) / lam`` plus Gaussian read noise of std ``read / 255`` on the mosaic, then bilinear
    demosaicing (each missing colour the mean of its nearest same-colour neighbours). The noise of the
    result is signal-dependent and correlated across neighbouring pixels and channels.

    Args:
        x: clean RGB image on [0, 1] (3 channels; layouts as :func:`add_correlated`).
        lam: photon count scale (> 0), or ``(lo, hi)``: one per image.
        seed: integer seed of the CPU ``torch.Generator``.
        read: read-noise std on the 0-255 scale (>= 0).
    """
    t, is_np = _as_tensor("x", x)
    lam = _check_level("lam", lam, lo_open=True)
    read = check_float("read", read, lo=0.0)
    g = torch.Generator().manual_seed(check_seed(seed))
    n_img, _ = _bshape(t)
    planes, restore = _planes(t, is_np)
    b = planes.view(n_img, -1, *planes.shape[2:])
    if b.shape[1] != 3:
        raise ValueError(f"x must be an RGB image (3 channels) for demosaic noise, got {b.shape[1]} channels")
    if bool((b < 0).any()) or bool(torch.isnan(b).any()):
        raise ValueError("x must be >= 0 (and not NaN) for demosaic noise")
    lam_t = _per_image(lam, n_img, g).view(n_img, 1, 1, 1)
    h, w = b.shape[-2:]
    cfa = torch.zeros((1, 3, h, w), dtype=torch.float64)           # RGGB: R at (0,0), G at (0,1)/(1,0), B at (1,1)
    cfa[0, 0, 0::2, 0::2] = 1
    cfa[0, 1, 0::2, 1::2] = 1
    cfa[0, 1, 1::2, 0::2] = 1
    cfa[0, 2, 1::2, 1::2] = 1
    mosaic = (b * cfa).sum(1, keepdim=True)                        # (B, 1, H, W)
    counts = torch.poisson(mosaic * lam_t, generator=g)
    raw = counts / lam_t + read / 255.0 * torch.randn(mosaic.shape, generator=g, dtype=torch.float64)
    kern = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=torch.float64)
    kern = kern[None, None].repeat(3, 1, 1, 1)
    pad = lambda v: torch.nn.functional.pad(v, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    num = torch.nn.functional.conv2d(pad(raw * cfa), kern, groups=3)
    den = torch.nn.functional.conv2d(pad(cfa.expand(n_img, -1, -1, -1)), kern, groups=3)
    y = restore((num / den).reshape(planes.shape)).to(device=t.device, dtype=t.dtype)
    return _finish(y, is_np)
