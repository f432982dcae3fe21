"""Noise2Same (NeurIPS 2020) on the fused ops (METHODS.md section 5).

Per iteration, on a batch of standardised crops ``x`` (B, C, h, w):

1. ``x_J, M = stratified_mask(x, seed)``: one masked pixel per 14x14 box and channel (0.5 %), replaced
   by N(0, 0.2) values in standardised units (``mask_replace="donut"`` for the local-mean variant);
2. ``raw = f(x)`` and ``masked = f(x_J)``, **two separate forward passes** (the U-Net has BatchNorm:
   each pass uses its own batch statistics, METHODS 5.3), both with gradients;
3. ``L = mean((raw - x)^2) + lam * sqrt(sum(M (raw - masked)^2) / sum(M))`` with the fused
   :func:`~fastdenoise.functional.noise2same_loss`, lam = 2;
4. Adam, lr 4e-4, staircase decay x0.5 every 5k iterations (set by the step from the iteration index,
   so a resumed run gets the same schedule; the engine itself has no scheduler).

[DECISION] (METHODS 5.2) every image is standardised per channel (zero mean, unit population std)
before training and inference, and the output is un-standardised. In single-image (zero-shot) mode
the network trains on random crops of the one standardised image with a random dihedral transform
(rot90 x flip) per crop (METHODS 5.4 [DECISION]); the same sampler serves dataset mode.

Inference: one pass on the whole standardised image. With few iterations the BatchNorm running
statistics (TF momentum 0.997) are still far from the data, so by default inference uses the batch
statistics of the image itself (``bn_infer="batch"``, running statistics left untouched);
``bn_infer="running"`` is the upstream eval mode (right after long dataset training).

Defaults per device (``iters``/``crop``/``batch`` None):

* CUDA: 3000 iterations, 64x64 crops, batch 16 (a few thousand steps, METHODS 5.4).
* CPU: 300 iterations, 48x48 crops, batch 4 and a **narrower U-Net (base 48, 1.4M parameters instead of
  base 96, 5.6M)** -- the full network costs about 1 GMAC per pixel, so batch 16 x 64^2 takes many
  seconds per step on two cores. Pass ``iters``/``crop``/``batch``/``base`` to trade time for quality.

CUDA graphs are off by default (``cuda_graph=False``): both passes have the same shape and carry
gradients, so they would share one captured graph's static buffers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from fastdenoise.methods.engine import FitConfig
from fastdenoise.methods.engine import FitResult
from fastdenoise.methods.engine import Trainer
from fastdenoise.methods.engine import crop_sampler
from fastdenoise.methods.engine import dihedral  # noqa: F401  (re-exported)

CUDA_ITERS, CPU_ITERS = 3000, 300
CUDA_BASE, CPU_BASE = 96, 48
CUDA_CROP, CPU_CROP = 64, 48
CUDA_BATCH, CPU_BATCH = 16, 4

__all__ = ["Noise2SameConfig", "Noise2Same", "Noise2SameTrainer", "build", "fit", "train", "standardize",
           "dihedral_crop_sampler", "staircase_lr"]


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
    cuda_graph: bool = False
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


def staircase_lr(base_lr: float, t: int, every: int, factor: float) -> float:
    """``base_lr * factor ** (t // every)`` (constant when ``every`` <= 0)."""
    return base_lr if every <= 0 else base_lr * factor ** (t // every)


def set_lr(tr: Trainer, lr: float) -> None:
    """Set the learning rate of every parameter group of the trainer's optimiser."""
    for g in tr.opt.param_groups:
        g["lr"] = lr


def standardize(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and channel: ``((x - mean) / std, mean, std)`` with the population std (floored at eps)."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True, correction=0).clamp_min(eps)
    return (x - mean) / std, mean, std


def dihedral_crop_sampler(images: list, crop: int, batch: int, seed: int = 0,
                          augment: bool = True) -> Callable[[int], torch.Tensor]:
    """The engine's :func:`~fastdenoise.methods.engine.crop_sampler` with dihedral augmentation on by default."""
    return crop_sampler(images, crop, batch, seed, augment=augment)


@contextlib.contextmanager
def batch_stats_bn(model: torch.nn.Module):
    """BatchNorm layers normalise with the current batch's statistics and leave the running ones alone."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in bns]
    for m in bns:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (tr, trs) in zip(bns, saved):
            m.training, m.track_running_stats = tr, trs


class Noise2Same:
    """The Noise2Same step; stateless apart from its config."""

    name = "noise2same"

    def __init__(self, config: Noise2SameConfig):
        self.cfg = config

    def default_iters(self, device: torch.device) -> int:
        return CUDA_ITERS if device.type == "cuda" else CPU_ITERS

    def step(self, tr: Trainer, x: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, tr.backend
        set_lr(tr, staircase_lr(c.lr, t, c.decay_every, c.decay))
        x_masked, mask = F.stratified_mask(x, seed, perc=c.perc, replace=c.mask_replace, sigma_m=c.sigma_m, backend=be)
        out_full = tr.net(x).float()        # separate passes: BatchNorm statistics per pass (METHODS 5.3)
        out_masked = tr.net(x_masked).float()
        loss = F.noise2same_loss(out_full, out_masked, x.float(), mask.float(), lam=c.lam, backend=be)
        return loss, None                    # crops: no whole-image estimate


class Noise2SameTrainer(Trainer):
    """:class:`Trainer` whose single-image :meth:`fit` trains on augmented crops of the standardised image
    and whose :meth:`denoise` standardises the input and un-standardises the output."""

    def crop_size(self) -> int:
        c = self.cfg
        return c.crop or (CUDA_CROP if self.device.type == "cuda" else CPU_CROP)

    def batch_size(self) -> int:
        c = self.cfg
        return c.batch or (CUDA_BATCH if self.device.type == "cuda" else CPU_BATCH)

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return standardize(y)[0] if self.cfg.standardize else y

    def fit(self, y: torch.Tensor, *, iters: int | None = None, clean: torch.Tensor | None = None,
            reset: bool = True) -> FitResult:
        """Single-image mode: train on random (augmented) crops of the standardised ``y`` and denoise it.

        ``clean`` is accepted for API symmetry; the per-step estimates are crops, so no PSNR is logged.
        """
        import os

        cfg = self.cfg
        if reset and not (cfg.resume and cfg.checkpoint and os.path.exists(cfg.checkpoint)):
            self.reset()
        y = self.to_input(y)
        xs = self.prepare(y)
        sampler = dihedral_crop_sampler(list(xs), self.crop_size(), self.batch_size(), cfg.seed, cfg.augment)
        total = self.total_iters(iters)
        secs, n = self._loop(lambda t: self.to_input(sampler(t)), total, None, self.method.name)
        out = self.denoise(y)
        return FitResult(out, None if self.ema is None else self.ema.clone(), list(self.loss_log),
                         list(self.psnr_log), n, secs)

    def fit_dataset(self, sampler: Callable[[int], torch.Tensor], *, iters: int | None = None,
                    standardized: bool = False) -> FitResult:
        """Dataset mode on ``sampler(t)`` batches. :func:`train` passes crops of already standardised
        images (``standardized=True``); raw crops (e.g. the engine's ``crop_sampler``, as the CLI uses) are
        standardised per crop here when ``cfg.standardize`` (an approximation of per-image statistics)."""
        if self.cfg.standardize and not standardized:
            raw = sampler

            def sampler(t: int) -> torch.Tensor:
                return standardize(torch.as_tensor(raw(t)).float())[0]

        return super().fit_dataset(sampler, iters=iters)

    @torch.no_grad()
    def denoise(self, y: torch.Tensor) -> torch.Tensor:
        """One pass on the standardised image, un-standardised (fp32)."""
        y = self.to_input(y)
        if self.cfg.standardize:
            xs, mean, std = standardize(y)
        else:
            xs, mean, std = y, 0.0, 1.0
        self.model.eval()
        dev = self.device.type
        ctx = batch_stats_bn(self.model) if self.cfg.bn_infer == "batch" else contextlib.nullcontext()
        with ctx, torch.autocast(dev, dtype=torch.bfloat16, enabled=self.amp and dev == "cuda"):
            out = self.model(xs)
        self.model.train()
        return (out.float() * std + mean).contiguous()


def make_model(in_ch: int = 3, base: int | None = 96) -> torch.nn.Module:
    """The Noise2Same (GVTNets) U-Net."""
    from fastdenoise.models.unet_noise2same import UNetNoise2Same

    return UNetNoise2Same(in_ch, in_ch, base=base or CUDA_BASE)


def _check(cfg: Noise2SameConfig) -> None:
    if cfg.mask_replace not in ("gaussian", "donut"):
        raise ValueError(f"mask_replace must be 'gaussian' or 'donut', got {cfg.mask_replace!r}")
    if cfg.bn_infer not in ("batch", "running"):
        raise ValueError(f"bn_infer must be 'batch' or 'running', got {cfg.bn_infer!r}")


def build(config: Noise2SameConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
          **overrides) -> Noise2SameTrainer:
    """A :class:`Noise2SameTrainer` (a fresh U-Net seeded by ``config.seed``, or ``model``)."""
    cfg = config or Noise2SameConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    _check(cfg)
    if model is None:
        torch.manual_seed(cfg.seed)
        from fastdenoise.methods.engine import resolve_device

        base = cfg.base or (CUDA_BASE if resolve_device(cfg.device).type == "cuda" else CPU_BASE)
        model = make_model(in_ch, base)
        if cfg.weights:
            from fastdenoise.methods.p2n import load_weights

            model.load_state_dict(load_weights(cfg.weights))
    return Noise2SameTrainer(model, Noise2Same(cfg), cfg)


def fit(y: torch.Tensor, config: Noise2SameConfig | None = None, *, clean: torch.Tensor | None = None,
        trainer: Trainer | None = None, **overrides) -> FitResult:
    """Single-image mode: fit Noise2Same to ``y`` (B, C, H, W) on [0, 1] and return the result."""
    tr = trainer or build(config, in_ch=y.shape[-3], **overrides)
    return tr.fit(y, clean=clean)


def train(images: list, config: Noise2SameConfig | None = None, *, crop: int | None = None,
          batch: int | None = None, iters: int | None = None, trainer: Trainer | None = None,
          **overrides) -> Noise2SameTrainer:
    """Dataset mode: train on random augmented crops of the standardised ``images`` ((C, H, W) tensors).

    Denoise afterwards with ``trainer.denoise(y)`` (standardises ``y`` itself). Checkpoint/resume through
    the config.
    """
    tr = trainer or build(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), **overrides)
    imgs = []
    for im in images:
        im = torch.as_tensor(im, dtype=torch.float32)
        im = im[0] if im.dim() == 4 else im
        imgs.append(tr.prepare(im[None])[0] if tr.cfg.standardize else im)
    sampler = dihedral_crop_sampler(imgs, crop or tr.crop_size(), batch or tr.batch_size(), tr.cfg.seed,
                                    tr.cfg.augment)
    tr.fit_dataset(sampler, iters=iters, standardized=tr.cfg.standardize)
    return tr
