"""Quality evaluation: every method in single-image mode on sample images with synthetic noise.

Used by ``fastdenoise eval`` and ``python -m benchmarks.quality`` (the committed quality table). For each
(image, noise) pair it reports the noisy input, BM3D (when the optional ``bm3d`` package is installed;
told the noise model, see :func:`_bm3d`) and each method's PSNR/SSIM (the default ``"p2n"`` convention of
:mod:`fastdenoise.metrics`: clamp, round to uint8, peak 255; MATLAB-style 11x11 Gaussian SSIM per channel),
iterations and seconds; with ``reference=True`` each method also runs in its reference configuration
(plain-torch ops, fp32, no graphs) with the same seeds and iterations, and the PSNR difference is reported.
Each output is scored against the noise spec's noise-free reference
(:meth:`fastdenoise.noise.NoiseSpec.target`): the sample itself, or for ``camera`` noise the sample through
the same camera pipeline without noise (demosaicing included).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import time

import numpy as np
import torch

from fastdenoise.io import SAMPLES
from fastdenoise.methods import available

NOISES = ("gaussian:25", "gaussian:50", "poisson:30", "correlated:25")


@dataclasses.dataclass
class Row:
    image: str
    noise: str
    method: str
    psnr: float
    ssim: float
    iters: int | None = None
    seconds: float | None = None
    ref_psnr: float | None = None
    ref_seconds: float | None = None

    @property
    def delta(self) -> float | None:
        return None if self.ref_psnr is None else self.psnr - self.ref_psnr


def _metrics(pred: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    from fastdenoise.metrics import psnr
    from fastdenoise.metrics import ssim

    return float(psnr(pred, clean)[0]), float(ssim(pred, clean)[0])


def bm3d_sigma(noisy: np.ndarray, noise: str) -> float:
    """The noise std (in [0, 1] units) handed to BM3D for ``noisy`` (H, W, C) under the noise spec ``noise``:
    the true sigma for fixed Gaussian noise, otherwise skimage's wavelet estimate, as a user would do."""
    from skimage.restoration import estimate_sigma

    from fastdenoise.noise import parse_noise

    spec = parse_noise(noise)
    if spec.kind == "gaussian" and not isinstance(spec.level, tuple):
        return spec.level / 255.0
    # channel_axis=-1 for grayscale too: an (H, W, 1) array with channel_axis None is read as a 3-D
    # volume one voxel deep and estimate_sigma returns ~0 (BM3D then hands back the noisy image)
    return float(np.mean(estimate_sigma(noisy, channel_axis=-1)))


def bm3d_noise(noisy: np.ndarray, noise: str) -> float | np.ndarray:
    """What BM3D is told about the noise of ``noisy`` (H, W, C): the std for white noise (:func:`bm3d_sigma`)
    or, for correlated noise of a fixed sigma, its power spectral density (H, W) in the ``bm3d`` package's
    convention, ``|FFT2(k)|^2 * H * W`` with ``k`` the noise's filter: BM3D for correlated noise (Makinen,
    Azzari, Foi 2020), which the ``bm3d`` package implements. Told only a std, BM3D leaves correlated noise
    almost untouched. Like the Gaussian rows, which get the true sigma, this is the known noise model."""
    from fastdenoise.noise import _binomial
    from fastdenoise.noise import parse_noise

    spec = parse_noise(noise)
    if spec.kind != "correlated" or isinstance(spec.level, tuple):
        return bm3d_sigma(noisy, noise)
    k = _binomial(3 if spec.extra is None else int(spec.extra)).double().numpy()
    k = k / np.sqrt((k ** 2).sum()) * (spec.level / 255.0)
    h, w = noisy.shape[:2]
    return np.abs(np.fft.fft2(k, (h, w))) ** 2 * h * w


def anscombe_inverse(d: np.ndarray) -> np.ndarray:
    """The closed-form approximation of the exact unbiased inverse of the Anscombe transform
    ``2 sqrt(c + 3/8)`` (Makitalo and Foi 2011): counts ``c`` from a denoised transformed image ``d``."""
    d = np.maximum(d, 0.8)     # the transform of 0 is 1.22; the series diverges near 0
    r = np.sqrt(1.5)
    return np.maximum(d * d / 4 + r / 4 / d - 11 / 8 / d ** 2 + 5 * r / 8 / d ** 3 - 1 / 8, 0.0)


def camera_noise_psd(spec, sample: np.ndarray, target: np.ndarray, draws: int = 8) -> np.ndarray:
    """(H, W, C) noise power spectral density of ``spec`` (e.g. camera noise) on ``sample`` (H, W, C) in the
    ``bm3d`` package's convention (``sigma^2 * H * W`` for white noise), by a Monte-Carlo of the noise model:
    ``|FFT2(noisy - target)|^2`` averaged over ``draws`` realisations (seeds 1000, 1001, ...); for 3 channels
    the residuals are first taken to BM3D's opponent colour space (``bm3d.rgb_to(.., 'opp')``'s matrix),
    where BM3D filters, so that the channels' shared noise is accounted for."""
    a = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0, -0.5], [0.25, -0.5, 0.25]])
    acc = 0.0
    for j in range(draws):
        r = np.asarray(spec(sample, seed=1000 + j), np.float64) - target.astype(np.float64)
        if r.shape[-1] == 3:
            r = r @ a.T
        acc = acc + np.abs(np.fft.fft2(r, axes=(0, 1))) ** 2
    return acc / draws


