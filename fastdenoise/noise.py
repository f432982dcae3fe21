"""Synthetic noise in the Nb2Nb / Laine19 convention (METHODS.md §1.1).

* Gaussian: ``y = x + sigma / 255 * N(0, 1)``; ``sigma`` is quoted on the 0-255 scale. **No clipping.**
  A range ``(lo, hi)`` draws one std per image, uniform in [lo, hi] / 255 (e.g. gauss5_50).
* Poisson: ``y = Poisson(lam * x) / lam`` with ``x`` in [0, 1]; ``lam`` a number or a range (one
  ``lam`` per image, uniform in [lo, hi]).
* Spatially correlated (the case APR-RD and P2N were made for; Nb2Nb and Noise2Same assume independent
  pixels): ``correlated:SIGMA[:K]`` is white Gaussian noise filtered per channel by the K x K binomial
  kernel (K odd, default 3), scaled back to a per-pixel std of ``SIGMA / 255``; ``demosaic:LAM[:READ]`` is
  a raw sensor image: the clean RGB image sampled on an RGGB Bayer mosaic, Poisson-Gaussian noise on the
  mosaic (``Poisson(lam * x) / lam`` plus read noise of std ``READ / 255``, default 2), then bilinear
  demosaicing, so neighbouring pixels and channels share noise.
* Camera noise (:func:`add_camera`, spec ``camera[:...]``), made the "unprocessing" way of Brooks et al.,
  CVPR 2019: sRGB -> raw by inverting a camera pipeline (smoothstep tone curve, gamma 2.2, a colour matrix
  mixed from four real cameras', white-balance and brightening gains), an RGGB mosaic, sensor noise of
  variance ``shot * raw + read`` with ``log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26^2)`` (the paper's
  fit to real sensors), bilinear demosaicing and the forward pipeline back to sRGB. Every parameter is a
  field of :class:`CameraParams` (given, or drawn per image from the seed, and returned by
  ``NoiseSpec.apply(..., return_params=True)``). Denoisers are scored against the noise-free rendering
  (:meth:`NoiseSpec.target`).
* Fluorescence microscopy (:func:`add_microscopy`, spec ``microscopy[:...]``): Poisson-Gaussian noise on
  the signal, optionally blurred by a Gaussian PSF first.

Randomness: a ``torch.Generator`` on the CPU seeded with ``seed``; all values are drawn on the CPU and
moved to ``x``'s device, so a given seed gives the same noise on every device. Draw order: with a
range, first one uniform per image (the per-image parameter), then the noise field. "Image" means
the leading axis of a 4-D input ((B, C, H, W) tensor or (B, H, W, C) array); a 2-D or 3-D input is a
single image. Torch tensors and NumPy arrays are accepted and the result has the input's type, dtype
and shape.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_seed
from fastdenoise._runtime import opmath_dtype

__all__ = ["CAMERA_DEFAULT", "CameraParams", "NoiseSpec", "add_camera", "camera_raw", "add_correlated", "add_demosaic", "add_gaussian",
           "add_microscopy", "add_noise", "add_poisson", "parse_noise", "psf_blur", "split_noises"]


def _as_tensor(name: str, x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        t, is_np = torch.from_numpy(np.ascontiguousarray(x)), True
    elif isinstance(x, torch.Tensor):
        t, is_np = x, False
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating point image on [0, 1], got dtype {t.dtype}")
    if t.dim() < 2 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty image with at least 2 dims, got shape {tuple(t.shape)}")
    return t, is_np


def _check_level(name: str, v, *, lo_open: bool) -> float | tuple[float, float]:
    """A non-negative (or positive) number, or an ordered (lo, hi) pair of them."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be a number or a (lo, hi) pair, got {v!r}")
        lo = check_float(f"{name}[0]", v[0], lo=0.0, lo_open=lo_open)
        hi = check_float(f"{name}[1]", v[1], lo=0.0, lo_open=lo_open)
        if hi < lo:
            raise ValueError(f"{name} must satisfy lo <= hi, got {v!r}")
        return (lo, hi)
    return check_float(name, v, lo=0.0, lo_open=lo_open)


def _per_image(level, n_img: int, g: torch.Generator) -> torch.Tensor:
    """float64 (n_img,) parameter values: the constant, or uniform draws in [lo, hi]."""
    if isinstance(level, tuple):
        lo, hi = level
        return lo + (hi - lo) * torch.rand(n_img, generator=g, dtype=torch.float64)
    return torch.full((n_img,), float(level), dtype=torch.float64)


