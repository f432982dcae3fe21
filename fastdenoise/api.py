"""One-call denoising: :func:`denoise`.

Trainers are cached per (method, device, channels, weights, options), so denoising many images
re-initialises one model in place instead of rebuilding it. The seed is per call (it is not part of the
cache key): a cached trainer re-draws its initial weights for a new seed, so it gives the same result as a
freshly built one.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from fastdenoise.io import as_bchw
from fastdenoise.io import from_bchw
from fastdenoise.methods import get_builder
from fastdenoise.engine import resolve_device

__all__ = ["denoise", "denoise_many", "clear_cache", "get_trainer", "trainers_for", "check_finite"]

_CACHE: dict = {}


def clear_cache() -> None:
    """Drop the cached trainers (frees their models and optimiser state)."""
    _CACHE.clear()


def _to_float(name: str, image) -> tuple[torch.Tensor, object, object]:
    """Any supported input -> float32 (B, C, H, W) CPU tensor on [0, 1], its layout and its dtype."""
    if isinstance(image, np.ndarray) and image.ndim == 4:
        raise ValueError(f"{name} array must be (H, W) or (H, W, C), got shape {image.shape}")
    t, layout = as_bchw(name, image if isinstance(image, torch.Tensor) else np.asarray(image))
    dtype = t.dtype
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    if dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        raise TypeError(f"{name} must be uint8 or float on [0, 1], got dtype {dtype}")
    t = t.detach().float().cpu()
    check_finite(name, t)
    return t, layout, image.dtype if isinstance(image, np.ndarray) else dtype


def check_finite(name: str, t: torch.Tensor) -> None:
    """ValueError naming ``name`` when ``t`` holds NaN or infinite values (a fit would spread them everywhere)."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan = int(torch.isnan(t).sum())
        raise ValueError(f"{name} has {n_nan} NaN and {int(bad.sum()) - n_nan} infinite value(s) out of "
                         f"{t.numel()}: refusing to denoise it (fix or mask them first)")


def assemble(outs: list, x: torch.Tensor, c: int, alpha: bool, method: str, layout, dtype):
    """The denoised channel groups ``outs`` (plus the untouched alpha of ``x`` after channel ``c``) as one
    image in the input's kind, shape and dtype; a diverged fit (NaN/Inf) raises instead of returning."""
    if alpha:
        outs = [*outs, x[:, c:]]
    out = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
    if not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"{method} produced NaN/infinite values (the fit diverged); try a lower lr or --iters")
    return _from_float(out, layout, dtype)


