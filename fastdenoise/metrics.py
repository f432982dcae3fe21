"""PSNR and SSIM under the conventions the papers use.

The numbers published by different repositories are computed differently (0.1-1 dB, 0.01-0.1 SSIM
apart), so every function takes a ``convention``:

``"p2n"`` (default, Nb2Nb / P2N / DnCNN-KAIR style)
    The prediction is clamped to [0, 1] and quantised with ``floor(v * 255 + 0.5)`` (round half up) to
    8 bits; the target is quantised the same way (a ``uint8`` target is used as is). PSNR has peak 255.
    SSIM is the MATLAB one: 11x11 Gaussian window with sigma 1.5, "valid" filtering (the 5-pixel border
    is cropped), C1 = (0.01*255)^2, C2 = (0.03*255)^2, computed per channel and averaged.
``"skimage"`` (APR-RD)
    Like ``"p2n"`` but the 8-bit quantisation is ``np.round`` (round half to even), as in
    ``np.uint8((np.clip(x, 0, 1) * 255).round())``; then ``skimage.metrics.peak_signal_noise_ratio``
    and ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255)``. With those settings skimage filters the whole image (reflect padding) and then
    crops ``(11 - 1) // 2 = 5`` pixels from every side of the SSIM map before averaging, so the pixels
    it averages never see the padding: its value equals the MATLAB "valid" SSIM above (tested to
    1e-9).
``"float"`` (no clipping, no quantisation)
    PSNR with peak ``data_range``; SSIM with the same Gaussian window and C1 = (0.01*data_range)^2,
    C2 = (0.03*data_range)^2 on the raw float values.
``"y"`` (AT-BSN ``valid.py``)
    PSNR as ``"float"`` (unclipped, unquantised, ``data_range``) on all channels. SSIM BasicSR style
    (``test_y_channel=True``): both images are converted to the BT.601 luma
    ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in [0, 1], Y on the 0-255 scale, no
    clipping; channels are taken as RGB) and the MATLAB SSIM with the 255 constants is computed on Y.
    Single-channel inputs are used as they are (times 255).
``"minmax"`` (Noise2Same ImageNet/Hanzi notebooks; **not a fair metric, never the default**)
    Each predicted image is min-max normalised to [0, 1] (over all its channels and pixels), both
    images are put on the 255 scale without quantisation, and PSNR (peak 255) / MATLAB SSIM are
    computed. This inflates the numbers; use it only to compare with those tables.

Inputs: torch tensors are channel-first, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; NumPy arrays
use the image layout of :func:`fastdenoise.io.read_image`: ``(H, W)``, ``(H, W, C)`` or
``(B, H, W, C)``. Float values are on the [0, 1] scale; ``uint8`` inputs are already-quantised 8-bit
images (0-255). The result is a float64 tensor with one value per image (shape ``(B,)``, ``B = 1`` for
an unbatched input), on the input's device; :func:`mean` averages it to a Python float.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastdenoise._runtime import check_float
from fastdenoise.io import as_bchw

CONVENTIONS = ("p2n", "skimage", "float", "y", "minmax")
SSIM_WIN = 11
SSIM_SIGMA = 1.5

__all__ = ["CONVENTIONS", "mean", "psnr", "ssim", "ssim_map", "quantize_uint8"]


# ----------------------------------------------------------------------------------------------
# input handling


def _as_bchw(name: str, x) -> tuple[torch.Tensor, bool]:
    """(B, C, H, W) tensor view of ``x`` and whether it was 8-bit (values 0..255)."""
    t, _ = as_bchw(name, x)
    if t.dtype == torch.uint8:
        return t, True
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating point or uint8 image, got dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    return t, False


def quantize_uint8(x: torch.Tensor, *, rounding: str = "half_up") -> torch.Tensor:
    """Clamp a [0, 1] image and quantise it to the integers 0..255 (returned as float64).

    ``rounding="half_up"`` is ``floor(v * 255 + 0.5)`` (Nb2Nb, P2N); ``"half_even"`` is ``round(v * 255)``
    (NumPy/torch rounding, APR-RD). The product is formed in the input's precision (at least float32),
    as the reference scripts do.
    """
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    v = work.clamp(0.0, 1.0) * 255.0
    if rounding == "half_up":
        v = torch.floor(v + 0.5)
    elif rounding == "half_even":
        v = torch.round(v)
    else:
        raise ValueError(f"rounding must be 'half_up' or 'half_even', got {rounding!r}")
    return v.to(torch.float64)


def _to_255(t: torch.Tensor, is_u8: bool, rounding: str) -> torch.Tensor:
    if is_u8:
        return t.to(torch.float64)
    return quantize_uint8(t, rounding=rounding)


def _luma(t255: torch.Tensor) -> torch.Tensor:
    """BT.601 Y (0-255 scale) of an RGB image given on the 0-255 scale; other channel counts unchanged."""
    if t255.shape[1] != 3:
        return t255
    r, g, b = t255[:, 0:1] / 255.0, t255[:, 1:2] / 255.0, t255[:, 2:3] / 255.0
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _prepare(pred, target, convention: str, data_range: float):
    """(pred, target, peak) as float64 (B, C, H, W) on the scale the convention compares on."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    p, p8 = _as_bchw("pred", pred)
    t, t8 = _as_bchw("target", target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)} "
                         f"(as (B, C, H, W))")
    if p.device != t.device:
        raise ValueError(f"pred and target must be on the same device, got {p.device} and {t.device}")
    if convention in ("p2n", "skimage"):
        rounding = "half_up" if convention == "p2n" else "half_even"
        return _to_255(p, p8, rounding), _to_255(t, t8, rounding), 255.0
    if convention in ("float", "y"):
        dr = check_float("data_range", data_range, lo=0.0, lo_open=True)
        p = p.to(torch.float64) * (dr / 255.0) if p8 else p.to(torch.float64)
        t = t.to(torch.float64) * (dr / 255.0) if t8 else t.to(torch.float64)
        return p, t, dr
    # minmax: per-image min-max normalisation of the prediction, both on the 255 scale, not quantised
    p = p.to(torch.float64)
    flat = p.reshape(p.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    p = (p - lo) / (hi - lo).clamp_min(1e-12) * 255.0
    t = t.to(torch.float64) if t8 else t.to(torch.float64) * 255.0
    return p, t, 255.0


# ----------------------------------------------------------------------------------------------
# metrics


def psnr(pred, target, *, convention: str = "p2n", data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        pred: the prediction, (B, C, H, W) / (C, H, W) / (H, W) tensor or (H, W[, C]) / (B, H, W, C)
            NumPy array; float on [0, 1] or uint8.
        target: the reference image, same shape and layout as ``pred``.
        convention: one of :data:`CONVENTIONS` (see the module docstring); default ``"p2n"``.
        data_range: the peak of float images for ``"float"`` and ``"y"`` (ignored otherwise: 255).

    Returns:
        float64 tensor of shape (B,); ``inf`` where the images are identical after preprocessing.
    """
    p, t, peak = _prepare(pred, target, convention, data_range)
    mse = (p - t).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak * peak / mse)


def _gaussian_1d(device, win: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    r = (win - 1) // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(ax * ax) / (2.0 * sigma * sigma))
    return g / g.sum()


def ssim_map(p: torch.Tensor, t: torch.Tensor, peak: float) -> torch.Tensor:
    """MATLAB-style SSIM map of two float64 (B, C, H, W) images: 11x11 Gaussian (sigma 1.5) window,
    'valid' filtering, so the map is (B, C, H - 10, W - 10). The window is applied as two separable
    1-D convolutions on the five moment images of all B*C planes at once."""
    b, c, h, w = p.shape
    if h < SSIM_WIN or w < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels, got {h}x{w}")
    g = _gaussian_1d(p.device)
    planes = torch.stack([p, t, p * p, t * t, p * t], dim=0).reshape(5 * b * c, 1, h, w)
    planes = F.conv2d(planes, g.view(1, 1, -1, 1))
    planes = F.conv2d(planes, g.view(1, 1, 1, -1))
    mu_p, mu_t, e_pp, e_tt, e_pt = planes.reshape(5, b, c, h - SSIM_WIN + 1, w - SSIM_WIN + 1).unbind(0)
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    mu_pp, mu_tt, mu_pt = mu_p * mu_p, mu_t * mu_t, mu_p * mu_t
    var_p, var_t, cov = e_pp - mu_pp, e_tt - mu_tt, e_pt - mu_pt
    return ((2 * mu_pt + c1) * (2 * cov + c2)) / ((mu_pp + mu_tt + c1) * (var_p + var_t + c2))


def ssim(pred, target, *, convention: str = "p2n", data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (MATLAB-style Gaussian SSIM, per channel then averaged).

    Args:
        pred: the prediction (same layouts as :func:`psnr`); images must be at least 11x11.
        target: the reference image, same shape as ``pred``.
        convention: one of :data:`CONVENTIONS` (see the module docstring); default ``"p2n"``.
        data_range: the peak for ``"float"`` (ignored otherwise).

    Returns:
        float64 tensor of shape (B,).
    """
    p, t, peak = _prepare(pred, target, convention, data_range)
    if convention == "y":
        # BasicSR: Y of img*255 (unclipped floats), constants for the 255 scale
        p, t, peak = _luma(p * (255.0 / peak)), _luma(t * (255.0 / peak)), 255.0
    return ssim_map(p, t, peak).flatten(1).mean(dim=1)


def mean(values) -> float:
    """Average of per-image metric values (a tensor, array or sequence) as a Python float."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("values must not be empty")
    return float(v.mean())
