"""The optimiser and the learning-rate schedules methods use."""
from __future__ import annotations

import math

import torch

from fastdenoise.engine.config import FitConfig


def make_optimizer(params, cfg: FitConfig, device: torch.device, lr: float | None = None) -> torch.optim.Optimizer:
    """The config's Adam/AdamW over ``params`` (fused single-kernel update on CUDA)."""
    params = list(params)
    name = cfg.optimizer.lower()
    kw = {"lr": cfg.lr if lr is None else lr}
    if device.type == "cuda":
        kw["fused"] = True   # one kernel for the whole parameter update
    if name == "adamw":
        return torch.optim.AdamW(params, weight_decay=cfg.weight_decay, **kw)
    if name == "adam":
        return torch.optim.Adam(params, **kw)
    raise ValueError(f"optimizer must be 'adam' or 'adamw', got {cfg.optimizer!r}")


def staircase_lr(base_lr: float, t: int, every: int, factor: float) -> float:
    """``base_lr * factor ** (t // every)`` (constant when ``every`` <= 0)."""
    return base_lr if every <= 0 else base_lr * factor ** (t // every)


def cosine_lr(base_lr: float, t: int, total: int) -> float:
    """Cosine decay from ``base_lr`` at t=0 to 0 at t=total."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(t, total) / max(1, total)))
