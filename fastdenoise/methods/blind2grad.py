"""Blind2Grad (AIMS Mathematics 2025; no official code) on the fused ops.

Per iteration (single-image mode, Self2Self style; every choice the paper leaves open is a [DECISION]):

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

Inference: the average of ``n_samples`` stochastic predictions (fresh dual masks and the network's
T-standout dropout kept on, Self2Self style; BatchNorm in eval mode); ``n_samples=1`` or
``infer="single"`` is one deterministic pass on the unmasked image. ``infer_cycles`` reruns that ensemble
with the last ensemble's output as the dual masks' reference x_m (the recurrent mask carried one step past
training).

BatchNorm with a start (``freeze_bn``, default True when the network begins from a start or ``weights``,
on every device): single-image training normalises with the start's running statistics and leaves them
as they are, instead of training them on a batch of M copies of one crop. From random weights
(``init="scratch"``) and in dataset mode BatchNorm trains on batch statistics, as the paper.

Network: :class:`~fastdenoise.models.blind2grad_net.Blind2GradNet`, wrapped as a single-input module
(image and visible mask concatenated on channels) so the engine's network call, CUDA-graph capture and
checkpoints apply unchanged.

Defaults (deviation from the paper's Adam lr 2e-5, 1e-5 on real noise, which needs thousands of
full-image iterations; ``lr=2e-5`` restores it):

* CUDA: 2000 iterations on the whole image, lr 1e-4, M=4 masks, 40 samples, 1 inference cycle.
* CPU: 100 iterations from the shipped start (``fastdenoise/weights/blind2grad_start.pt``), lr 5e-4, M=2
  masks, one random 128x128 crop per step (the x_m EMA updated on the crop's region; ``crop=0`` trains on
  the whole image), 10 samples, 2 inference cycles.

Measurements: ``docs/methods/blind2grad.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import build as _build
from fastdenoise.engine import iter_seed
from fastdenoise.engine import method_api

CUDA_ITERS, CPU_ITERS = 2000, 100
CUDA_LR, CPU_LR = 1e-4, 5e-4
CUDA_MASKS, CPU_MASKS = 4, 2
CUDA_SAMPLES, CPU_SAMPLES = 40, 10
CUDA_CYCLES, CPU_CYCLES = 1, 2
CPU_CROP = 128
PAPER_LR = 2e-5

__all__ = ["Blind2GradConfig", "Blind2Grad", "build", "fit", "train"]


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
        infer_cycles: ensembles run in turn, each one's output the next one's dual-mask reference x_m
            (None: 1 on CUDA, 2 on the CPU; see the module docstring).
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
    infer_cycles: int | None = None
    infer_batch: int = 8
    base: int = 48
    dropout: float = 0.3
    eps_s: float = 25.0 / 255.0
    weights: str | None = None


def _cat(x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The network's single input: the image and its visible mask concatenated on channels."""
    return torch.cat([x, visible.to(x.dtype)], dim=1)


