"""Neighbor2Neighbor (Nb2Nb, CVPR 2021) on the fused ops (METHODS.md section 3).

Per iteration:

1. ``f(y)`` under ``no_grad`` (the regulariser's stop-gradient);
2. ``g1(y)`` from the fused neighbour sub-sampler (:func:`fastdenoise.functional.neighbor_subsample`);
3. ``out = f(g1(y))``;
4. ``L = mean((out - g2 y)^2) + lambda_t mean((out - g2 y - (g1 f(y) - g2 f(y)))^2)`` with the fused
   :func:`~fastdenoise.functional.nb2nb_loss` (same seed, so the same cells; nothing else materialised);
   lambda ramps per iteration, ``lambda_t = gamma (t + 1) / T`` with gamma = 2 (sRGB; 1 for raw);
6. Adam lr 3e-4.

Network: :class:`~fastdenoise.models.unet_nb2nb.UNetNb2Nb` (1.26M params; UNetN2N if that module is
missing). There is no official single-image setting ([DECISION] in METHODS 3.4); the default number of
iterations is **2000 on CUDA** (the 2-5k range of METHODS 3.4, a few seconds on a GPU) and **200 on the
CPU** (a few minutes per 256x256 image on two idle cores; pass ``iters`` for more quality). Nb2Nb assumes
pixel-independent noise: it does poorly on spatially correlated (real sRGB) noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdenoise.methods.engine import FitConfig
from fastdenoise.methods.engine import FitResult
from fastdenoise.methods.engine import Trainer
from fastdenoise.methods.engine import crop_sampler

CUDA_ITERS = 2000
CPU_ITERS = 200


@dataclass
class Nb2NbConfig(FitConfig):
    """Nb2Nb defaults. Extra fields:

    Attributes:
        gamma: final regulariser weight (2 for sRGB, 1 for raw).
        ramp: ramp lambda linearly per iteration to ``gamma`` (False: constant ``gamma``).
        weights: optional initial weights (a state dict or trainer checkpoint of the network).
    """

    iters: int | None = None  # None: 2000 on CUDA, 200 on the CPU
    lr: float = 3e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    gamma: float = 2.0
    ramp: bool = True
    weights: str | None = None


class Nb2Nb:
    """The Nb2Nb step; stateless apart from its config."""

    name = "nb2nb"

    def __init__(self, config: Nb2NbConfig):
        self.cfg = config

    def default_iters(self, device: torch.device) -> int:
        return CUDA_ITERS if device.type == "cuda" else CPU_ITERS

    def step(self, tr: Trainer, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        be = tr.backend
        with torch.no_grad():
            fy = tr.net(y).float()
        g1, _ = F.neighbor_subsample(y, seed, backend=be)
        out = tr.net(g1).float()
        lam = self.cfg.gamma * (t + 1) / max(1, total) if self.cfg.ramp else self.cfg.gamma
        loss = F.nb2nb_loss(out, y, fy, seed, lam, backend=be)
        return loss, fy


def make_model(in_ch: int = 3) -> torch.nn.Module:
    """The Nb2Nb U-Net (UNetN2N as a stand-in if ``fastdenoise.models.unet_nb2nb`` is missing)."""
    try:
        from fastdenoise.models.unet_nb2nb import UNetNb2Nb

        return UNetNb2Nb(in_ch, in_ch)
    except ImportError:
        from fastdenoise.models.unet_n2n import UNetN2N

        return UNetN2N(in_ch)


def build(config: Nb2NbConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
          **overrides) -> Trainer:
    """A :class:`Trainer` for Nb2Nb (a fresh network seeded by ``config.seed``, or ``model``)."""
    cfg = config or Nb2NbConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    if model is None:
        torch.manual_seed(cfg.seed)
        model = make_model(in_ch)
        if cfg.weights:
            from fastdenoise.methods.p2n import load_weights

            model.load_state_dict(load_weights(cfg.weights))
    return Trainer(model, Nb2Nb(cfg), cfg)


def fit(y: torch.Tensor, config: Nb2NbConfig | None = None, *, clean: torch.Tensor | None = None,
        trainer: Trainer | None = None, **overrides) -> FitResult:
    """Single-image mode: fit Nb2Nb to ``y`` (B, C, H, W) on [0, 1] and return the result."""
    tr = trainer or build(config, in_ch=y.shape[-3], **overrides)
    return tr.fit(y, clean=clean)


def train(images: list, config: Nb2NbConfig | None = None, *, crop: int = 128, batch: int = 4,
          iters: int | None = None, trainer: Trainer | None = None, **overrides) -> Trainer:
    """Dataset mode: train on random crops of ``images`` ((C, H, W) tensors); return the trainer."""
    tr = trainer or build(config, in_ch=int(torch.as_tensor(images[0]).shape[0]), **overrides)
    tr.fit_dataset(crop_sampler(images, crop, batch, tr.cfg.seed), iters=iters)
    return tr