def _bshape(t: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    if t.dim() == 4:
        return t.shape[0], (t.shape[0], 1, 1, 1)
    return 1, (1,) * t.dim()


def _finish(y: torch.Tensor, is_np: bool):
    return y.numpy() if is_np else y


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


# ------------------------------------------------------------------------------------------------------
# Camera noise: sRGB -> raw by inverting a camera pipeline, Poisson-Gaussian sensor noise, and back
# ------------------------------------------------------------------------------------------------------

XYZ_TO_CAM = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
)
"""The four XYZ -> camera colour matrices (DNG ``ColorMatrix`` of four real cameras) listed by Brooks et al.
2019; a camera of :class:`CameraParams` is a convex combination of them (``ccm_weights``)."""

SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
"""Linear sRGB (D65) -> CIE XYZ."""

SHOT_RANGE = (1e-4, 1.2e-2)
"""Brooks et al. 2019: the shot-noise level is log-uniform in this range (raw units, signal on [0, 1])."""
READ_LINE = (2.18, 1.20, 0.26)
"""Brooks et al. 2019, fitted on real sensors: ``log(read) = 2.18 * log(shot) + 1.20 + N(0, 0.26^2)``
(natural logs; ``shot`` and ``read`` as in :class:`CameraParams`)."""
CAMERA_SHOT = 0.004
"""The default shot level of ``camera`` (read variance from the line, no jitter: 1.97e-5). Noisy PSNR against
the noise-free rendering (:meth:`NoiseSpec.target`), 256x256 centre crops, seeds 0-3: astronaut 23.86,
chelsea 22.33, coffee 24.18, camera (grey: channel mean) 30.42 dB; 23.22 dB mean against the original crops
(demosaicing included). Measured 2026-12-07, CPU."""


def read_from_shot(shot: float, z: float = 0.0) -> float:
    """The read-noise variance of the Brooks et al. line for ``shot``, ``z`` standard deviations off it."""
    a, b, s = READ_LINE
    return math.exp(a * math.log(shot) + b + s * z)


@dataclass(frozen=True)
class CameraParams:
    """Every parameter of one simulated camera (:func:`add_camera`), all explicit.

    Attributes:
        shot: shot-noise level: raw noise variance per unit of signal (raw signal on [0, 1]).
        read: read-noise variance (raw units squared); the raw noise variance is ``shot * raw + read``.
        ccm_weights: convex weights of the four :data:`XYZ_TO_CAM` matrices (stored normalised to sum 1).
        rgb_gain: digital brightening gain of the forward pipeline (raw = linear / rgb_gain before the
            white balance is undone).
        red_gain, blue_gain: white-balance gains of the red and blue channels (green 1).
    """

    shot: float = CAMERA_SHOT
    read: float = read_from_shot(CAMERA_SHOT)
    ccm_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    rgb_gain: float = 1.25
    red_gain: float = 2.15
    blue_gain: float = 1.7

    def __post_init__(self):
        for name in ("shot", "read"):
            check_float(name, getattr(self, name), lo=0.0)
        for name in ("rgb_gain", "red_gain", "blue_gain"):
            check_float(name, getattr(self, name), lo=0.0, lo_open=True)
        w = self.ccm_weights
        if (not isinstance(w, (tuple, list)) or len(w) != len(XYZ_TO_CAM)
                or any(not math.isfinite(float(v)) or float(v) < 0 for v in w) or sum(map(float, w)) <= 0):
            raise ValueError(f"ccm_weights must be {len(XYZ_TO_CAM)} non-negative numbers, not all 0, got {w!r}")
        total = sum(map(float, w))
        object.__setattr__(self, "ccm_weights", tuple(float(v) / total for v in w))

    def rgb_to_cam(self) -> torch.Tensor:
        """float64 (3, 3) linear sRGB -> camera matrix, rows normalised to sum 1 (white stays white)."""
        w = torch.tensor(self.ccm_weights, dtype=torch.float64)
        xyz2cam = (torch.tensor(XYZ_TO_CAM, dtype=torch.float64) * (w / w.sum()).view(-1, 1, 1)).sum(0)
        m = xyz2cam @ torch.tensor(SRGB_TO_XYZ, dtype=torch.float64)
        return m / m.sum(dim=1, keepdim=True)

    def as_dict(self) -> dict:
        return {"shot": self.shot, "read": self.read, "ccm_weights": list(self.ccm_weights),
                "rgb_gain": self.rgb_gain, "red_gain": self.red_gain, "blue_gain": self.blue_gain}

    @classmethod
    def draw(cls, g: torch.Generator, **fixed) -> "CameraParams":
        """Brooks et al. 2019 random camera: ``shot`` log-uniform in :data:`SHOT_RANGE`, ``read`` from
        :data:`READ_LINE` with its jitter, CCM weights uniform on [0, 1) (normalised), ``rgb_gain`` =
        1 / N(0.8, 0.1) (the normal clipped to [0.5, 1.1]), ``red_gain`` U[1.9, 2.4], ``blue_gain`` U[1.5, 1.9].
        Fields given in ``fixed`` are kept; the draws are made for every field anyway, in this order, so
        that a seed gives the same values for the others. ``read`` alone follows a fixed ``shot``."""
        u = torch.rand(9, generator=g, dtype=torch.float64).tolist()
        z = torch.randn(2, generator=g, dtype=torch.float64).tolist()
        lo, hi = math.log(SHOT_RANGE[0]), math.log(SHOT_RANGE[1])
        shot = fixed.pop("shot", math.exp(lo + (hi - lo) * u[0]))
        vals = {"shot": shot, "read": read_from_shot(shot, z[0]), "ccm_weights": tuple(u[1:5]),
                "rgb_gain": 1.0 / min(max(0.8 + 0.1 * z[1], 0.5), 1.1),
                "red_gain": 1.9 + 0.5 * u[5], "blue_gain": 1.5 + 0.4 * u[6]}
        vals.update(fixed)
        return cls(**vals)


