"""Camera noise (unprocessing, after Brooks et al., CVPR 2019) and fluorescence-microscopy noise
(see :mod:`fastdenoise.noise`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_seed
from fastdenoise.noise._common import _as_tensor
from fastdenoise.noise._common import _bshape
from fastdenoise.noise._common import _finish
from fastdenoise.noise.synthetic import _planes


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