def wavelet_jinv(noisy: np.ndarray) -> np.ndarray:
    """The best blind classical denoiser measured on camera noise (``benchmarks/quality.md``): scikit-image's
    wavelet denoiser (BayesShrink, soft, db1, in YCbCr for colour) with its ``sigma`` chosen by J-invariant
    self-supervised calibration (Noise2Self, ``skimage.restoration.calibrate_denoiser``, 30 values on
    [0.01, 0.3]). Needs no noise level. ``noisy``: H x W x C float on [0, 1] (C = 1 or 3); returns the same
    shape, float32 on [0, 1]. Needs PyWavelets."""
    from skimage.restoration import calibrate_denoiser
    from skimage.restoration import denoise_wavelet

    if not isinstance(noisy, np.ndarray) or noisy.ndim != 3 or noisy.shape[-1] not in (1, 3):
        raise ValueError(f"noisy must be an H x W x C numpy array with C = 1 or 3, got "
                         f"{getattr(noisy, 'shape', type(noisy).__name__)}")
    rgb = noisy.shape[-1] == 3
    z = noisy.astype(np.float64) if rgb else noisy[..., 0].astype(np.float64)
    grid = {"sigma": list(np.linspace(0.01, 0.3, 30)), "wavelet": ["db1"], "mode": ["soft"],
            "method": ["BayesShrink"], "convert2ycbcr": [rgb], "channel_axis": [-1 if rgb else None],
            "rescale_sigma": [True]}
    den = calibrate_denoiser(z, denoise_wavelet, denoise_parameters=grid)
    out = np.clip(den(z), 0, 1).astype(np.float32)
    return out if rgb else out[..., None]


def _bm3d(noisy: np.ndarray, clean: np.ndarray, noise: str, sample: np.ndarray | None = None) -> np.ndarray | None:
    """BM3D told the known noise model, as the Gaussian rows are told sigma: the noise PSD for correlated
    noise (:func:`bm3d_noise`) and, for Poisson noise of a fixed ``lam``, the Anscombe transform of the counts
    (noise std 1), BM3D, and the exact unbiased inverse, the standard way to run BM3D on Poisson data (given
    only a std, BM3D gains 4-5 dB less on Poisson lambda 30). Camera noise, given the clean ``sample`` the
    noise was made from: the per-channel PSD in BM3D's opponent colour space from a Monte-Carlo of the
    camera pipeline (:func:`camera_noise_psd`; ``clean`` is the noise-free rendering). Other noises: the
    estimated std."""
    if importlib.util.find_spec("bm3d") is None:
        return None
    if not hasattr(np, "trapz"):    # bm4d 4.x (under bm3d) calls np.trapz for PSDs; numpy 2 renamed it
        np.trapz = np.trapezoid
    import bm3d

    from fastdenoise.noise import parse_noise

    def run(z, sigma):
        if z.shape[-1] == 3:
            return np.asarray(bm3d.bm3d_rgb(z, sigma), dtype=np.float64)
        return np.asarray(bm3d.bm3d(z[..., 0], sigma), dtype=np.float64)[..., None]

    spec = parse_noise(noise)
    if spec.kind == "camera" and sample is not None:
        psd = camera_noise_psd(spec, sample, clean)
        if noisy.shape[-1] != 3:
            return run(noisy, psd[..., 0]).astype(np.float32)
        z, imax, imin, _, _ = bm3d.rgb_to(noisy.astype(np.float64), "opp")
        y = np.asarray(bm3d.bm3d(z, psd / ((imax - imin) ** 2)[None, None, :]), dtype=np.float64)
        return bm3d.rgb_to(y, "opp", True, imax, imin)[0].astype(np.float32)
    if spec.kind == "poisson" and not isinstance(spec.level, tuple):
        lam = float(spec.level)
        vst = 2.0 * np.sqrt(np.maximum(noisy.astype(np.float64) * lam, 0.0) + 0.375)
        return (anscombe_inverse(run(vst, 1.0)) / lam).astype(np.float32)
    return run(noisy, bm3d_noise(noisy, noise)).astype(np.float32)


def emit_row(key, make, have: dict, rows: list, on_row, progress, label: str) -> None:
    """Append to ``rows`` the row of ``key``: the one in ``have`` (a resumed run), else ``make()`` (None: no row),
    which is handed to ``on_row`` and reported through ``progress`` as ``label: PSNR (seconds)``."""
    row = have.get(key)
    if row is None:
        row = make()
        if row is None:
            return
        if on_row is not None:
            on_row(row)
        if progress:
            t = "" if row.seconds is None else f" ({row.seconds:.1f} s)"
            progress(f"{label}: {row.psnr:.2f} dB{t}")
    rows.append(row)