def _from_float(t: torch.Tensor, layout, dtype):
    """The denoised float tensor back in the input's kind, shape and dtype (uint8 rounded; NumPy floats
    clipped to [0, 1])."""
    if dtype in (torch.uint8, np.uint8):
        t = torch.floor(t.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return from_bchw(t, layout)
    if layout.kind == "torch":
        return from_bchw(t.to(dtype), layout)
    out = from_bchw(t.float().clamp(0, 1), layout)
    return out.astype(dtype if dtype != np.float16 else np.float32)


def get_trainer(method: str, *, device="auto", in_ch: int = 3, weights: str | None = None, **overrides):
    """The cached trainer for ``method`` (built on first use)."""
    dev = resolve_device(device)
    key = (method, str(dev), in_ch, weights, tuple(sorted(overrides.items())))
    tr = _CACHE.get(key)
    if tr is None:
        kw = dict(overrides, device=str(dev))
        if weights is not None:
            kw["weights"] = weights
        tr = get_builder(method)(in_ch=in_ch, **kw)
        _CACHE[key] = tr
    return tr


def trainers_for(method: str, channels: int, *, device="auto", weights: str | None = None, **overrides) -> list:
    """``[(first channel, count, trainer)]`` covering ``channels`` channels: one trainer for all of them, or,
    when the method's start cannot take that many (the starts take 1 or 3 channels), RGB triples then single
    channels, each fitted separately with the same seed (the engine's grayscale policy,
    :mod:`fastdenoise.engine.starts`)."""
    try:
        return [(0, channels, get_trainer(method, device=device, in_ch=channels, weights=weights, **overrides))]
    except ValueError as e:
        if channels in (1, 3):
            raise
        first = e
    groups, i = [], 0
    while i < channels:
        k = 3 if channels - i >= 3 else 1
        try:
            groups.append((i, k, get_trainer(method, device=device, in_ch=k, weights=weights, **overrides)))
        except ValueError:
            raise first from None
        i += k
    return groups


def denoise(image, method: str = "p2n", iters: int | None = None, seed: int = 0, device: str = "auto",
            weights: str | None = None, clean=None, return_info: bool = False, alpha: bool = False,
            pd: int | str = "auto", blend: float | str = "auto", **options):
    """Denoise one image with a self-supervised method fitted to the image itself.

    Args:
        image: NumPy (H, W) / (H, W, C) array, float on [0, 1] or uint8; or a torch tensor (H, W),
            (C, H, W) or (B, C, H, W) (float on [0, 1] or uint8).
        method: one of :func:`fastdenoise.methods.available` (``"p2n"`` default, ``"nb2nb"``,
            ``"noise2same"``, ``"apr"``, ``"blind2grad"``, ``"zsn2n"``).
        iters: training iterations (None: the method's default; 0 for P2N = the pretrained net alone).
        seed: seed of every random draw of this call (initial weights, crops, masks; same seed, same result
            on one machine and backend, whether the trainer is cached or new).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        weights: initial weights file (default: the method's shipped start, see ``init`` in **options).
        clean: optional clean reference (same kind and shape) for PSNR logging.
        return_info: also return a dict (losses, psnr log, iterations, seconds, method, device, ``init``
            (what each network started from: a weights file name or ``"scratch"``), and the
            memory plan: ``crop``/``batch`` when the image was fitted on crops, ``tile`` when it was denoised
            in tiles).
        alpha: the last channel is alpha (RGBA, gray + alpha): it is returned unchanged, the others denoised.
        pd: pixel-shuffle downsampling stride, the remedy for noise shared between neighbouring pixels (real
            camera photos: demosaicing and in-camera processing spread each pixel's noise over its
            neighbours; the methods assume pixel-independent noise and take such noise for image detail).
            ``pd=s`` splits the image into its s*s sub-images of every s-th pixel, where neighbours are s
            pixels apart and share little noise, fits one network to the s*s sub-images together (a batch),
            denoises them and puts the pixels back. ``"auto"`` (default): 2 where the image's noise is
            spatially correlated (:func:`fastdenoise.noise.estimate_noise`: its ``correlation`` above 0.5, e.g.
            every SIDD phone photo), else 1 (white noise keeps its detail), and 1 for images under 64
            pixels a side. 1: off. ``info["pd"]`` says which stride ran, ``info["noise"]`` what the estimate read.
        blend: how much of the method's estimate ``d`` to keep: the result is ``y + blend * (d - y)`` for the
            noisy input ``y``. ``"auto"`` (default): ``min(1, 2 * sigma^2 / mean((y - d)^2))`` with ``sigma``
            the estimated noise std (:func:`fastdenoise.noise.estimate_noise`): 1 (the estimate unchanged)
            unless the method removed more than twice the noise energy the image holds, i.e. removed image
            detail (a start trained on strong noise given a nearly clean photo); then the blend is the
            first-order minimiser of the error ``sigma^2 / mean((y - d)^2)`` (doubled, for the estimate's bias),
            so a nearly clean photo comes back nearly unchanged. A number on [0, 1] sets it; 1: off.
            ``info["blend"]`` says which blend was used.
        **options: further fields of the method's config (e.g. ``init="scratch"`` for random initial
            weights instead of the shipped start, ``ema=0.95``, ``reference=True``,
            ``max_memory="4G"``, ``progress=True``).

    Any number of channels works with every method; a method whose network cannot take them all (P2N's
    RGB-pretrained start) fits RGB triples and single channels separately. Images larger than the memory
    budget (``max_memory``, default half the free memory) are fitted on crops and denoised in overlapping,
    blended tiles; NaN or infinite values raise ValueError.

    Returns:
        The denoised image, of the same kind, shape and dtype as ``image`` (NumPy float outputs are
        clipped to [0, 1]; uint8 outputs rounded); with ``return_info`` a tuple ``(image, info)``.

    Example:
        >>> out = fastdenoise.denoise(noisy_uint8)            # P2N, 100 iterations
    """
    x, layout, dtype = _to_float("image", image)
    ref = None
    if clean is not None:
        ref, _, _ = _to_float("clean", clean)
        if ref.shape != x.shape:
            raise ValueError(f"clean must have the shape of image {tuple(x.shape)}, got {tuple(ref.shape)}")
    c = x.shape[1] - int(bool(alpha))
    if c < 1:
        raise ValueError(f"alpha=True needs at least 2 channels, got {x.shape[1]}")
    est = None
    if pd == "auto" or blend == "auto":
        from fastdenoise.noise.estimate import estimate_noise

        est = estimate_noise(x[:1, :c]) if min(x.shape[-2:]) >= 8 else None
    if pd == "auto":
        pd = est.pd if est is not None and min(x.shape[-2:]) >= AUTO_PD_MIN_SIDE else 1
    elif isinstance(pd, bool) or not isinstance(pd, (int, np.integer)) or pd < 1:
        raise ValueError(f"pd must be an integer >= 1 (1: no pixel-shuffle downsampling) or 'auto', got {pd!r}")
    pd = int(pd)
    if pd > 1 and min(x.shape[-2:]) < 2 * pd:
        raise ValueError(f"pd={pd} needs an image of at least {2 * pd} pixels a side, got {tuple(x.shape[-2:])}")
    if blend != "auto" and (isinstance(blend, bool) or not isinstance(blend, (int, float, np.floating))
                            or not 0 <= blend <= 1):
        raise ValueError(f"blend must be a number on [0, 1] (1: the method's estimate unchanged) or 'auto', "
                         f"got {blend!r}")
    info = {"method": method, "iters": 0, "seconds": 0.0, "losses": [], "psnr": [], "plan": {}, "pd": pd}
    if est is not None:
        info["noise"] = est.as_dict()
    outs = []
    for i, k, tr in trainers_for(method, c, device=device, weights=weights, **options):
        part = x[:, i:i + k]
        pref = None if ref is None else ref[:, i:i + k]
        if pd == 1:
            outs.append(_fit(tr, part, pref, iters, seed, info))
            continue
        subs = pd_split(part, pd)
        den = _fit(tr, subs, None if pref is None else pd_split(pref, pd), iters, seed, info)
        outs.append(pd_merge(den, pd, part.shape))
    den = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
    lam = 1.0
    if blend == "auto":
        if est is not None:
            lam = auto_blend(x[:, :c], den, est)
    else:
        lam = float(blend)
    if lam < 1.0:
        den = x[:, :c] + lam * (den - x[:, :c])
    info["blend"] = round(lam, 4)
    result = assemble([den], x, c, alpha, method, layout, dtype)
    return (result, info) if return_info else result


AUTO_PD_MIN_SIDE = 64
"""``pd="auto"`` keeps stride 1 for images smaller than this on a side (the sub-images would be under 32)."""
BLEND_MARGIN = 2.0
"""``blend="auto"`` keeps the whole estimate while it removed at most this times the estimated noise energy."""


def auto_blend(y: torch.Tensor, den: torch.Tensor, est) -> float:
    """The ``blend="auto"`` weight of :func:`denoise`: ``min(1, BLEND_MARGIN * sigma^2 / mean((y - den)^2))``.

    For a denoiser ``d`` of ``y = x + n`` the weight minimising ``|y + w (d - y) - x|^2`` is
    ``<y - x, y - d> / |y - d|^2``, which is ``sigma^2 / mean((y - d)^2)`` to first order (when ``d`` depends
    little on each pixel's own noise): 1 when ``d`` removed just the noise, small when it also removed detail.
    ``BLEND_MARGIN`` makes up for the estimated ``sigma`` reading low (0.92 of the true std on real photos)
    so that a denoiser that removed only noise keeps weight 1."""
    r = float((y.double() - den.double()).pow(2).mean())
    s2 = float(np.mean(np.square(est.sigma)))
    if r <= 0.0:
        return 1.0
    return float(min(1.0, BLEND_MARGIN * s2 / r))


def pd_split(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * s * s, C, ceil(H / s), ceil(W / s)): the stride-``s`` sub-images of each image (offsets
    (i, j) in row-major order, batch-major), the image first reflected to a multiple of ``s`` when ``s`` does
    not divide its size."""
    b, c, h, w = x.shape
    ph, pw = -h % s, -w % s
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    sub = torch.nn.functional.pixel_unshuffle(x, s)                    # (B, C*s*s, H/s, W/s)
    hs, ws = sub.shape[-2:]
    return sub.view(b, c, s * s, hs, ws).transpose(1, 2).reshape(b * s * s, c, hs, ws).contiguous()


def pd_merge(sub: torch.Tensor, s: int, shape) -> torch.Tensor:
    """The inverse of :func:`pd_split` for an image batch of ``shape`` (B, C, H, W)."""
    b, c, h, w = shape
    hs, ws = sub.shape[-2:]
    x = sub.reshape(b, s * s, c, hs, ws).transpose(1, 2).reshape(b, c * s * s, hs, ws)
    return torch.nn.functional.pixel_shuffle(x, s)[..., :h, :w].contiguous()


def _fit(tr, x: torch.Tensor, ref, iters, seed: int, info: dict) -> torch.Tensor:
    """One fit of ``tr`` to ``x``; its output (float32, CPU) and its log added to ``info``."""
    res = tr.fit(x, iters=iters, clean=None if ref is None else ref.contiguous(), seed=seed)
    info.update(device=str(tr.device), iters=res.iters, plan=dict(tr.plan),
                init={n: os.path.basename(v) for n, v in tr.init_from.items()})
    info["seconds"] += res.seconds
    info["losses"] += res.losses
    info["psnr"] += res.psnr
    if tr.run.guard_stops:       # the collapse guard kept the start (engine.callbacks.CollapseGuard)
        info["guard_stop"] = tr.run.guard_stops[0]
    return res.best.float().cpu()


def denoise_many(images: list, method: str = "p2n", iters: int | None = None, seed: int = 0,
                 device: str = "auto", weights: str | None = None, return_info: bool = False, **options):
    """Denoise several images of one shape, kind and dtype, each by its own network, fitted together.

    For a method with a batched fit (``Method.batched``, e.g. P2N) the K networks run as one batched network
    (:meth:`fastdenoise.engine.Trainer.fit_many`): a GPU is busy with K images per kernel instead of one.
    Each image's result is statistically, not bitwise, equal to :func:`denoise` of it alone (one seed
    stream for the batch). When the method has no batched fit, the images need crops or tiles to fit
    the memory budget, they have 1 < C != 3 channels, or pixel-shuffle downsampling runs (``pd`` > 1 given, or
    ``pd="auto"`` finding correlated noise in any of them), each image goes through :func:`denoise` instead
    (same result as calling it). Arguments as :func:`denoise` (``blend`` is decided per image).

    Returns:
        A list of denoised images (same kind, shape and dtype as the inputs); with ``return_info`` a
        tuple ``(list, info)`` where ``info["batched"]`` says whether the batched fit ran.
    """
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(f"images must be a non-empty list of images, got {type(images).__name__}")
    xs = [_to_float(f"images[{i}]", im) for i, im in enumerate(images)]
    x0, layout, dtype = xs[0]
    for i, (x, lay, dt) in enumerate(xs[1:], 1):
        if x.shape != x0.shape or dt != dtype or type(images[i]) is not type(images[0]):
            raise ValueError(f"images must share shape, kind and dtype: images[0] is {tuple(x0.shape)} "
                             f"{dtype}, images[{i}] is {tuple(x.shape)} {dt}")
    if x0.shape[0] != 1:
        raise ValueError(f"images must be single images (H, W[, C]), got a batch of {x0.shape[0]} in images[0]")

    pd, blend = options.pop("pd", "auto"), options.pop("blend", "auto")

    def one_by_one():
        res = [denoise(im, method=method, iters=iters, seed=seed, device=device, weights=weights,
                       return_info=True, pd=pd, blend=blend, **options) for im in images]
        return [r[0] for r in res], {"method": method, "batched": False, "iters": res[-1][1]["iters"],
                                     "seconds": sum(r[1]["seconds"] for r in res)}

    c = x0.shape[1]
    from fastdenoise.methods import batched

    ests = None
    if pd == "auto" or blend == "auto":
        from fastdenoise.noise.estimate import estimate_noise

        ests = [estimate_noise(x) for x, _, _ in xs] if min(x0.shape[-2:]) >= 8 else None
    strided = pd not in ("auto", 1) or (pd == "auto" and ests is not None and min(x0.shape[-2:]) >= AUTO_PD_MIN_SIDE
                                        and any(e.pd > 1 for e in ests))
    if len(images) == 1 or not batched(method) or c not in (1, 3) or options.get("alpha") or strided:
        outs, info = one_by_one()
        return (outs, info) if return_info else outs
    import time

    tr = get_trainer(method, device=device, in_ch=c, weights=weights, **options)
    batch = torch.cat([x for x, _, _ in xs])
    prepared = tr.method.prepare(batch)[0]
    if tr.memory_plan(prepared, lambda t: prepared) or tr.infer_tile(prepared) is not None:
        outs, info = one_by_one()                       # over the budget together: one at a time (tiled)
        return (outs, info) if return_info else outs
    t0 = time.perf_counter()
    out = tr.fit_many(batch, iters=iters, seed=seed).best.float().cpu()
    lams = []
    for i, (x, _, _) in enumerate(xs):
        lam = float(blend) if blend != "auto" else (1.0 if ests is None else auto_blend(x, out[i:i + 1], ests[i]))
        if lam < 1.0:
            out[i:i + 1] = x + lam * (out[i:i + 1] - x)
        lams.append(round(lam, 4))
    outs = [assemble([out[i:i + 1]], xs[i][0], c, False, method, layout, dtype) for i in range(len(xs))]
    info = {"method": method, "batched": True, "iters": tr.total_iters(iters), "device": str(tr.device),
            "seconds": time.perf_counter() - t0, "init": {n: os.path.basename(v) for n, v in tr.init_from.items()},
            "pd": 1, "blend": lams}
    stops = tr.batched_trainer.run.guard_stops
    if stops:                    # images whose fit the collapse guard stopped: index -> iteration
        info["guard_stops"] = dict(sorted(stops.items()))
    return (outs, info) if return_info else outs
