"""Noise2Same (NeurIPS 2020) on the fused ops.

Per iteration, on a batch of standardised crops ``x`` (B, C, h, w):

1. ``x_J, M = stratified_mask(x, seed)``: one masked pixel per 14x14 box and channel (0.5 %), replaced
   by N(0, 0.2) values in standardised units (``mask_replace="donut"`` for the local-mean variant);
2. ``raw = f(x)`` and ``masked = f(x_J)``, **two separate forward passes** (the U-Net has BatchNorm:
   each pass uses its own batch statistics, as in the official code), both with gradients;
3. ``L = mean((raw - x)^2) + lam * sqrt(sum(M (raw - masked)^2) / sum(M))`` with the fused
   :func:`~fastdenoise.functional.noise2same_loss`, lam = 2;
4. Adam, lr 4e-4, staircase decay x0.5 every 5k iterations (``lr_at``: the engine sets it from the
   iteration index, so a resumed run gets the same schedule).

[DECISION]: every image is standardised per channel (zero mean, unit population std)
before training and inference, and the output is un-standardised. In single-image (zero-shot) mode
the network trains on random crops of the one standardised image with a random dihedral transform
(rot90 x flip) per crop (a [DECISION]); the same sampler serves dataset mode.

Inference: one pass on the whole standardised image. With few iterations the BatchNorm running
statistics (TF momentum 0.997) are still far from the data, so by default inference uses the batch
statistics of the image itself (``bn_infer="batch"``, running statistics left untouched);
``bn_infer="running"`` is the upstream eval mode (right after long dataset training).

Defaults per device (``iters``/``crop``/``batch``/``base`` None):

* CUDA: 3000 iterations, 64x64 crops, batch 16, U-Net base 96 (5.6M parameters).
* CPU: a narrower U-Net (base 48, 1.4M parameters; the full network costs about 1 GMAC per pixel).
  From the shipped start (``fastdenoise/weights/noise2same_start.pt``, the default whenever it fits;
  grayscale images get the RGB start folded over the colour channels): **the start alone, 0 iterations,
  with an 8-transform self-ensemble** (``tta=8``); ``iters=N`` fine-tunes on 48x48 crops, batch 4, with a
  weight EMA of decay 0.97 (``weight_ema``). From scratch (``init="scratch"``, or a network the start does
  not fit): 300 iterations.

On CUDA the two passes of a step (same shape, both carrying gradients) are captured as two CUDA graphs.
Measurements: ``docs/methods/noise2same.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import CropTraining
from fastdenoise.engine import method_api
from fastdenoise.engine import staircase_lr
from fastdenoise.ops.noise2same.reference import standardize

CUDA_ITERS, CPU_ITERS = 3000, 300
CPU_ITERS_START, CPU_TTA = 0, 8        # from the shipped start on the CPU: the start alone (module docstring)
CPU_WEIGHT_EMA = 0.97                  # weight EMA of that fine-tune (module docstring)
CUDA_BASE, CPU_BASE = 96, 48
CUDA_CROP, CPU_CROP = 64, 48
CUDA_BATCH, CPU_BATCH = 16, 4

__all__ = ["Noise2SameConfig", "Noise2Same", "build", "fit", "train"]


@dataclass
class Noise2SameConfig(FitConfig):
    """Noise2Same defaults (see the module docstring). Extra fields:

    Attributes:
        lam: weight of the invariance term (2 for Gaussian replacement; upstream uses 0.95 with donut).
        perc: masked percentage (0.5 -> 14x14 boxes).
        mask_replace: ``"gaussian"`` (default) or ``"donut"`` (the op's ``replace``; named so as not to
            shadow :meth:`FitConfig.replace`).
        sigma_m: std of the Gaussian replacement values (standardised units).
        decay_every, decay: staircase learning-rate schedule (x``decay`` every ``decay_every`` iterations;
            ``decay_every=0`` keeps lr constant).
        crop, batch: training crops (None: 64/16 on CUDA, 48/4 on the CPU).
        augment: random dihedral transform per crop.
        standardize: per-image, per-channel standardisation (the [DECISION]; False trains on raw [0, 1]).
        bn_infer: ``"batch"`` (statistics of the image being denoised) or ``"running"`` (eval mode).
        base: U-Net width (None: 96 upstream on CUDA, 48 on the CPU).
        weights: optional initial weights (a state dict or trainer checkpoint of the network).
    """

    iters: int | None = None
    lr: float = 4e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lam: float = 2.0
    perc: float = 0.5
    mask_replace: str = "gaussian"
    sigma_m: float = 0.2
    decay_every: int = 5000
    decay: float = 0.5
    crop: int | None = None
    batch: int | None = None
    augment: bool = True
    standardize: bool = True
    bn_infer: str = "batch"
    base: int | None = None
    weights: str | None = None


class Noise2Same(CropTraining, Method):
    """Noise2Same: the step below on augmented crops of the standardised image."""

    name = "noise2same"
    summary = "Noise2Same: stratified masks, standardised image, random crops"
    Config = Noise2SameConfig

    def resolve(self, cfg: Noise2SameConfig, device: torch.device) -> Noise2SameConfig:
        cuda = device.type == "cuda"
        pick = lambda v, gpu, cpu: v if v is not None else (gpu if cuda else cpu)  # noqa: E731
        return cfg.replace(base=pick(cfg.base, CUDA_BASE, CPU_BASE), crop=pick(cfg.crop, CUDA_CROP, CPU_CROP),
                           batch=pick(cfg.batch, CUDA_BATCH, CPU_BATCH))

    def check(self) -> None:
        c = self.cfg
        if c.mask_replace not in ("gaussian", "donut"):
            raise ValueError(f"mask_replace must be 'gaussian' or 'donut', got {c.mask_replace!r}")
        if c.bn_infer not in ("batch", "running"):
            raise ValueError(f"bn_infer must be 'batch' or 'running', got {c.bn_infer!r}")

    def defaults(self, device: torch.device, started: bool) -> dict:
        cpu = device.type != "cuda"
        return {**super().defaults(device, started),
                "iters": (CPU_ITERS_START if started else CPU_ITERS) if cpu else CUDA_ITERS,
                "tta": CPU_TTA if cpu else 1, "weight_ema": CPU_WEIGHT_EMA if cpu and started else 0.0}

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        from fastdenoise.models.unet_noise2same import UNetNoise2Same

        return UNetNoise2Same(in_ch, in_ch, base=self.cfg.base)

    # standardised in, un-standardised out
    def prepare(self, y: torch.Tensor):
        if not self.cfg.standardize:
            return y, None
        xs, mean, std = standardize(y)
        return xs, (mean, std)

    def finish(self, out: torch.Tensor, stats) -> torch.Tensor:
        return out if stats is None else out * stats[1] + stats[0]

    def lr_at(self, t: int, total: int) -> float:
        return staircase_lr(self.cfg.lr, t, self.cfg.decay_every, self.cfg.decay)

    def step(self, run, x: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, run.backend
        # 1. x_J, M: one masked pixel per box and channel, replaced by N(0, sigma_m) values
        x_masked, mask = F.stratified_mask(x, seed, perc=c.perc, replace=c.mask_replace, sigma_m=c.sigma_m,
                                           backend=be)
        # 2. two separate passes (BatchNorm statistics per pass)
        out_full = run.net(x).float()
        out_masked = run.net(x_masked).float()
        # 3. L = mean((raw - x)^2) + lam sqrt(sum(M (raw - masked)^2) / sum(M))
        loss = F.noise2same_loss(out_full, out_masked, x.float(), mask.float(), lam=c.lam, backend=be)
        return loss, None                    # crops: no whole-image estimate

    def infer(self, run, x: torch.Tensor) -> torch.Tensor:
        return run.forward(x, batch_stats=self.cfg.bn_infer == "batch")


build, fit, train = method_api(Noise2Same)
