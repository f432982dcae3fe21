"""One-call denoising: :func:`denoise`.

Trainers are cached per (method, device, channels, weights), so denoising many images re-initialises one
model in place instead of rebuilding it.
"""
from __future__ import annotations

import numpy as np
import torch

from fastdenoise.methods import get_builder
from fastdenoise.methods.engine import resolve_device

__all__ = ["denoise", "clear_cache"]

_CACHE: dict = {}


def clear_cache() -> None:
    """Drop the cached trainers (frees their models and optimiser state)."""
    _CACHE.clear()


def _to_bchw(image) -> tuple[torch.Tensor, dict]:
    """Any supported input -> float32 (B, C, H, W) tensor on [0, 1] and what is needed to convert back."""
    if isinstance(image, torch.Tensor):
        meta = {"kind": "torch", "dtype": image.dtype, "device": image.device, "ndim": image.dim()}
        t = image.detach()
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        elif t.dim() != 4:
            raise ValueError(f"image tensor must be (H, W), (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        return t.float().cpu(), meta
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"image array must be (H, W) or (H, W, C), got shape {arr.shape}")
    meta = {"kind": "numpy", "dtype": arr.dtype, "ndim": arr.ndim}
    if arr.dtype == np.uint8:
        a = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32)
    else:
        raise TypeError(f"image array must be uint8 or float on [0, 1], got dtype {arr.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None], meta


def _from_bchw(t: torch.Tensor, meta: dict):
    if meta["kind"] == "torch":
        out = t
        if meta["ndim"] == 2:
            out = out[0, 0]
        elif meta["ndim"] == 3:
            out = out[0]
        if meta["dtype"] == torch.uint8:
            return torch.floor(out.clamp(0, 1) * 255 + 0.5).to(torch.uint8).to(meta["device"])
        return out.to(meta["device"], meta["dtype"])
    a = t[0].detach().cpu().float().numpy().transpose(1, 2, 0)
    if meta["ndim"] == 2:
        a = a[:, :, 0]
    if meta["dtype"] == np.uint8:
        return np.floor(np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.clip(a, 0, 1).astype(meta["dtype"] if meta["dtype"] != np.float16 else np.float32)


def get_trainer(method: str, *, device="auto", in_ch: int = 3, weights: str | None = None, seed: int = 0,
                **overrides):
    """The cached trainer for ``method`` (built on first use; its config seed is updated on reuse)."""
    dev = resolve_device(device)
    key = (method, str(dev), in_ch, weights, tuple(sorted(overrides.items())))
    tr = _CACHE.get(key)
    if tr is None:
        build = get_builder(method)
        kw = dict(overrides, device=str(dev), seed=seed)
        if weights is not None:
            kw["weights"] = weights
        tr = build(in_ch=in_ch, **kw)
        _CACHE[key] = tr
    tr.cfg.seed = seed
    return tr


def denoise(image, method: str = "p2n", iters: int | None = None, seed: int = 0, device: str = "auto",
            weights: str | None = None, clean=None, return_info: bool = False, **options):
    """Denoise one image with a self-supervised method fitted to the image itself.

    Args:
        image: NumPy (H, W) / (H, W, C) array, float on [0, 1] or uint8; or a torch tensor (H, W),
            (C, H, W) or (B, C, H, W) (float on [0, 1] or uint8).
        method: ``"p2n"`` (default), ``"nb2nb"``, ``"noise2same"``, ``"apr"`` or ``"blind2grad"``; see
            :func:`fastdenoise.methods.available`.
        iters: training iterations (None: the method's default; 0 for P2N = the pretrained net alone).
        seed: seed of every random draw (same seed, same result on one machine and backend).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        weights: initial weights file (P2N default: the shipped Gaussian-pretrained U-Net).
        clean: optional clean reference (same kind and shape) for PSNR logging.
        return_info: also return a dict (losses, psnr log, iterations, seconds, method, device).
        **options: further fields of the method's config (e.g. ``ema=0.95``, ``reference=True``).

    Returns:
        The denoised image, of the same kind, shape and dtype as ``image`` (NumPy float outputs are
        clipped to [0, 1]; uint8 outputs rounded); with ``return_info`` a tuple ``(image, info)``.

    Example:
        >>> out = fastdenoise.denoise(noisy_uint8)            # P2N, 100 iterations
    """
    x, meta = _to_bchw(image)
    c = x.shape[1]
    # the Gaussian-pretrained P2N net is RGB: replicate grayscale, average the output back
    rgb_trick = method == "p2n" and c == 1 and options.get("init", "gaussian_pretrained") != "scratch"
    if rgb_trick:
        x = x.expand(-1, 3, -1, -1).contiguous()
    tr = get_trainer(method, device=device, in_ch=x.shape[1], weights=weights, seed=seed, **options)
    ref = None
    if clean is not None:
        ref, _ = _to_bchw(clean)
        if rgb_trick:
            ref = ref.expand(-1, 3, -1, -1)
    res = tr.fit(x, iters=iters, clean=ref)
    out = res.best.float().cpu()
    if rgb_trick:
        out = out.mean(dim=1, keepdim=True)
    result = _from_bchw(out, meta)
    if not return_info:
        return result
    info = {"method": method, "device": str(tr.device), "iters": res.iters, "seconds": res.seconds,
            "losses": res.losses, "psnr": res.psnr}
    return result, info
