"""Stacks of 2-D images (microscopy Z or T stacks, 3-D TIFF, ``.npy`` volumes): one model for the stack.

:func:`denoise_stack` fits one network to the whole stack in dataset mode (random crops of all its slices,
the method's dataset-mode crop side and batch), then denoises every slice with it. That is the natural use
for a stack: the slices share the noise and the content statistics, so one model trained on all of them
sees N times the data a single-image fit sees, at the cost of one fit instead of N.
"""
from __future__ import annotations

import numpy as np
import torch

from fastdenoise.api import assemble
from fastdenoise.api import check_finite
from fastdenoise.api import trainers_for
from fastdenoise.io import as_bchw

__all__ = ["denoise_stack"]


def denoise_stack(stack, method: str = "p2n", iters: int | None = None, seed: int = 0, device: str = "auto",
                  weights: str | None = None, *, crop: int | None = None, batch: int | None = None,
                  alpha: bool = False, return_info: bool = False, **options):
    """Denoise a stack of 2-D images with one model fitted to all of them (dataset mode).

    Args:
        stack: NumPy (N, H, W, C) array (float on [0, 1] or uint8) or torch (N, C, H, W) tensor.
        method, iters, seed, device, weights, options: as for :func:`fastdenoise.denoise` (``iters``: dataset
            iterations, default the method's single-image default).
        crop, batch: training crops (None: the method's dataset-mode defaults, the crop at most the slice).
        alpha: the last channel is alpha, kept unchanged.
        return_info: also return a dict (method, device, iters, seconds, losses, crop, batch).

    Returns:
        The denoised stack, same kind, shape and dtype as ``stack``; with ``return_info`` ``(stack, info)``.
    """
    if not isinstance(stack, (np.ndarray, torch.Tensor)) or stack.ndim != 4:
        raise ValueError(f"stack must be a (N, H, W, C) array or (N, C, H, W) tensor, got "
                         f"{getattr(stack, 'shape', type(stack).__name__)}")
    x, layout = as_bchw("stack", stack)
    dtype = stack.dtype
    if x.numel() == 0:
        raise ValueError(f"stack must not be empty, got shape {tuple(stack.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise TypeError(f"stack must be uint8 or float on [0, 1], got dtype {x.dtype}")
    x = x.detach().float().cpu()
    check_finite("stack", x)
    n, ch, h, w = x.shape
    c = ch - int(bool(alpha))
    if c < 1:
        raise ValueError(f"alpha=True needs at least 2 channels, got {ch}")
    outs = []
    info = {"method": method, "slices": n, "iters": 0, "seconds": 0.0, "losses": []}
    for i, k, tr in trainers_for(method, c, device=device, weights=weights, **options):
        tr.check_size(x[:1, i:i + k])
        tr.reset(seed)
        res = tr.train_images([x[j, i:i + k] for j in range(n)], crop=crop, batch=batch,
                              iters=tr.total_iters(iters), seed=seed)
        side, b = tr.plan["crop"], tr.plan["batch"]
        outs.append(torch.cat([tr.denoise(x[j:j + 1, i:i + k]).float().cpu() for j in range(n)]))
        info.update(device=str(tr.device), iters=res.iters, crop=side, batch=b)
        info["seconds"] += res.seconds
        info["losses"] += res.losses
    result = assemble(outs, x, c, alpha, method, layout, dtype)
    return (result, info) if return_info else result
