"""Blind2Grad (AIMS Mathematics 2025; no official code) on the fused ops (METHODS.md section 6).

Per iteration (single-image mode, Self2Self style; every open choice is the METHODS 6.3 [DECISION]):

1. ``M`` copies of the noisy image (``n_masks``); one dual mask per copy,
   ``dual_mask(y, x_m, seed, rate=0.25, eps_g=40/255)``: exactly 25 % of the pixels masked, drawn among
   the "flat" pixels, the "detail" pixels ``|y - x_m| >= eps_g`` kept visible;
2. ``f(y)`` on the full image (visible mask all ones) under ``no_grad`` (``detach_full``);
3. ``f(Omega(y))`` on the M masked copies (the network's partial conv takes the visible mask);
4. ``L = (1 + gamma) ||m (a - y)||^2 / n_m + omega^2 ||D f - D a||^2 / n_d`` with the fused
   :func:`~fastdenoise.functional.blind2grad_loss` (omega 0.8, gamma 0.5 synthetic; D = forward
   differences, on all pixels by default);
5. ``x_m``: EMA (decay ``xm_decay``) of f(y), copied into the mask reference every ``refresh_every``
   iterations (the "recurrent" dual mask); before the first refresh ``x_m = y`` (plain exact-count mask).

Inference: the average of ``n_samples`` = 40 stochastic predictions (CPU default: 10; fresh dual masks
and the network's T-standout dropout kept on, Self2Self style; BatchNorm in eval mode); ``n_samples=1``
or ``infer="single"`` is one deterministic pass on the unmasked image.

Network: :class:`~fastdenoise.models.blind2grad_net.Blind2GradNet`, wrapped as a single-input module
(image and visible mask concatenated on channels) so the engine's network call, CUDA-graph capture and
checkpoints apply unchanged.

Learning rate (deviation, documented): the paper's Adam lr 2e-5 (1e-5 real noise) needs thousands of
full-image iterations; with the CPU budget of a few hundred iterations it barely moves the network.
The default here is **lr 1e-4 on CUDA (2000 iterations, M=4 masks)** and **lr 5e-4 on the CPU
(150 iterations, M=2 masks, 128x128 random crops per step)**; ``lr=2e-5`` restores the paper's value
(``lr`` None picks the device default). On the CPU each step trains on one random ``crop`` of the
image (``crop=None`` trains on the whole image, as the paper; the default crop is None on CUDA), with the
x_m EMA updated on the crop's region.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from fastdenoise.methods.engine import FitConfig
from fastdenoise.methods.engine import FitResult
from fastdenoise.methods.engine import Trainer
from fastdenoise.methods.engine import crop_sampler
from fastdenoise.methods.engine import iter_seed

CUDA_ITERS, CPU_ITERS = 2000, 150
CUDA_LR, CPU_LR = 1e-4, 5e-4
CUDA_MASKS, CPU_MASKS = 4, 2
CUDA_SAMPLES, CPU_SAMPLES = 40, 10
CPU_CROP = 128
PAPER_LR = 2e-5

__all__ = ["Blind2GradConfig", "Blind2Grad", "Blind2GradTrainer", "MaskedInputNet", "build", "fit", "train"]


@dataclass
class Blind2GradConfig(FitConfig):
    """Blind2Grad defaults (see the module docstring). Extra fields:

    Attributes:
        lr: Adam learning rate (None: 1e-4 on CUDA, 5e-4 on the CPU; paper 2e-5 synthetic, 1e-5 real).
        n_masks: masked copies per step M (None: 4 on CUDA, 2 on the CPU).
        rate: masked fraction (0.25).
        eps_g: detail threshold of the dual mask on the [0, 1] scale (40/255).
        omega, gamma: loss weights (0.8, 0.5 synthetic; 0.5, 0.5 real).
        grad_on: ``"all"`` or ``"masked"`` difference locations of the gradient term.
        detach_full: f(y) is a constant (stop-grad) in the loss.
        refresh_every: iterations between x_m refreshes K (100).
        xm_decay: EMA decay of the network output that feeds x_m.
        crop: train each step on a random ``crop`` x ``crop`` window (None: whole image; default None on
            CUDA, 128 on the CPU; ``crop=0`` forces the whole image).
        n_samples: predictions averaged at inference (None: 40 on CUDA as the paper, 10 on the CPU);
            ``infer="single"``: one plain pass.
        infer_batch: predictions per forward at inference.
        base, dropout, eps_s: network width, T-standout drop probability and threshold.
        weights: optional initial weights (a state dict or trainer checkpoint of the wrapped network).
    """

    iters: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    n_masks: int | None = None
    rate: float = 0.25
    eps_g: float = 40.0 / 255.0
    omega: float = 0.8
    gamma: float = 0.5
    grad_on: str = "all"
    detach_full: bool = True
    refresh_every: int = 100
    xm_decay: float = 0.9
    crop: int | None = None
    n_samples: int | None = None
    infer: str = "ensemble"
    infer_batch: int = 8
    base: int = 48
    dropout: float = 0.3
    eps_s: float = 25.0 / 255.0
    weights: str | None = None


class MaskedInputNet(nn.Module):
    """Single-input view of a ``forward(x, visible_mask)`` network: ``forward(cat([x, visible], 1))``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :-1], z[:, -1:])