class Blind2Grad(Method):
    """Blind2Grad: the step below; the recurrent mask reference x_m and its EMA live in ``run.state``."""

    name = "blind2grad"
    summary = "Blind2Grad: dual masks + gradient-consistency loss, averaged predictions"
    Config = Blind2GradConfig
    uses_torch_rng = True        # T-standout dropout (training and the inference ensemble)

    def resolve(self, cfg: Blind2GradConfig, device: torch.device) -> Blind2GradConfig:
        cuda = device.type == "cuda"
        crop = (None if cuda else CPU_CROP) if cfg.crop is None else (cfg.crop or None)
        return cfg.replace(lr=(CUDA_LR if cuda else CPU_LR) if cfg.lr is None else cfg.lr,
                           n_masks=cfg.n_masks or (CUDA_MASKS if cuda else CPU_MASKS),
                           n_samples=cfg.n_samples or (CUDA_SAMPLES if cuda else CPU_SAMPLES), crop=crop or 0,
                           infer_cycles=(CUDA_CYCLES if cuda else CPU_CYCLES) if cfg.infer_cycles is None
                           else cfg.infer_cycles)

    def check(self) -> None:
        c = self.cfg
        if c.infer not in ("ensemble", "single"):
            raise ValueError(f"infer must be 'ensemble' or 'single', got {c.infer!r}")
        if c.grad_on not in ("all", "masked"):
            raise ValueError(f"grad_on must be 'all' or 'masked', got {c.grad_on!r}")
        if not 0.0 <= c.xm_decay < 1.0:
            raise ValueError(f"xm_decay must be in [0, 1), got {c.xm_decay}")
        if c.infer_cycles < 1:
            raise ValueError(f"infer_cycles must be >= 1, got {c.infer_cycles}")

    def defaults(self, device: torch.device, started: bool) -> dict:
        # a network that begins from a start keeps the start's BatchNorm statistics (module docstring)
        return {**super().defaults(device, started), "iters": CUDA_ITERS if device.type == "cuda" else CPU_ITERS,
                "freeze_bn": started}

    def network_channels(self, in_ch: int, part: str) -> int:
        return in_ch + 1          # the image and its visible-mask plane

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        from fastdenoise.models.blind2grad_net import Blind2GradNet
        from fastdenoise.models.blind2grad_net import MaskedInputNet

        c = self.cfg
        return MaskedInputNet(Blind2GradNet(in_ch, c.base, c.dropout, c.eps_s))

    def new_state(self, run) -> dict:
        return {"x_m": None, "x_ema": None}

    # --- the step's parts
    def _mask_reference(self, run, y: torch.Tensor, t: int) -> torch.Tensor:
        """x_m: y itself at first (and in dataset mode), the EMA of f(y) after every refresh."""
        st, c = run.state, self.cfg
        if run.dataset_mode:                 # crops of many images: x_m = the batch (plain exact-count masks)
            return y
        if st["x_m"] is None or st["x_m"].shape != y.shape:
            st["x_m"], st["x_ema"] = y.detach().float().clone(), None
        if t > 0 and c.refresh_every > 0 and t % c.refresh_every == 0 and st["x_ema"] is not None:
            st["x_m"] = st["x_ema"].clone()
        return st["x_m"]

    def _window(self, run, y: torch.Tensor, seed: int):
        """The random training window of this step (None: the whole image)."""
        cs, (h, w) = self.cfg.crop, y.shape[-2:]
        if run.dataset_mode or not cs or (cs >= h and cs >= w):
            return None
        ch, cw = min(cs, h), min(cs, w)
        g = torch.Generator().manual_seed(iter_seed(seed, 7))
        y0 = int(torch.randint(h - ch + 1, (1,), generator=g))
        x0 = int(torch.randint(w - cw + 1, (1,), generator=g))
        return (slice(None), slice(None), slice(y0, y0 + ch), slice(x0, x0 + cw))

    def _update_ema(self, run, y: torch.Tensor, fd: torch.Tensor, win) -> None:
        """x_ema <- decay x_ema + (1 - decay) f(y), on the step's window."""
        st, d = run.state, self.cfg.xm_decay
        if win is None:
            st["x_ema"] = fd.clone() if st["x_ema"] is None else st["x_ema"].mul_(d).add_(fd, alpha=1 - d)
            return
        if st["x_ema"] is None:
            st["x_ema"] = y.detach().float().clone()
        st["x_ema"][win].mul_(d).add_(fd, alpha=1 - d)

    def step(self, run, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, run.backend
        x_m = self._mask_reference(run, y, t)
        win = self._window(run, y, seed)
        yc, xm = (y, x_m) if win is None else (y[win], x_m[win])
        # 1. M copies, one dual mask each (25 % of the flat pixels; detail pixels stay visible)
        ym = yc.repeat_interleave(c.n_masks, 0)
        mask = F.dual_mask(ym, xm.to(ym.dtype).repeat_interleave(c.n_masks, 0), seed, c.rate, c.eps_g, backend=be)
        # 2. f(y) on the full image (all visible), eagerly: never a graph shared with the masked pass
        with torch.set_grad_enabled(not c.detach_full), run.autocast():
            full = run.model(_cat(yc, torch.ones_like(yc[:, :1]))).float()
        # 3. f(Omega(y)) on the masked copies
        out = run.net(_cat(ym, 1 - mask)).float()
        # 4. L = (1 + gamma) |m (a - y)|^2 / n_m + omega^2 |D f - D a|^2 / n_d
        loss = F.blind2grad_loss(out, full.repeat_interleave(c.n_masks, 0), ym.float(), mask.float(), c.omega,
                                 c.gamma, c.grad_on, c.detach_full, backend=be)
        # 5. the EMA of f(y) that the next refresh copies into x_m
        fd = full.detach()
        if not run.dataset_mode:
            with torch.no_grad():
                self._update_ema(run, y, fd, win)
        return loss, (fd if win is None else None)

    def infer(self, run, y: torch.Tensor, *, n_samples: int | None = None) -> torch.Tensor:
        """Average of ``n_samples`` stochastic predictions (dual masks on the run's x_m + T-standout), run
        ``infer_cycles`` times, each cycle's average the next one's x_m; or one deterministic pass
        (``infer="single"`` or ``n_samples=1``)."""
        c = self.cfg
        n = int(c.n_samples if n_samples is None else n_samples)
        if c.infer == "single" or n <= 1:
            return run.forward(_cat(y, torch.ones_like(y[:, :1])))
        x_m = run.state.get("x_m")
        x_m = x_m if x_m is not None and x_m.shape == y.shape else y
        model = run.model
        model.net.set_mc_dropout(True)
        try:
            for cycle in range(c.infer_cycles):
                x_m = self._ensemble(run, y, x_m, n, run.seed + 99991 + 7919 * cycle)
        finally:
            model.net.set_mc_dropout(False)
        return x_m

    def _ensemble(self, run, y: torch.Tensor, x_m: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        """The mean of ``n`` predictions on fresh dual masks drawn against ``x_m`` (seeds from ``seed``)."""
        import fastdenoise.functional as F

        c = self.cfg
        acc = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
        ref = x_m.to(y.dtype)
        done = 0
        while done < n:
            k = min(max(1, c.infer_batch), n - done)
            yk = y.repeat_interleave(k, 0)
            mask = F.dual_mask(yk, ref.repeat_interleave(k, 0), iter_seed(seed, done), c.rate, c.eps_g,
                               backend=run.backend)
            acc += run.forward(_cat(yk, 1 - mask)).view(y.shape[0], k, *y.shape[1:]).sum(1)
            done += k
        return acc / n


def build(config: Blind2GradConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
          **overrides):
    """A Blind2Grad trainer (a fresh network seeded by the config's seed, or ``model``: a
    :class:`~fastdenoise.models.blind2grad_net.MaskedInputNet` or a bare ``forward(x, mask)`` network,
    which is wrapped)."""
    from fastdenoise.models.blind2grad_net import MaskedInputNet

    if model is not None and not isinstance(model, MaskedInputNet):
        model = MaskedInputNet(model)
    return _build(Blind2Grad, config, in_ch=in_ch, model=model, **overrides)


_, fit, train = method_api(Blind2Grad)
