"""The library's one conversion between images (NumPy channels-last or torch channels-first, with or without a
batch axis) and (B, C, H, W) tensors: :func:`as_bchw` / :func:`from_bchw`, and the (1, C, H, W) float
shorthands :func:`to_tensor` / :func:`from_tensor`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Layout:
    """How an image was laid out before :func:`as_bchw` (what :func:`from_bchw` restores)."""

    kind: str              # "numpy" or "torch"
    ndim: int
    device: object = None


def as_bchw(name: str, image) -> tuple[torch.Tensor, Layout]:
    """The one image -> tensor conversion: a (B, C, H, W) tensor view of ``image`` (dtype kept) and its layout.

    ``image`` is a NumPy array (H, W), (H, W, C) or (B, H, W, C) (channels last, as images are stored) or
    a torch tensor (H, W), (C, H, W) or (B, C, H, W) (channels first, as networks take them). Errors name
    the argument ``name``.
    """
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3, 4):
            raise ValueError(f"{name} must be a NumPy array of shape (H, W), (H, W, C) or (B, H, W, C), "
                             f"got shape {image.shape}")
        a = image[None, :, :, None] if image.ndim == 2 else image[None] if image.ndim == 3 else image
        # a channels-first copy with standard strides (reductions then see the usual memory order)
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))), Layout("numpy", image.ndim)
    if isinstance(image, torch.Tensor):
        if image.dim() not in (2, 3, 4):
            raise ValueError(f"{name} must be a tensor of shape (B, C, H, W), (C, H, W) or (H, W), "
                             f"got shape {tuple(image.shape)}")
        t = image[None, None] if image.dim() == 2 else image[None] if image.dim() == 3 else image
        return t, Layout("torch", image.dim(), image.device)
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(image).__name__}")


def from_bchw(t: torch.Tensor, layout: Layout):
    """Inverse of :func:`as_bchw`: the (B, C, H, W) tensor ``t`` in the original kind and shape (dtype kept)."""
    if layout.kind == "torch":
        out = t[0, 0] if layout.ndim == 2 else t[0] if layout.ndim == 3 else t
        return out.to(layout.device)
    a = t.detach().cpu().permute(0, 2, 3, 1).numpy()
    a = a[0, :, :, 0] if layout.ndim == 2 else a[0] if layout.ndim == 3 else a
    return np.ascontiguousarray(a)


def to_tensor(img, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> contiguous (1, C, H, W) tensor."""
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"img must have shape (H, W) or (H, W, C), got {arr.shape}")
    return as_bchw("img", arr)[0].to(device=device, dtype=dtype).contiguous()


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> float32 (H, W, C) array (detached, on the CPU)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 4 and t.shape[0] != 1:
        raise ValueError(f"t must hold one image (batch size 1), got shape {tuple(t.shape)}")
    if t.dim() not in (3, 4):
        raise ValueError(f"t must have shape (1, C, H, W) or (C, H, W), got {tuple(t.shape)}")
    return from_bchw(t.detach().to("cpu", torch.float32).reshape(1, *t.shape[-3:]), Layout("numpy", 3))
