"""Positive2Negative (P2N, CVPR 2025) on the fused ops (METHODS.md section 2).

Per iteration (section 2.2 pseudocode and [DECISION]s):

1. ``x_hat = F(y)``, **with** gradients through x_hat and n_hat = y - x_hat (see "Deviation" below);
2. ``z = [x_hat + a n_hat; x_hat - b n_hat]`` with a, b ~ N(1, 0.75), one scalar per image and branch,
   not clamped (:func:`fastdenoise.functional.rdc_renoise`, one kernel);
3. one 2B forward ``F(z)`` split into (positive, negative);
4. ``L = mean((|F(y+) - F(y-)| + 1e-8)^gamma_t)`` (:func:`fastdenoise.functional.p2n_loss`, fused
   forward/backward) with gamma linear from 2 to 1.5 per iteration (:func:`~fastdenoise.functional.p2n_gamma`);
5. AdamW (lr 1e-4, weight decay 0.01), 100 iterations; the result is the EMA (decay 0.9) of the
   step's x_hat (``FitResult.best``; ``ema=None`` returns the network's output after the last step).

Output EMA (a fastdenoise default, measured 2026-11-22 on a 128x128 astronaut crop, sigma 25, shipped
weights, 100 iterations): the step estimates move by 0.3-0.7 dB from one iteration to the next (28.64 -
29.45 dB), and the last one can sit in a dip (29.22 dB, below the pretrained 29.31 dB). Their EMA with
decay 0.9 is smooth and ends at 29.48 dB (lr 5e-5: 29.51 dB).

Deviation from METHODS.md's stop-gradient [DECISION] (measured, 2026-11-22): with x_hat detached
(first pass under ``no_grad``) the only thing the loss asks of the network is ``F(y+) == F(y-)``, and
AdamW's sign-like steps shrink the network's gain toward a constant output: on a 96x96 astronaut crop
(sigma 25, shipped weights, 30 iterations, lr 1e-4) PSNR went 27.81 -> 11.77 dB. Letting gradients
flow through x_hat (as the "P2N+" ports do) ties the renoised inputs to the network's own output and is
stable: 27.81 -> 28.42 dB after 30 iterations and 28.65 dB after 100 (sigma=0: 28.66 dB). Reproduce with
``P2NConfig(detach=True)``, which keeps the paper-pseudocode behaviour (and its memory saving).

The network is :class:`~fastdenoise.models.unet_n2n.UNetN2N`, initialised from fastdenoise's own
supervised-AWGN weights (``init="gaussian_pretrained"``, ``fastdenoise/weights/unet_n2n_gauss.pt``; P2N's
are not public, see ``scripts/pretrain_p2n.py``) or from scratch (``init="scratch"``).

Example:
    >>> from fastdenoise.methods import p2n
    >>> res = p2n.fit(noisy)                 # (1, 3, H, W) in [0, 1] -> FitResult
    >>> trainer = p2n.build()                # reuse one model for many images (in-place re-init)
    >>> outs = [trainer.fit(y).output for y in images]
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from fastdenoise.methods.engine import FitConfig
from fastdenoise.methods.engine import FitResult
from fastdenoise.methods.engine import Trainer
from fastdenoise.methods.engine import crop_sampler

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
DEFAULT_WEIGHTS = os.path.join(WEIGHTS_DIR, "unet_n2n_gauss.pt")


@dataclass
class P2NConfig(FitConfig):
    """P2N defaults (see the module docstring). Extra fields:

    Attributes:
        sigma: std of the renoising scales N(1, sigma).
        granularity: ``"image"`` (default), ``"batch"`` or ``"pixel"`` scales.
        gamma_start, gamma_end: the loss exponent schedule (linear per iteration).
        eps: the loss epsilon.
        detach: stop-gradient through x_hat (first pass under no_grad), as METHODS.md's pseudocode.
            Default False: gradients flow through x_hat (stable; see the module docstring).
        clamp: clamp the renoised images to [0, 1] (off by default).
        init: ``"gaussian_pretrained"`` or ``"scratch"``.
        weights: path of the initial weights (None: the shipped ones).
    """

    iters: int | None = 100
    lr: float = 1e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    ema: float | None = 0.9
    sigma: float = 0.75
    granularity: str = "image"
    gamma_start: float = 2.0
    gamma_end: float = 1.5
    eps: float = 1e-8
    detach: bool = False
    clamp: bool = False
    init: str = "gaussian_pretrained"
    weights: str | None = None


def load_weights(path: str | None = None) -> dict:
    """fp32 state dict of a UNetN2N checkpoint (the shipped fp16 file, a plain state dict, or a
    :class:`~fastdenoise.methods.engine.Trainer` checkpoint)."""
    path = DEFAULT_WEIGHTS if path is None else path
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ck, dict) and "state_dict" in ck:
        ck = ck["state_dict"]
    elif isinstance(ck, dict) and "model" in ck and isinstance(ck["model"], dict):
        ck = ck["model"]
    return {k: v.float() for k, v in ck.items()}


class P2N:
    """The P2N step; stateless apart from its config."""

    name = "p2n"

    def __init__(self, config: P2NConfig):
        self.cfg = config

    def default_iters(self, device: torch.device) -> int:
        return 100

    def step(self, tr: Trainer, y: torch.Tensor, t: int, total: int, seed: int):
        return _p2n_step(self.cfg, tr.backend, lambda x: tr.net(x).float(),
                         lambda z: tr.net(z).float().chunk(2, dim=0), y, t, total, seed)


def _p2n_step(c: P2NConfig, be, net, net_pair, y: torch.Tensor, t: int, total: int, seed: int):
    """One P2N iteration: ``net(y)`` gives x_hat (fp32), ``net_pair(z)`` maps the renoised
    [positives; negatives] batch to ``(out_pos, out_neg)``. Returns ``(loss, x_hat detached)``."""
    import fastdenoise.functional as F

    if c.detach:
        with torch.no_grad():
            x_hat = net(y)
    else:
        x_hat = net(y)
    kw = {"clamp": True} if c.clamp else {}
    z, _ = F.rdc_renoise(y, x_hat, seed, sigma=c.sigma, granularity=c.granularity, detach=c.detach,
                         backend=be, **kw)
    out_pos, out_neg = net_pair(z)
    gamma = F.p2n_gamma(t, total, start=c.gamma_start, end=c.gamma_end)
    return F.p2n_loss(out_pos, out_neg, gamma, c.eps, backend=be), x_hat.detach()


def build(config: P2NConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
          **overrides) -> Trainer:
    """A :class:`Trainer` for P2N with the initial weights loaded (keep it to fit many images).

    Args:
        config: a :class:`P2NConfig` (default: the P2N defaults); ``overrides`` replace fields.
        in_ch: image channels (the shipped weights are RGB: ``in_ch`` must be 3 for them).
        model: a network to use instead of a new UNetN2N (its current weights become the init).
    """
    from fastdenoise.models.unet_n2n import UNetN2N

    cfg = (config or P2NConfig()).replace(**overrides) if overrides else (config or P2NConfig())
    if cfg.init not in ("gaussian_pretrained", "scratch"):
        raise ValueError(f"init must be 'gaussian_pretrained' or 'scratch', got {cfg.init!r}")
    if model is None:
        torch.manual_seed(cfg.seed)
        model = UNetN2N(in_ch)
        if cfg.init == "gaussian_pretrained":
            path = cfg.weights or DEFAULT_WEIGHTS
            if in_ch != 3:
                raise ValueError(f"the Gaussian-pretrained weights are RGB; in_ch={in_ch} needs init='scratch' "
                                 "(fastdenoise.denoise replicates grayscale to RGB for you)")
            if os.path.exists(path):
                model.load_state_dict(load_weights(path))
            elif cfg.weights:
                raise FileNotFoundError(f"weights file not found: {cfg.weights}")
            else:
                warnings.warn(f"shipped P2N weights missing ({path}); starting from scratch", stacklevel=2)
    return Trainer(model, P2N(cfg), cfg)


def fit(y: torch.Tensor, config: P2NConfig | None = None, *, clean: torch.Tensor | None = None,
        trainer: Trainer | None = None, **overrides) -> FitResult:
    """Single-image mode: fit P2N to ``y`` (B, C, H, W) on [0, 1] and return the result.

    ``trainer`` (from :func:`build`) is re-initialised in place and reused; otherwise one is built.
    """
    tr = trainer or build(config, in_ch=y.shape[-3], **overrides)
    return tr.fit(y, clean=clean)


def train(images: list, config: P2NConfig | None = None, *, crop: int = 128, batch: int = 4,
          iters: int | None = None, trainer: Trainer | None = None, **overrides) -> Trainer:
    """Dataset mode: train on random ``crop`` crops of ``images`` ((C, H, W) tensors); return the trainer.

    Denoise afterwards with ``trainer.denoise(y)``. Checkpoint/resume through the config.
    """
    tr = trainer or build(config, in_ch=int(torch.as_tensor(images[0]).shape[0]), **overrides)
    tr.fit_dataset(crop_sampler(images, crop, batch, tr.cfg.seed), iters=iters)
    return tr


def fit_many(images: torch.Tensor, config: P2NConfig | None = None, *, trainer: Trainer | None = None,
             iters: int | None = None, **overrides) -> torch.Tensor:
    """Throughput mode: fit one independent copy of the network to each of ``images`` at once.

    ``images`` is (K, C, H, W) on [0, 1]; model k sees only image k (its own weights and AdamW state,
    started from the same initial weights). The K networks run as one batched network through
    ``torch.func.functional_call`` under ``torch.vmap`` (batched weights become grouped convolutions),
    so a GPU is busy with K images per kernel instead of one. AdamW is elementwise, so a single AdamW
    over the stacked weights is exactly K independent optimisers; the summed loss (K times the fused
    loss's mean over all K images) gives each model the gradient of its own loss.

    The draws differ from K separate :func:`fit` calls (one seed stream for the batch), so outputs are
    statistically, not bitwise, equal to them. With ``ema`` set (the P2N default) each model's result is
    the EMA of its step estimates, as ``FitResult.best`` of :func:`fit`. Not supported here: CUDA graph
    capture and checkpoints (use :meth:`Trainer.fit` per image for those).

    Args:
        images: (K, C, H, W) noisy images, all the same size.
        config, overrides: as for :func:`build`; ``trainer`` supplies the network and initial weights.
        iters: iterations (default: the config's, else 100).

    Returns:
        (K, C, H, W) float32 denoised images: each model's output EMA (``ema`` set), else its output on its
        image after training.
    """
    from fastdenoise.methods.engine import ema_update
    from fastdenoise.methods.engine import iter_seed
    from fastdenoise.methods.engine import make_optimizer

    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (K, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    tr = trainer or build(config, in_ch=images.shape[1], **overrides)
    c = tr.cfg
    if not isinstance(c, P2NConfig):
        raise TypeError("trainer must be a P2N trainer (from fastdenoise.methods.p2n.build)")
    dev = tr.device
    y = images.to(dev, torch.float32).contiguous()
    k = y.shape[0]
    total = tr.total_iters(iters)
    model = tr.model
    names = [n for n, _ in model.named_parameters()]
    params = {n: tr.init_state[n].to(dev).unsqueeze(0).repeat(k, *([1] * tr.init_state[n].dim()))
              .requires_grad_(True) for n in names}
    buffers = {n: b.unsqueeze(0).expand(k, *b.shape) for n, b in model.named_buffers()}
    opt = make_optimizer(params.values(), c, dev)

    def one(p, b, x):
        return torch.func.functional_call(model, (p, b), (x,))

    batched = torch.vmap(one)
    amp = tr.amp

    def net(x):  # (K, n, C, H, W) -> (K, n, C, H, W) fp32
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            return batched(params, buffers, x).float()

    def single(x):  # (K, C, H, W): image i through model i
        return net(x.unsqueeze(1)).squeeze(1)

    def pair(z):  # z is [positives (K); negatives (K)]: model i gets (z[i], z[K + i])
        out = net(z.view(2, k, *y.shape[1:]).transpose(0, 1))
        return out[:, 0], out[:, 1]

    model.train()
    ema = None
    for t in range(total):
        loss, est = _p2n_step(c, tr.backend, single, pair, y, t, total, iter_seed(c.seed, t))
        loss = loss * k  # the mean over K images -> the sum of the K models' own losses
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if c.ema is not None:
            ema = ema_update(ema, est, c.ema)
    if ema is not None:
        return ema.contiguous()
    with torch.no_grad():
        model.eval()
        res = single(y)
        model.train()
    return res.contiguous()
