"""Scoring denoisers on real noisy photos with ground truth: a folder of noisy/clean pairs a user brings.

Layouts :func:`find_pairs` reads (file names are matched without their extension, case-insensitively):

* ``DIR/noisy/NAME`` with ``DIR/clean/NAME`` (the clean folder may also be called ``gt``, ``GT`` or
  ``target``); sub-folders of ``noisy/`` are mirrored in the clean folder;
* one folder of files whose names carry the role as a separate word: ``NAME_noisy.png`` / ``NAME_clean.png``
  (also ``-``, ``.`` or a space as the separator, ``gt`` for ``clean``, upper case), which also reads the SIDD
  naming ``0001_NOISY_SRGB_010.PNG`` / ``0001_GT_SRGB_010.PNG``.

Every noisy file needs exactly one clean partner of the same shape; anything else (an unpaired file, two
candidates, a shape or channel mismatch, an unreadable file) raises ``ValueError`` naming the files.

Metric (the single-image denoising papers' convention, :mod:`fastdenoise.metrics` ``"p2n"``): the output
clamped to [0, 1] and rounded to uint8, PSNR with peak 255 over all pixels and channels, SSIM per channel
(11 x 11 Gaussian window) averaged. :func:`evaluate_pairs` returns a row per (image, method) and
:func:`summarize` the means; ``fastdenoise eval --pairs DIR`` prints both and ``--json FILE`` writes them.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time

import numpy as np

__all__ = ["Pair", "PairRow", "find_pairs", "load_pair", "evaluate_pairs", "summarize", "BASELINES"]

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")
CLEAN_DIRS = ("clean", "gt", "GT", "target")
_ROLE = re.compile(r"(?i)(?:^|(?<=[_\-. ]))(noisy|clean|gt)(?=$|[_\-. ])")
BASELINES = ("noisy", "wavelet", "bm3d")
"""Rows that need no fit: the noisy input itself, the J-invariant-calibrated wavelet denoiser
(:func:`fastdenoise.evaluate.wavelet_jinv`) and BM3D with the noise level estimated from the image (when the
optional ``bm3d`` package is installed)."""


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    noisy: str
    clean: str


@dataclasses.dataclass
class PairRow:
    image: str
    method: str
    psnr: float
    ssim: float
    iters: int | None = None
    seconds: float | None = None
    options: str = ""
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.image, self.method, self.options


def _images(folder: str, recursive: bool) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        out += [os.path.join(root, f) for f in sorted(files)
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXT)]
    return out


def _stem(path: str, base: str) -> str:
    rel = os.path.relpath(path, base)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def _unique(found: dict, what: str) -> dict:
    dup = {k: v for k, v in found.items() if len(v) > 1}
    if dup:
        k, v = next(iter(dup.items()))
        raise ValueError(f"{len(dup)} {what} name(s) match more than one file, e.g. {k!r}: "
                         f"{', '.join(os.path.basename(p) for p in v)} (one file per name and role)")
    return {k: v[0] for k, v in found.items()}


def _match(noisy: dict, clean: dict, where: str) -> list[Pair]:
    lone_n = sorted(set(noisy) - set(clean))
    lone_c = sorted(set(clean) - set(noisy))
    if lone_n or lone_c:
        parts = []
        if lone_n:
            parts.append(f"{len(lone_n)} noisy file(s) without a clean partner (e.g. {noisy[lone_n[0]]!r})")
        if lone_c:
            parts.append(f"{len(lone_c)} clean file(s) without a noisy partner (e.g. {clean[lone_c[0]]!r})")
        raise ValueError(f"unpaired files in {where}: {'; '.join(parts)}")
    if not noisy:
        raise ValueError(f"no noisy/clean image pairs in {where} (layouts: DIR/noisy/NAME + DIR/clean/NAME, or "
                         f"NAME_noisy.EXT + NAME_clean.EXT; image files: {', '.join(IMAGE_EXT)})")
    return [Pair(k, noisy[k], clean[k]) for k in sorted(noisy)]


def find_pairs(root, recursive: bool = True) -> list[Pair]:
    """The noisy/clean pairs under ``root`` in one of the layouts of the module docstring, sorted by name.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no pairs, an unpaired file, or two files for one name and role (the message names them).
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"pairs folder does not exist: {root!r}")
    nd = os.path.join(root, "noisy")
    if os.path.isdir(nd):
        cds = [os.path.join(root, d) for d in CLEAN_DIRS if os.path.isdir(os.path.join(root, d))]
        cds = list(dict.fromkeys(os.path.realpath(d) for d in cds))   # 'gt' and 'GT' on a case-blind disk
        if len(cds) != 1:
            raise ValueError(f"{root!r} has a noisy/ folder and {len(cds)} clean folders (need exactly one of "
                             f"{', '.join(CLEAN_DIRS)})")
        found_n: dict = {}
        found_c: dict = {}
        for p in _images(nd, recursive):
            found_n.setdefault(_stem(p, nd).lower(), []).append(p)
        for p in _images(cds[0], recursive):
            found_c.setdefault(_stem(p, cds[0]).lower(), []).append(p)
        pairs = _match(_unique(found_n, "noisy"), _unique(found_c, "clean"), root)
        return [Pair(_stem(p.noisy, nd), p.noisy, p.clean) for p in pairs]
    found_n, found_c, names = {}, {}, {}
    for p in _images(root, recursive):
        stem = _stem(p, root)
        head, _, base = stem.rpartition("/")
        roles = list(_ROLE.finditer(base))
        if len(roles) != 1:
            continue                     # not a pair file (no role word, or an ambiguous name)
        m = roles[0]
        a, b = (m.start() - 1, m.end()) if m.start() > 0 else (m.start(), m.end() + 1)
        name = (head + "/" if head else "") + base[:a] + base[b:]
        noisy = m.group(1).lower() == "noisy"
        (found_n if noisy else found_c).setdefault(name.lower(), []).append(p)
        if noisy:
            names[name.lower()] = name
    pairs = _match(_unique(found_n, "noisy"), _unique(found_c, "clean"), root)
    return [Pair(names[p.name], p.noisy, p.clean) for p in pairs]


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, clean)`` of ``pair`` as float32 (H, W, C) arrays on [0, 1]; ValueError naming the files when
    either cannot be read or their shapes differ."""
    from fastdenoise.io import read_image

    noisy, _ = read_image(pair.noisy)
    clean, _ = read_image(pair.clean)
    if noisy.shape != clean.shape:
        raise ValueError(f"pair {pair.name!r}: noisy {pair.noisy!r} is {noisy.shape} (H, W, C) but clean "
                         f"{pair.clean!r} is {clean.shape}")
    return noisy, clean


def _score(pred: np.ndarray, clean: np.ndarray, convention: str) -> tuple[float, float]:
    from fastdenoise.metrics import psnr
    from fastdenoise.metrics import ssim

    return float(psnr(pred, clean, convention=convention)[0]), float(ssim(pred, clean, convention=convention)[0])


def bm3d_estimated(noisy: np.ndarray) -> np.ndarray | None:
    """BM3D (the ``bm3d`` package) told the noise std that scikit-image's wavelet estimator reads from the image
    (the mean over channels), as a user without a noise model would run it. (H, W, 1 or 3) float on [0, 1]
    in and out; None when ``bm3d`` is not installed."""
    import importlib.util

    if importlib.util.find_spec("bm3d") is None:
        return None
    if not hasattr(np, "trapz"):    # bm4d 4.x (under bm3d) calls np.trapz; numpy 2 renamed it
        np.trapz = np.trapezoid
    import bm3d
    from skimage.restoration import estimate_sigma

    z = noisy.astype(np.float64)
    sigma = float(np.mean(estimate_sigma(z, channel_axis=-1)))
    if z.shape[-1] == 3:
        return np.asarray(bm3d.bm3d_rgb(z, sigma), dtype=np.float32)
    return np.asarray(bm3d.bm3d(z[..., 0], sigma), dtype=np.float32)[..., None]


def _options_text(options: dict) -> str:
    return ",".join(f"{k}={options[k]}" for k in sorted(options))


def evaluate_pairs(pairs, methods=("p2n",), *, iters: int | None = None, seed: int = 0, device: str = "auto",
                   baselines=BASELINES, options: dict | None = None, convention: str = "p2n",
                   curve: tuple[int, ...] = (), progress=print, done=None, on_row=None) -> list[PairRow]:
    """Rows ``(image, method, PSNR, SSIM, iterations, seconds)`` of ``methods`` on the noisy/clean ``pairs``
    (``seconds``: the training loop; ``info["wall_s"]``: the whole ``denoise`` call).

    Args:
        pairs: a folder (:func:`find_pairs`) or a list of :class:`Pair`.
        methods: method names (:func:`fastdenoise.methods.available`), each run through
            :func:`fastdenoise.denoise` with its defaults, ``iters`` and ``options``.
        iters: iterations (None: each method's default; 0: its shipped start alone).
        seed: the seed of every fit.
        baselines: rows of :data:`BASELINES` to add (those whose package is missing are left out).
        options: further :func:`fastdenoise.denoise` options for every method (recorded in the row).
        convention: the PSNR/SSIM convention (:data:`fastdenoise.metrics.CONVENTIONS`; default the papers').
        curve: iteration counts at which to record the PSNR of each fit too (the row's ``info["curve"]``:
            ``[[iteration, PSNR], ...]`` of the output the method would return if it stopped there, for
            methods whose result is an estimate updated every iteration).
        progress: called with a line per new row (None: quiet).
        done: rows already computed (same image, method and options are kept, not recomputed).
        on_row: called with each new row as soon as it exists (to append it to a file).
    """
    from fastdenoise.api import clear_cache
    from fastdenoise.api import denoise
    from fastdenoise.evaluate import emit_row
    from fastdenoise.methods import available

    pairs = find_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else list(pairs)
    known = available()
    bad = [m for m in methods if m not in known]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; available: {', '.join(known)}")
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; available: {', '.join(BASELINES)}")
    options = dict(options or {})
    opt_text = _options_text(dict(options, **({} if iters is None else {"iters": iters})))
    have = {r.key: r for r in (done or [])}
    rows: list[PairRow] = []

    def emit(key, make):
        emit_row(key, make, have, rows, on_row, progress, " ".join(k for k in key if k))

    for pair in pairs:
        loaded = []

        def data():
            if not loaded:
                loaded.extend(load_pair(pair))
            return loaded

        for b in baselines:
            def base_row(b=b):
                noisy, clean = data()
                t0 = time.perf_counter()
                if b == "noisy":
                    out = noisy
                elif b == "wavelet":
                    from fastdenoise.evaluate import wavelet_jinv

                    out = wavelet_jinv(noisy) if noisy.shape[-1] in (1, 3) else None
                else:
                    out = bm3d_estimated(noisy) if noisy.shape[-1] in (1, 3) else None
                if out is None:
                    return None
                secs = None if b == "noisy" else time.perf_counter() - t0
                return PairRow(pair.name, b, *_score(out, clean, convention), seconds=secs)

            emit((pair.name, b, ""), base_row)
        for m in methods:
            def method_row(m=m):
                noisy, clean = data()
                kw = dict(options)
                if curve:
                    kw["log_every"] = 1
                t0 = time.perf_counter()
                out, info = denoise(noisy, method=m, iters=iters, seed=seed, device=device, return_info=True,
                                    clean=clean if curve else None, **kw)
                keep = {k: info[k] for k in ("init", "pd", "blend", "noise", "guard_stop") if k in info}
                keep["wall_s"] = round(time.perf_counter() - t0, 3)      # the whole call: fit and inference
                if curve:
                    logged = dict(info.get("psnr", []))
                    keep["curve"] = [[t, round(logged[t - 1], 3)] for t in curve if t - 1 in logged]
                clear_cache()
                return PairRow(pair.name, m, *_score(out, clean, convention), iters=info["iters"],
                               seconds=info["seconds"], options=opt_text, info=keep)

            emit((pair.name, m, opt_text), method_row)
    return rows


def summarize(rows: list[PairRow]) -> list[dict]:
    """Per (method, options): the mean PSNR and SSIM, the gain over the noisy rows of the same images, the
    images counted, and on how many of them the method beats the noisy input."""
    noisy = {r.image: r.psnr for r in rows if r.method == "noisy"}
    out = []
    for key in dict.fromkeys((r.method, r.options) for r in rows):
        sel = [r for r in rows if (r.method, r.options) == key]
        d = {"method": key[0], "options": key[1], "images": len(sel),
             "psnr": round(float(np.mean([r.psnr for r in sel])), 3),
             "ssim": round(float(np.mean([r.ssim for r in sel])), 4)}
        base = [noisy[r.image] for r in sel if r.image in noisy]
        if len(base) == len(sel) and key[0] != "noisy":
            d["gain"] = round(d["psnr"] - float(np.mean(base)), 3)
            d["better_than_noisy"] = sum(r.psnr > noisy[r.image] for r in sel)
        secs = [r.seconds for r in sel if r.seconds is not None]
        if secs:
            d["seconds"] = round(float(np.mean(secs)), 2)
        out.append(d)
    return out


def format_pairs(rows: list[PairRow], per_image: bool = True) -> str:
    """Markdown: the per-image rows (optional) and the means of :func:`summarize`."""
    out = []
    if per_image:
        out += ["| image | method | options | iters | PSNR dB | SSIM | fit time s |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r.image} | {r.method} | {r.options or '–'} | {'–' if r.iters is None else r.iters} | "
                       f"{r.psnr:.2f} | {r.ssim:.4f} | {'–' if r.seconds is None else format(r.seconds, '.1f')} |")
        out.append("")
    out += ["| method | options | images | mean PSNR dB | mean SSIM | gain over noisy dB | better than noisy | "
            "mean fit time s |", "|---|---|---|---|---|---|---|---|"]
    for d in summarize(rows):
        gain = f"{d['gain']:+.2f}" if "gain" in d else "–"
        better = f"{d['better_than_noisy']}/{d['images']}" if "better_than_noisy" in d else "–"
        out.append(f"| {d['method']} | {d['options'] or '–'} | {d['images']} | {d['psnr']:.2f} | {d['ssim']:.4f} | "
                   f"{gain} | {better} | {d.get('seconds', '–')} |")
    return "\n".join(out)


def rows_to_json(rows: list[PairRow]) -> list[dict]:
    return [dataclasses.asdict(r) for r in rows]


def rows_from_json(items: list[dict]) -> list[PairRow]:
    return [PairRow(**{k: v for k, v in d.items() if k in PairRow.__dataclass_fields__}) for d in items]