def _cat(x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, visible.to(x.dtype)], dim=1)


def _autocast(tr: Trainer):
    dev = tr.device.type
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=tr.amp and dev == "cuda", cache_enabled=False)


class Blind2Grad:
    """The Blind2Grad step; holds the recurrent mask reference x_m and its EMA (reset by the trainer)."""

    name = "blind2grad"

    def __init__(self, config: Blind2GradConfig):
        self.cfg = config
        self.x_m: torch.Tensor | None = None
        self.x_ema: torch.Tensor | None = None
        self.dataset_mode = False    # batches of crops of many images: x_m = y, no extra crop

    def reset_state(self) -> None:
        self.x_m = self.x_ema = None

    def default_iters(self, device: torch.device) -> int:
        return CUDA_ITERS if device.type == "cuda" else CPU_ITERS

    def crop_size(self, device: torch.device) -> int | None:
        c = self.cfg.crop
        if c is None:
            return None if device.type == "cuda" else CPU_CROP
        return c or None

    def n_masks(self, device: torch.device) -> int:
        return self.cfg.n_masks or (CUDA_MASKS if device.type == "cuda" else CPU_MASKS)

    def step(self, tr: Trainer, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, tr.backend
        if self.dataset_mode or self.x_m is None or self.x_m.shape != y.shape:
            self.x_m = y.detach().float().clone()
            self.x_ema = None
        if t > 0 and c.refresh_every > 0 and t % c.refresh_every == 0 and self.x_ema is not None:
            self.x_m = self.x_ema.clone()
        # optional random crop (the same window of y and x_m)
        win = None
        cs = None if self.dataset_mode else self.crop_size(tr.device)
        h, w = y.shape[-2:]
        if cs is not None and (cs < h or cs < w):
            ch, cw = min(cs, h), min(cs, w)
            g = torch.Generator().manual_seed(iter_seed(seed, 7))
            y0 = int(torch.randint(h - ch + 1, (1,), generator=g))
            x0 = int(torch.randint(w - cw + 1, (1,), generator=g))
            win = (slice(None), slice(None), slice(y0, y0 + ch), slice(x0, x0 + cw))
        yc = y if win is None else y[win]
        xm = self.x_m if win is None else self.x_m[win]
        m = self.n_masks(tr.device)
        ym = yc.repeat_interleave(m, 0)
        mask = F.dual_mask(ym, xm.to(ym.dtype).repeat_interleave(m, 0), seed, c.rate, c.eps_g, backend=be)
        ones = torch.ones_like(yc[:, :1])
        # the full pass runs eagerly (never through a captured graph shared with the masked pass)
        with torch.set_grad_enabled(not c.detach_full), _autocast(tr):
            full = tr.model(_cat(yc, ones)).float()
        out = tr.net(_cat(ym, 1 - mask)).float()
        loss = F.blind2grad_loss(out, full.repeat_interleave(m, 0), ym.float(), mask.float(), c.omega, c.gamma,
                                 c.grad_on, c.detach_full, backend=be)
        with torch.no_grad():
            fd = full.detach()
            if win is None:
                self.x_ema = fd.clone() if self.x_ema is None else self.x_ema.mul_(c.xm_decay).add_(
                    fd, alpha=1 - c.xm_decay)
            else:
                if self.x_ema is None:
                    self.x_ema = y.detach().float().clone()
                self.x_ema[win].mul_(c.xm_decay).add_(fd, alpha=1 - c.xm_decay)
        return loss, (fd if win is None else None)


class Blind2GradTrainer(Trainer):
    """:class:`Trainer` with the recurrent-mask state reset and the 40-sample ensemble :meth:`denoise`."""

    def reset(self) -> None:
        super().reset()
        self.method.reset_state()

    def fit(self, y: torch.Tensor, *, iters: int | None = None, clean: torch.Tensor | None = None,
            reset: bool = True) -> FitResult:
        """Single-image mode: fit to ``y`` and return the ensemble-averaged denoised image as ``output``."""
        cfg = self.cfg
        if reset and not (cfg.resume and cfg.checkpoint and os.path.exists(cfg.checkpoint)):
            self.reset()
        y = self.to_input(y)
        if clean is not None:
            clean = clean.to(self.device, torch.float32).reshape(y.shape)
        total = self.total_iters(iters)
        with self.seeded_rng():
            secs, n = self._loop(lambda t: y, total, clean, self.method.name)
        out = self.denoise(y)
        return FitResult(out, None if self.ema is None else self.ema.clone(), list(self.loss_log),
                         list(self.psnr_log), n, secs)

    def fit_dataset(self, sampler, *, iters: int | None = None) -> FitResult:
        """Dataset mode: batches of crops of many images, each entry with its own M dual masks; the
        recurrent reference is per image, so here x_m = the batch itself (plain exact-count masks)."""
        self.method.dataset_mode = True
        try:
            with self.seeded_rng():
                return super().fit_dataset(sampler, iters=iters)
        finally:
            self.method.dataset_mode = False
            self.method.reset_state()

    @contextlib.contextmanager
    def seeded_rng(self, offset: int = 0):
        """torch's global RNG (T-standout dropout) seeded from ``cfg.seed`` inside, restored outside."""
        devs = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devs):
            torch.manual_seed(iter_seed(self.cfg.seed + offset, self.t))
            yield

    @torch.no_grad()
    def denoise(self, y: torch.Tensor, *, n_samples: int | None = None) -> torch.Tensor:
        """Average of ``n_samples`` stochastic predictions (dual masks on the current x_m + T-standout),
        or one deterministic pass (``infer="single"`` or ``n_samples=1``). Seeded by ``cfg.seed``."""
        import fastdenoise.functional as F

        c = self.cfg
        y = self.to_input(y)
        if n_samples is None:
            n_samples = c.n_samples or (CUDA_SAMPLES if self.device.type == "cuda" else CPU_SAMPLES)
        n = int(n_samples)
        net = self.model.net
        self.model.eval()
        try:
            if c.infer == "single" or n <= 1:
                with _autocast(self):
                    return self.model(_cat(y, torch.ones_like(y[:, :1]))).float().contiguous()
            x_m = self.method.x_m if (self.method.x_m is not None and self.method.x_m.shape == y.shape) else y
            net.set_mc_dropout(True)
            acc = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
            with self.seeded_rng(99991):
                done = 0
                while done < n:
                    k = min(max(1, c.infer_batch), n - done)
                    yk = y.repeat_interleave(k, 0)
                    mask = F.dual_mask(yk, x_m.to(y.dtype).repeat_interleave(k, 0), iter_seed(c.seed + 99991, done),
                                       c.rate, c.eps_g, backend=self.backend)
                    with _autocast(self):
                        out = self.model(_cat(yk, 1 - mask)).float()
                    acc += out.view(y.shape[0], k, *y.shape[1:]).sum(1)
                    done += k
            return (acc / n).contiguous()
        finally:
            net.set_mc_dropout(False)
            self.model.train()