CAMERA_DEFAULT = CameraParams()
"""The ``camera`` spec: shot :data:`CAMERA_SHOT`, read on the line, the equal mix of the four CCMs, rgb gain
1.25 (1 / 0.8), red 2.15, blue 1.7 (the centres of the Brooks et al. ranges)."""


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _inverse_smoothstep(y: torch.Tensor) -> torch.Tensor:
    y = y.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def _ccm(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``m`` (3, 3) applied to the channel axis of (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", m, x)


def _wb(p: CameraParams) -> torch.Tensor:
    """The forward (R, G, B) gains, white balance times brightening, float64 (3,)."""
    return torch.tensor([p.red_gain, 1.0, p.blue_gain], dtype=torch.float64) * p.rgb_gain


def camera_unprocess(x: torch.Tensor, p: CameraParams) -> torch.Tensor:
    """sRGB (B, 3, H, W) float64 on [0, 1] -> linear camera RGB on [0, 1] (before the mosaic): the inverse
    smoothstep tone curve, gamma 2.2 expansion, the inverse colour correction (sRGB -> camera), and the
    inverse white-balance and brightening gains; near white (channel mean above 0.9 after the CCM) the
    gains are blended toward 1 so that highlights stay saturated (Brooks et al. 2019), then clipped."""
    lin = _inverse_smoothstep(x).clamp_min(1e-8) ** 2.2
    cam = _ccm(lin, p.rgb_to_cam().to(lin.dtype))
    inv = (1.0 / _wb(p)).view(1, 3, 1, 1).to(lin.dtype)
    gray = cam.mean(dim=1, keepdim=True)
    mask = ((gray - 0.9).clamp_min(0.0) / 0.1) ** 2
    return (cam * torch.maximum(mask + (1.0 - mask) * inv, inv)).clamp(0.0, 1.0)


def camera_process(cam: torch.Tensor, p: CameraParams) -> torch.Tensor:
    """Linear camera RGB (B, 3, H, W) -> sRGB on [0, 1]: white-balance and brightening gains (clipped to
    [0, 1], as a raw converter does), colour correction (camera -> sRGB), clipped, gamma 1/2.2, smoothstep."""
    x = (cam * _wb(p).view(1, 3, 1, 1).to(cam.dtype)).clamp(0.0, 1.0)
    x = _ccm(x, torch.linalg.inv(p.rgb_to_cam()).to(cam.dtype)).clamp(0.0, 1.0)
    return _smoothstep(x.clamp_min(1e-8) ** (1.0 / 2.2))


def bayer_cfa(h: int, w: int, dtype=torch.float64) -> torch.Tensor:
    """(1, 3, H, W) RGGB colour-filter mask: R at (even, even), G at (even, odd) and (odd, even), B at
    (odd, odd)."""
    cfa = torch.zeros((1, 3, h, w), dtype=dtype)
    cfa[0, 0, 0::2, 0::2] = 1
    cfa[0, 1, 0::2, 1::2] = 1
    cfa[0, 1, 1::2, 0::2] = 1
    cfa[0, 2, 1::2, 1::2] = 1
    return cfa


def bilinear_demosaic(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicing of an RGGB mosaic (B, 1, H, W) -> (B, 3, H, W): measured values are kept; a
    missing green is the mean of its 4 green neighbours, a missing red/blue the mean of its 2 or 4 nearest
    red/blue neighbours (normalised convolution with the 3x3 cross / binomial kernels, reflected borders)."""
    b, _, h, w = raw.shape
    cfa = bayer_cfa(h, w, raw.dtype)
    rb = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=raw.dtype)
    gk = torch.tensor([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]], dtype=raw.dtype)
    kern = torch.stack([rb, gk, rb])[:, None]                                    # (3, 1, 3, 3)
    pad = lambda v: torch.nn.functional.pad(v, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    num = torch.nn.functional.conv2d(pad(raw * cfa), kern, groups=3)
    den = torch.nn.functional.conv2d(pad(cfa), kern, groups=3)
    return num / den


def _rgb_batch(t: torch.Tensor, is_np: bool, what: str):
    """float64 CPU (B, 3, H, W) of an RGB or 1-channel image (replicated to RGB), and the function back."""
    planes, restore = _planes(t, is_np)
    n_img, _ = _bshape(t)
    b = planes.view(n_img, -1, *planes.shape[2:])
    c = b.shape[1]
    if c not in (1, 3):
        raise ValueError(f"x must be an RGB or a 1-channel image for {what} noise, got {c} channels")
    if bool(torch.isnan(b).any()):
        raise ValueError(f"x must not contain NaN for {what} noise")

    def back(rgb: torch.Tensor) -> torch.Tensor:
        out = rgb.mean(dim=1, keepdim=True) if c == 1 else rgb
        return restore(out.reshape(planes.shape))

    return (b.expand(-1, 3, -1, -1) if c == 1 else b).clamp(0.0, 1.0), back


def camera_raw(x, seed: int, params: CameraParams | None = None, *, random: bool = False,
               noiseless: bool = False, **fixed) -> tuple[torch.Tensor, torch.Tensor, list[CameraParams]]:
    """The raw stage of :func:`add_camera` (same arguments, same draws): float64 CPU (B, 1, H, W) clean and
    noisy RGGB mosaics (raw units on [0, 1], noise variance ``shot * clean + read``; the noisy mosaic is not
    clipped) and the cameras, one per image."""
    t, is_np = _as_tensor("x", x)
    g = torch.Generator().manual_seed(check_seed(seed))
    rgb, _ = _rgb_batch(t, is_np, "camera")
    return _camera_raw(rgb, g, params, random, noiseless, fixed)


def _camera_raw(rgb: torch.Tensor, g: torch.Generator, params, random: bool, noiseless: bool, fixed: dict):
    n_img = rgb.shape[0]
    bad = set(fixed) - set(CameraParams.__dataclass_fields__)
    if bad:
        raise ValueError(f"unknown camera parameter(s) {sorted(bad)}; known: "
                         f"{list(CameraParams.__dataclass_fields__)}")
    fixed = dict(fixed)
    if random:
        if params is not None:
            raise ValueError("give either params or random=True, not both")
        cams = [CameraParams.draw(g, **fixed) for _ in range(n_img)]
    else:
        base = CAMERA_DEFAULT if params is None else params
        if not isinstance(base, CameraParams):
            raise TypeError(f"params must be a CameraParams, got {type(base).__name__}")
        if "shot" in fixed and "read" not in fixed:
            fixed["read"] = read_from_shot(check_float("shot", fixed["shot"], lo=0.0, lo_open=True))
        cams = [CameraParams(**{**base.as_dict(), **fixed})] * n_img
    h, w = rgb.shape[-2:]
    cfa = bayer_cfa(h, w)
    clean, noisy = [], []
    for i, p in enumerate(cams):
        raw = (camera_unprocess(rgb[i:i + 1], p) * cfa).sum(1, keepdim=True)
        z = torch.randn(raw.shape, generator=g, dtype=torch.float64)
        clean.append(raw)
        noisy.append(raw if noiseless else raw + (p.shot * raw + p.read).sqrt() * z)
    return torch.cat(clean), torch.cat(noisy), cams


def add_camera(x, seed: int, params: CameraParams | None = None, *, random: bool = False,
               return_params: bool = False, noiseless: bool = False, **fixed):
    """Camera noise made the "unprocessing" way (Brooks et al., CVPR 2019): the clean sRGB image is turned
    into a raw image by inverting a camera pipeline (:func:`camera_unprocess`: inverse smoothstep, gamma
    2.2 expansion, inverse CCM, inverse white balance and brightening), sampled on an RGGB Bayer mosaic,
    given heteroscedastic Gaussian sensor noise of variance ``shot * raw + read`` (the Gaussian
    approximation of Poisson-Gaussian noise the paper uses), bilinearly demosaiced and processed back to
    sRGB (:func:`camera_process`), values on [0, 1]. The noise is signal-dependent and correlated
    between neighbouring pixels and between channels. A 1-channel image is replicated to RGB, processed,
    and returned as the mean of the three channels (a colour camera rendered in grey). With zero noise the
    result is the demosaiced image, not the input: bilinear demosaicing alone costs 23.9-29.1 dB PSNR on the
    256x256 centre crops of the samples (``noiseless=True`` gives that noise-free rendering, the reference
    :meth:`NoiseSpec.target` uses, as SIDD's ground truth goes through the same processing as its noisy
    images).

    Args:
        x: clean image on [0, 1] (RGB or 1 channel; layouts as :func:`add_correlated`).
        seed: integer seed of the CPU ``torch.Generator``.
        params: the camera (:class:`CameraParams`; None: :data:`CAMERA_DEFAULT`, or drawn with ``random``).
        random: draw one camera per image with :meth:`CameraParams.draw` (fields in ``fixed`` kept).
        return_params: also return the list of the :class:`CameraParams` used, one per image.
        noiseless: the same pipeline and draws with the sensor noise left out (the noise-free rendering).
        **fixed: fields overriding ``params`` (e.g. ``shot=0.01``; a ``shot`` without ``read`` takes the
            read variance on the Brooks et al. line, with its jitter under ``random``).

    Draw order: under ``random``, first the parameters of each image, then the noise field.
    """
    t, is_np = _as_tensor("x", x)
    g = torch.Generator().manual_seed(check_seed(seed))
    rgb, back = _rgb_batch(t, is_np, "camera")
    _, noisy, cams = _camera_raw(rgb, g, params, random, noiseless, fixed)
    out = torch.cat([camera_process(bilinear_demosaic(noisy[i:i + 1]), p) for i, p in enumerate(cams)])
    y = _finish(back(out).to(device=t.device, dtype=t.dtype), is_np)
    return (y, cams) if return_params else y


MICROSCOPY_DEFAULT = {"lam": 30.0, "read": 2.0, "psf": 0.0}
"""The ``microscopy`` spec: photon scale 30, read-noise std 2 on the 0-255 scale, no blur."""


def psf_blur(x, psf: float):
    """The signal seen through a Gaussian point-spread function of std ``psf`` pixels (separable, kernel
    radius ceil(3 psf), reflected borders; ``psf`` 0: the input). Layouts as :func:`add_correlated`; the
    noise-free target of ``microscopy`` noise with a PSF."""
    t, is_np = _as_tensor("x", x)
    psf = check_float("psf", psf, lo=0.0)
    planes, restore = _planes(t, is_np)
    out = _blur_planes(planes, psf)
    return _finish(restore(out).to(device=t.device, dtype=t.dtype), is_np)


def _blur_planes(planes: torch.Tensor, psf: float) -> torch.Tensor:
    if psf == 0:
        return planes
    r = max(1, math.ceil(3 * psf))
    if r >= min(planes.shape[-2:]):
        raise ValueError(f"psf {psf:g} is too wide for a {planes.shape[-2]}x{planes.shape[-1]} image")
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / psf) ** 2)
    k = k / k.sum()
    p = torch.nn.functional.pad(planes, (r, r, r, r), mode="reflect")
    p = torch.nn.functional.conv2d(p, k.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(p, k.view(1, 1, -1, 1))


def add_microscopy(x, seed: int, lam: float = 30.0, read: float = 2.0, psf: float = 0.0):
    """Fluorescence-microscopy noise: the signal optionally blurred by a Gaussian PSF of std ``psf`` pixels
    (:func:`psf_blur`), then ``Poisson(lam * s) / lam`` plus Gaussian read noise of std ``read / 255``,
    independently per pixel and channel (meant for grayscale images; values are not clipped).

    Args:
        x: clean image on [0, 1] (>= 0); layouts as :func:`add_correlated`.
        seed: integer seed of the CPU ``torch.Generator``.
        lam: photon count scale (> 0): a pixel of value 1 collects ``lam`` photons on average.
        read: read-noise std on the 0-255 scale (>= 0).
        psf: std of the Gaussian camera blur in pixels (0: none).
    """
    t, is_np = _as_tensor("x", x)
    lam = check_float("lam", lam, lo=0.0, lo_open=True)
    read = check_float("read", read, lo=0.0)
    psf = check_float("psf", psf, lo=0.0)
    g = torch.Generator().manual_seed(check_seed(seed))
    if bool((t < 0).any()) or bool(torch.isnan(t).any()):
        raise ValueError("x must be >= 0 (and not NaN) for microscopy noise")
    planes, restore = _planes(t, is_np)
    s = _blur_planes(planes, psf).clamp_min(0.0)
    y = torch.poisson(s * lam, generator=g) / lam
    y = y + read / 255.0 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    return _finish(restore(y).to(device=t.device, dtype=t.dtype), is_np)


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise description; call it as ``spec(x, seed)``.

    Attributes:
        kind: ``"gaussian"``, ``"poisson"``, ``"correlated"``, ``"demosaic"``, ``"camera"`` or ``"microscopy"``.
        level: sigma (0-255 scale) or lam, or a (lo, hi) range; for ``camera`` the shot level (a range:
            drawn log-uniform per image), for ``microscopy`` lam.
        extra: the kernel side (correlated) or the read-noise std (demosaic); None: the default.
        options: ``camera`` / ``microscopy`` fields given in the spec, as sorted (name, value) pairs
            (camera: ``shot``, ``read``, ``rgb_gain``, ``red_gain``, ``blue_gain``, ``ccm``, ``random``;
            microscopy: ``lam``, ``read``, ``psf``).
    """

    kind: str
    level: float | tuple[float, float]
    extra: float | None = None
    options: tuple = ()

    def _camera_kwargs(self) -> dict:
        o = dict(self.options)
        kw = {k: v for k, v in o.items() if k not in ("ccm", "random")}
        if "ccm" in o:
            kw["ccm_weights"] = tuple(1.0 if i == int(o["ccm"]) else 0.0 for i in range(len(XYZ_TO_CAM)))
        return kw

    def __call__(self, x, seed: int):
        return self.apply(x, seed)

    def apply(self, x, seed: int, return_params: bool = False):
        """The noisy image; with ``return_params`` also a list of dicts, one per image, of every parameter
        used (the :class:`CameraParams` fields for ``camera``; kind and levels otherwise)."""
        params = None
        if self.kind == "camera":
            y, cams = add_camera(x, seed, random=bool(dict(self.options).get("random")), return_params=True,
                                 **self._camera_kwargs())
            params = [c.as_dict() for c in cams]
        elif self.kind == "microscopy":
            o = {**MICROSCOPY_DEFAULT, **dict(self.options)}
            y = add_microscopy(x, seed, lam=o["lam"], read=o["read"], psf=o["psf"])
            params = [o]
        elif self.kind == "gaussian":
            y = add_gaussian(x, self.level, seed)
        elif self.kind == "correlated":
            y = add_correlated(x, self.level, seed, kernel=3 if self.extra is None else int(self.extra))
        elif self.kind == "demosaic":
            y = add_demosaic(x, self.level, seed, read=2.0 if self.extra is None else self.extra)
        else:
            y = add_poisson(x, self.level, seed)
        if not return_params:
            return y
        return y, params if params is not None else [{"kind": self.kind, "level": self.level, "extra": self.extra}]

    def target(self, x, seed: int):
        """The noise-free reference for scoring a denoiser on ``self.apply(x, seed)``: the noise-free rendering
        through the same camera pipeline for ``camera`` (demosaicing included, see :func:`add_camera`), the
        PSF-blurred signal for ``microscopy`` with a PSF, ``x`` itself for the other kinds."""
        if self.kind == "camera":
            return add_camera(x, seed, random=bool(dict(self.options).get("random")), noiseless=True,
                              **self._camera_kwargs())
        if self.kind == "microscopy" and dict(self.options).get("psf", 0.0) > 0:
            return psf_blur(x, dict(self.options)["psf"])
        return x

    @property
    def sigma_hint(self) -> float | None:
        """The per-pixel std on the 0-255 scale when the spec fixes it (Gaussian kinds), else None."""
        return None if self.kind not in ("gaussian", "correlated") or isinstance(self.level, tuple) \
            else float(self.level)

    def __str__(self) -> str:
        if self.kind in ("camera", "microscopy"):
            body = ",".join(k if k == "random" else f"{k}={v:g}" for k, v in self.options)
            return self.kind + (f":{body}" if body else "")
        lv = self.level
        s = f"{lv[0]:g}-{lv[1]:g}" if isinstance(lv, tuple) else f"{lv:g}"
        return f"{self.kind}:{s}" + ("" if self.extra is None else f":{self.extra:g}")


_KINDS = {"gaussian": "gaussian", "gauss": "gaussian", "g": "gaussian", "poisson": "poisson", "p": "poisson",
          "correlated": "correlated", "demosaic": "demosaic"}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_SPEC_RE = re.compile(rf"^([a-z]+)\s*:?\s*{_NUM}(?:\s*[-_,]\s*{_NUM})?(?:\s*:\s*{_NUM})?$")
_CAMERA_KEYS = {"shot": "shot", "read": "read", "gain": "rgb_gain", "rgb_gain": "rgb_gain", "red": "red_gain",
                "red_gain": "red_gain", "blue": "blue_gain", "blue_gain": "blue_gain", "ccm": "ccm"}
_MICRO_KEYS = ("lam", "read", "psf")
_SPEC_HELP = ("'gaussian:25', 'poisson:30', 'gaussian:5-50', 'correlated:25[:K]', 'demosaic:30[:READ]', "
              "'camera[:shot=S,read=R,gain=G,red=R,blue=B,ccm=I,random]' or 'microscopy[:LAM[:READ[:PSF]]]'")


def _spec_number(spec: str, key: str, text: str, *, positive: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{key} must be a number in noise spec {spec!r}, got {text!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{key} must be a finite number {'> 0' if positive else '>= 0'} in noise spec {spec!r}, "
                         f"got {text!r}")
    return v


def _parse_camera(spec: str, body: str) -> NoiseSpec:
    opts: dict[str, float] = {}
    for item in (p.strip() for p in body.split(",")) if body else ():
        if item == "random":
            opts["random"] = 1.0
            continue
        key, eq, val = (s.strip() for s in item.partition("="))
        if not eq or key not in _CAMERA_KEYS:
            raise ValueError(f"camera noise spec {spec!r}: unknown field {item!r}; known: "
                             f"{', '.join(k + '=' for k in ('shot', 'read', 'gain', 'red', 'blue', 'ccm'))}, random")
        name = _CAMERA_KEYS[key]
        if name in opts:
            raise ValueError(f"camera noise spec {spec!r}: {key} given twice")
        opts[name] = _spec_number(spec, key, val, positive=name not in ("read", "ccm"))
        if name == "ccm" and (opts[name] != int(opts[name]) or not 0 <= opts[name] < len(XYZ_TO_CAM)):
            raise ValueError(f"ccm must be an integer in [0, {len(XYZ_TO_CAM) - 1}] in noise spec {spec!r}, "
                             f"got {val!r}")
    level = opts.get("shot", SHOT_RANGE if "random" in opts else CAMERA_SHOT)
    order = ("shot", "read", "rgb_gain", "red_gain", "blue_gain", "ccm", "random")
    return NoiseSpec("camera", level, None, tuple((k, opts[k]) for k in order if k in opts))


def _parse_microscopy(spec: str, body: str) -> NoiseSpec:
    opts: dict[str, float] = {}
    if "=" in body:
        for item in (p.strip() for p in body.split(",")):
            key, eq, val = (s.strip() for s in item.partition("="))
            if not eq or key not in _MICRO_KEYS:
                raise ValueError(f"microscopy noise spec {spec!r}: unknown field {item!r}; known: lam=, read=, psf=")
            if key in opts:
                raise ValueError(f"microscopy noise spec {spec!r}: {key} given twice")
            opts[key] = _spec_number(spec, key, val, positive=key == "lam")
    elif body:
        vals = [v.strip() for v in body.split(":")]
        if len(vals) > 3:
            raise ValueError(f"microscopy noise spec {spec!r}: at most LAM:READ:PSF")
        for key, val in zip(_MICRO_KEYS, vals):
            opts[key] = _spec_number(spec, key, val, positive=key == "lam")
    level = opts.get("lam", MICROSCOPY_DEFAULT["lam"])
    return NoiseSpec("microscopy", level, None, tuple((k, opts[k]) for k in _MICRO_KEYS if k in opts))


def parse_noise(spec: str) -> NoiseSpec:
    """Parse ``"gaussian:25"``, ``"poisson:30"``, ``"gaussian:5-50"`` (a per-image range),
    ``"correlated:25"`` / ``"correlated:25:5"`` (sigma, kernel side), ``"demosaic:30"`` /
    ``"demosaic:30:2"`` (lam, read-noise std), ``"camera"`` (:data:`CAMERA_DEFAULT`) /
    ``"camera:shot=0.01"`` (read on the Brooks et al. line) / ``"camera:shot=0.01,read=2e-5,gain=1.2,red=2,
    blue=1.6,ccm=0"`` / ``"camera:random"`` (every unspecified field drawn per image from the seed, see
    :meth:`CameraParams.draw`), and ``"microscopy"`` / ``"microscopy:30"`` / ``"microscopy:30:2:1.5"`` /
    ``"microscopy:lam=30,read=2,psf=1.5"`` (:func:`add_microscopy`; defaults :data:`MICROSCOPY_DEFAULT`).

    Also accepted: the Nb2Nb checkpoint names ``"gauss25"``, ``"gauss5_50"``, ``"poisson30"``,
    ``"poisson5_50"``, and the short kinds ``g``/``p``. Case and surrounding spaces are ignored.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    s = spec.strip().lower()
    kind, _, body = s.partition(":")
    if kind.strip() == "camera":
        return _parse_camera(spec, body.strip())
    if kind.strip() == "microscopy":
        return _parse_microscopy(spec, body.strip())
    m = _SPEC_RE.match(s)
    if m is None or m.group(1) not in _KINDS:
        raise ValueError(f"spec must look like {_SPEC_HELP}, got {spec!r}")
    kind = _KINDS[m.group(1)]
    lo = float(m.group(2))
    level = lo if m.group(3) is None else (lo, float(m.group(3)))
    level = _check_level("spec level", level, lo_open=(kind in ("poisson", "demosaic")))
    extra = None if m.group(4) is None else float(m.group(4))
    if extra is not None and kind not in ("correlated", "demosaic"):
        raise ValueError(f"only correlated and demosaic noise take a third field, got {spec!r}")
    if kind == "correlated" and extra is not None and (extra != int(extra) or int(extra) % 2 == 0):
        raise ValueError(f"the kernel side of correlated noise must be an odd integer, got {spec!r}")
    return NoiseSpec(kind, level, extra)


def split_noises(text: str) -> list[str]:
    """A comma-separated list of noise specs (as ``--noise`` takes it) as a list: a piece that does not
    begin with a noise kind continues the previous spec, so ``"gaussian:25,camera:shot=0.01,read=2e-5"``
    is two specs and ``"gaussian:5,50"`` one."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    kinds = set(_KINDS) | {"camera", "microscopy"}
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        head = re.match(r"[a-zA-Z]+", piece)
        is_kind = head is not None and head.group(0).lower() in kinds and (
            len(head.group(0)) == len(piece) or piece[len(head.group(0))] in ": 0123456789.")
        if out and not is_kind:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def add_noise(x, spec: str | NoiseSpec, seed: int):
    """Apply a noise given as a string (see :func:`parse_noise`) or a :class:`NoiseSpec`."""
    if isinstance(spec, str):
        spec = parse_noise(spec)
    if not isinstance(spec, NoiseSpec):
        raise TypeError(f"spec must be a str or NoiseSpec, got {type(spec).__name__}")
    return spec(x, seed)
