"""Quality evaluation: every method in single-image mode on sample images with synthetic noise.

Used by ``fastdenoise eval`` and ``python -m benchmarks.quality`` (the committed quality table). For each
(image, noise) pair it reports the noisy input, BM3D (when the optional ``bm3d`` package is installed)
and each method's PSNR/SSIM (METHODS.md 1.2 default convention: clamp, round to uint8, peak 255;
MATLAB-style 11x11 Gaussian SSIM per channel), iterations and seconds; with ``reference=True`` each
method also runs in its reference configuration (plain-torch ops, fp32, no graphs) with the same seeds
and iterations, and the PSNR difference is reported.
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


def _bm3d(noisy: np.ndarray, clean: np.ndarray, noise: str) -> np.ndarray | None:
    if importlib.util.find_spec("bm3d") is None:
        return None
    import bm3d
    from skimage.restoration import estimate_sigma

    from fastdenoise.noise import parse_noise

    spec = parse_noise(noise)
    if spec.kind == "gaussian" and not isinstance(spec.level, tuple):
        sigma = spec.level / 255.0
    else:  # Poisson or a range: BM3D gets the estimated std, as a user would do
        sigma = float(np.mean(estimate_sigma(noisy, channel_axis=-1 if noisy.shape[-1] > 1 else None)))
    if noisy.shape[-1] == 3:
        return np.asarray(bm3d.bm3d_rgb(noisy, sigma), dtype=np.float32)
    return np.asarray(bm3d.bm3d(noisy[..., 0], sigma), dtype=np.float32)[..., None]


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
    from fastdenoise.noise import add_noise

    methods = available() if methods is None else list(methods)
    have = {(r.image, r.noise, r.method): r for r in (done or [])}
    rows: list[Row] = []

    def emit(key, make):
        row = have.get(key)
        if row is None:
            row = make()
            if on_row is not None:
                on_row(row)
            if progress:
                t = "" if row.seconds is None else f" ({row.seconds:.1f} s)"
                progress(f"{key[0]} {key[1]} {key[2]}: {row.psnr:.2f} dB{t}")
        rows.append(row)

    for name in images:
        clean = np.asarray(load_sample(name, crop=crop), dtype=np.float32)
        for k, noise in enumerate(noises):
            noisy = np.asarray(add_noise(clean, noise, seed=seed + k), dtype=np.float32)
            emit((name, noise, "noisy"), lambda: Row(name, noise, "noisy", *_metrics(noisy, clean)))

            def bm3d_row():
                t0 = time.perf_counter()
                b = _bm3d(noisy, clean, noise)
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