def evaluate(images=SAMPLES, noises=NOISES, methods=None, *, crop: int = 256, device: str = "auto",
             seed: int = 0, reference: bool = False, iters: int | None = None, init: str = "start",
             progress=print, done: list[Row] | None = None, on_row=None) -> list[Row]:
    """Rows of the quality table (see the module docstring). ``methods`` None: every registered method;
    ``iters=None`` keeps each method's default; ``init``: ``"start"`` (shipped starts) or ``"scratch"``.

    Resumable: rows of ``done`` (same image, noise and method) are kept instead of recomputed, and
    ``on_row(row)`` is called for each new row as soon as it exists (e.g. to append it to a file)."""
    from fastdenoise.api import clear_cache
    from fastdenoise.api import denoise
    from fastdenoise.io import load_sample
    from fastdenoise.noise import parse_noise

    methods = available() if methods is None else list(methods)
    have = {(r.image, r.noise, r.method): r for r in (done or [])}
    rows: list[Row] = []

    def emit(key, make):
        emit_row(key, make, have, rows, on_row, progress, " ".join(key))

    for name in images:
        sample = np.asarray(load_sample(name, crop=crop), dtype=np.float32)
        for k, noise in enumerate(noises):
            spec = parse_noise(noise)
            noisy, params = spec.apply(sample, seed=seed + k, return_params=True)
            noisy = np.asarray(noisy, dtype=np.float32)
            if progress and spec.kind in ("camera", "microscopy"):
                progress(f"{name} {noise}: noise parameters {params[0]}")
            # the noise-free reference: the sample itself, or (camera, microscopy with a PSF) the sample
            # through the same pipeline without noise (NoiseSpec.target)
            clean = np.asarray(spec.target(sample, seed=seed + k), dtype=np.float32)
            emit((name, noise, "noisy"), lambda: Row(name, noise, "noisy", *_metrics(noisy, clean)))

            def bm3d_row():
                t0 = time.perf_counter()
                b = _bm3d(noisy, clean, noise, sample=sample)
                return None if b is None else Row(name, noise, "bm3d", *_metrics(b, clean),
                                                  seconds=time.perf_counter() - t0)

            if importlib.util.find_spec("bm3d") is not None:
                emit((name, noise, "bm3d"), bm3d_row)
            for m in methods:
                def method_row(m=m):
                    out, info = denoise(noisy, method=m, iters=iters, seed=seed, device=device, init=init,
                                        return_info=True)
                    row = Row(name, noise, m, *_metrics(out, clean), iters=info["iters"], seconds=info["seconds"])
                    if reference:
                        rout, rinfo = denoise(noisy, method=m, iters=iters, seed=seed, device=device, init=init,
                                              return_info=True, reference=True)
                        row.ref_psnr, row.ref_seconds = _metrics(rout, clean)[0], rinfo["seconds"]
                    clear_cache()
                    return row

                emit((name, noise, m), method_row)
    return rows


def format_table(rows: list[Row]) -> str:
    """Markdown table of the rows plus per-(noise, method) averages."""
    ref = any(r.ref_psnr is not None for r in rows)
    head = "| image | noise | method | iters | PSNR dB | SSIM | time s |" + (" ref PSNR | fused - ref dB |" if ref else "")
    out = [head, "|" + "---|" * (7 + 2 * ref)]
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        line = (f"| {r.image} | {r.noise} | {r.method} | {fmt(r.iters, 'd')} | {r.psnr:.2f} | {r.ssim:.4f} | "
                f"{fmt(r.seconds, '.1f')} |")
        if ref:
            line += f" {fmt(r.ref_psnr, '.2f')} | {fmt(r.delta, '+.3f')} |"
        out.append(line)
    out += ["", "| noise | method | mean PSNR dB | mean SSIM | gain over noisy dB |", "|---|---|---|---|---|"]
    for noise in dict.fromkeys(r.noise for r in rows):
        sel = [r for r in rows if r.noise == noise]
        base = np.mean([r.psnr for r in sel if r.method == "noisy"])
        for m in dict.fromkeys(r.method for r in sel):
            ms = [r for r in sel if r.method == m]
            p, s = np.mean([r.psnr for r in ms]), np.mean([r.ssim for r in ms])
            out.append(f"| {noise} | {m} | {p:.2f} | {s:.4f} | {p - base:+.2f} |")
    return "\n".join(out)


def rows_to_json(rows: list[Row]) -> list[dict]:
    return [dict(dataclasses.asdict(r), delta=r.delta) for r in rows]


def environment() -> dict:
    """Device and versions, recorded beside every table."""
    import datetime
    import platform

    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    return {"device": dev, "torch": torch.__version__, "date": datetime.date.today().isoformat()}