def make_model(in_ch: int = 3, base: int = 48, dropout: float = 0.3, eps_s: float = 25.0 / 255.0) -> nn.Module:
    """The wrapped Blind2Grad network (input: image and visible mask concatenated)."""
    from fastdenoise.models.blind2grad_net import Blind2GradNet

    return MaskedInputNet(Blind2GradNet(in_ch, base, dropout, eps_s))


def _check(cfg: Blind2GradConfig) -> None:
    if cfg.infer not in ("ensemble", "single"):
        raise ValueError(f"infer must be 'ensemble' or 'single', got {cfg.infer!r}")
    if cfg.grad_on not in ("all", "masked"):
        raise ValueError(f"grad_on must be 'all' or 'masked', got {cfg.grad_on!r}")
    if not 0.0 <= cfg.xm_decay < 1.0:
        raise ValueError(f"xm_decay must be in [0, 1), got {cfg.xm_decay}")


def build(config: Blind2GradConfig | None = None, *, in_ch: int = 3, model: nn.Module | None = None,
          **overrides) -> Blind2GradTrainer:
    """A :class:`Blind2GradTrainer` (a fresh network seeded by ``config.seed``, or ``model``: a
    :class:`MaskedInputNet` or a bare ``forward(x, mask)`` network, which is wrapped)."""
    from fastdenoise.methods.engine import resolve_device

    cfg = config or Blind2GradConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    _check(cfg)
    if cfg.lr is None:
        cfg = cfg.replace(lr=CUDA_LR if resolve_device(cfg.device).type == "cuda" else CPU_LR)
    if model is None:
        torch.manual_seed(cfg.seed)
        model = make_model(in_ch, cfg.base, cfg.dropout, cfg.eps_s)
        if cfg.weights:
            from fastdenoise.methods.p2n import load_weights

            model.load_state_dict(load_weights(cfg.weights))
    elif not isinstance(model, MaskedInputNet):
        model = MaskedInputNet(model)
    return Blind2GradTrainer(model, Blind2Grad(cfg), cfg)


def fit(y: torch.Tensor, config: Blind2GradConfig | None = None, *, clean: torch.Tensor | None = None,
        trainer: Trainer | None = None, **overrides) -> FitResult:
    """Single-image mode: fit Blind2Grad to ``y`` (B, C, H, W) on [0, 1] and return the result."""
    tr = trainer or build(config, in_ch=y.shape[-3], **overrides)
    return tr.fit(y, clean=clean)


def train(images: list, config: Blind2GradConfig | None = None, *, crop: int = 128, batch: int = 4,
          iters: int | None = None, trainer: Trainer | None = None, **overrides) -> Blind2GradTrainer:
    """Dataset mode: train on random ``crop`` crops of ``images`` ((C, H, W) tensors); return the trainer.

    Each batch entry is one image with its own dual masks (M per entry); the recurrent reference x_m is
    per-image and so is not used here (x_m = the batch itself, i.e. plain exact-count masks). Denoise
    afterwards with ``trainer.denoise(y)`` (ensemble of ``n_samples``).
    """
    tr = trainer or build(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), **overrides)
    tr.fit_dataset(crop_sampler(images, crop, batch, tr.cfg.seed), iters=iters)
    return tr
