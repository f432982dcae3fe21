"""Positive2Negative (P2N, CVPR 2025) on the fused ops.

Per iteration:

1. ``x_hat = F(y)``, **with** gradients through x_hat and n_hat = y - x_hat (see "Deviation" below);
2. ``z = [x_hat + a n_hat; x_hat - b n_hat]`` with a, b ~ N(1, 0.75), one scalar per image and branch,
   not clamped (:func:`fastdenoise.functional.rdc_renoise`, one kernel);
3. one 2B forward ``F(z)`` split into (positive, negative);
4. ``L = mean((|F(y+) - F(y-)| + 1e-8)^gamma_t)`` (:func:`fastdenoise.functional.p2n_loss`, fused
   forward/backward) with gamma linear from 2 to 1.5 per iteration (:func:`~fastdenoise.functional.p2n_gamma`);
5. AdamW (lr 1e-4, weight decay 0.01), 100 iterations (CUDA; 50 on the CPU from a start, with the
   collapse guard, below); the result is the EMA (decay 0.9) of the step's x_hat (``FitResult.best``;
   ``ema=None`` returns the network's output after the last step).

Defaults by device. CUDA: the paper's protocol, 100 iterations from the Gaussian-pretrained start
(``start="gaussian"``), no guard. CPU: the camera start (``start="camera"``: the Gaussian start supervised
further on a mix of Gaussian and camera noise), 50 iterations, collapse guard 0.5
(:class:`~fastdenoise.engine.callbacks.CollapseGuard`, a safety net). Through :func:`fastdenoise.denoise` a
photo whose noise neighbouring pixels share (every real camera photo) is fitted on its four stride-2
sub-images (``pd="auto"``), which is what makes the fit gain on real noise (below).

Why a fit slides to the noisy input, and why pixel-shuffling stops it. For a network that acts on a noise
component with gain ``w`` (0: removes it, 1: passes it), the loss on that component is proportional to
``(w (1 - w))^2``: it falls both towards 0 and towards 1, and gradient descent takes each component to the
nearer end. Components the start removes more than half of are removed entirely (the fit gains); components
it passes more than half of are passed entirely (the fit moves towards the identity and the noisy image). On
real photos (measured on the 40 SIDD validation blocks, docs/methods/p2n.md) the noise of neighbouring
pixels is correlated (0.47 on average) and both starts pass much of it: fitted at full resolution, some
blocks gain (01_19: 28.12 -> 32.51 dB) and others slide to the noisy input (06_20: 21.62 -> 18.02 dB, noisy
17.76). On the stride-2 sub-images the correlation is 0.08, the start removes most of the noise, and both
gain (32.39 -> 33.29 and 26.35 -> 28.14 dB).

Output EMA (a fastdenoise default, measured 2026-11-22 on a 128x128 astronaut crop, sigma 25, shipped
weights, 100 iterations): the step estimates move by 0.3-0.7 dB from one iteration to the next (28.64 -
29.45 dB), and the last one can sit in a dip (29.22 dB, below the pretrained 29.31 dB). Their EMA with
decay 0.9 is smooth and ends at 29.48 dB (lr 5e-5: 29.51 dB).

Gradients through x_hat, unlike the paper's pseudocode, which stops them (measured, 2026-11-22): with x_hat detached
(first pass under ``no_grad``) the only thing the loss asks of the network is ``F(y+) == F(y-)``, and
AdamW's sign-like steps shrink the network's gain toward a constant output: on a 96x96 astronaut crop
(sigma 25, shipped weights, 30 iterations, lr 1e-4) PSNR went 27.81 -> 11.77 dB. Letting gradients
flow through x_hat (as the "P2N+" ports do) ties the renoised inputs to the network's own output and is
stable: 27.81 -> 28.42 dB after 30 iterations and 28.65 dB after 100 (sigma=0: 28.66 dB). Reproduce with
``P2NConfig(detach=True)``, which keeps the paper-pseudocode behaviour (and its memory saving).

The network is :class:`~fastdenoise.models.unet_n2n.UNetN2N`, initialised from one of fastdenoise's own
supervised starts (``init="gaussian_pretrained"``, the default; ``start=`` picks ``fastdenoise/weights/
unet_n2n_gauss.pt`` or ``unet_n2n_camera.pt``, :data:`STARTS`; P2N's are not public, see
``scripts/pretrain_p2n.py``) or from scratch (``init="scratch"``).

Example:
    >>> from fastdenoise.methods import p2n
    >>> res = p2n.fit(noisy)                 # (1, 3, H, W) in [0, 1] -> FitResult
    >>> trainer = p2n.build()                # reuse one model for many images (in-place re-init)
    >>> outs = [trainer.fit(y).output for y in images]
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import Trainer
from fastdenoise.engine import method_api

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
STARTS = {
    "gaussian": ("unet_n2n_gauss.pt", "unet_n2n_gauss_gray.pt"),
    "camera": ("unet_n2n_camera.pt", "unet_n2n_camera_gray.pt"),
}
"""The shipped starts by name: (RGB file, grayscale file) in ``fastdenoise/weights/`` (docs/STARTS.md)."""
CPU_START, CUDA_START = "camera", "gaussian"
DEFAULT_WEIGHTS = os.path.join(WEIGHTS_DIR, STARTS[CPU_START][0])     # the CPU default's files
GRAY_WEIGHTS = os.path.join(WEIGHTS_DIR, STARTS[CPU_START][1])
ITERS, CPU_ITERS_START = 100, 50     # the paper's 100; 50 on the CPU from the start (module docstring)
CPU_GUARD = 0.5                      # the CPU default collapse guard (module docstring)
INITS = ("gaussian_pretrained", "start", "scratch")    # "start" = "gaussian_pretrained" (the shared name)
GRAY_MODES = ("native", "replicate")


@dataclass
class P2NConfig(FitConfig):
    """P2N defaults (see the module docstring). Extra fields:

    Attributes:
        sigma: std of the renoising scales N(1, sigma).
        granularity: ``"image"`` (default), ``"batch"`` or ``"pixel"`` scales.
        gamma_start, gamma_end: the loss exponent schedule (linear per iteration).
        eps: the loss epsilon.
        detach: stop-gradient through x_hat (first pass under no_grad), as the paper's pseudocode.
            Default False: gradients flow through x_hat (stable; see the module docstring).
        clamp: clamp the renoised images to [0, 1] (off by default).
        init: ``"gaussian_pretrained"`` (the shipped start named by ``start``) or ``"scratch"``.
        start: which shipped start: ``"gaussian"`` (supervised on Gaussian noise, the paper's init) or
            ``"camera"`` (the Gaussian start supervised further on a mix of Gaussian and camera noise,
            ``fastdenoise.noise.add_camera``; for real photo noise). See :data:`STARTS`. None: ``"gaussian"``
            on CUDA (the paper's protocol), ``"camera"`` on the CPU.
        guard: the collapse guard (:class:`fastdenoise.engine.callbacks.CollapseGuard`): when the residual energy
            of a step's estimate falls below ``guard`` times the start's, the fit stops and keeps the start.
            None: 0.5 on the CPU from a start or ``weights``, otherwise off (CUDA: the paper's protocol); 0: off.
            A safety net: on pixel-independent noise (and real photos through ``denoise``'s ``pd="auto"``) a fit
            does not fall that far.
        weights: path of the initial weights (None: the shipped ones: RGB, or the grayscale start for
            1-channel images).
        gray: how a 1-channel image meets the pretrained start: ``"native"`` (default) fits the shipped
            grayscale start (``weights/unet_n2n_gauss_gray.pt``, trained on luma images with independent
            noise); ``"replicate"`` begins from the RGB start folded over the colour channels (exactly the RGB
            network on the image replicated to three channels, outputs averaged: the engine's grayscale
            policy for a method without a grayscale start).
    """

    iters: int | None = None
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
    start: str | None = None
    guard: float | None = None
    weights: str | None = None
    gray: str = "native"


class P2N(Method):
    """Positive2Negative: the step below on the N2N U-Net from the Gaussian-pretrained start."""

    name = "p2n"
    batched = True
    summary = ("Positive2Negative (default): 100 iterations from a Gaussian-pretrained U-Net (CPU: 50 from the "
               "camera-noise start, with a collapse guard)")
    Config = P2NConfig
    inits = INITS

    def defaults(self, device: torch.device, started: bool) -> dict:
        cpu = device.type != "cuda"
        iters = CPU_ITERS_START if cpu and started else ITERS
        guard = CPU_GUARD if cpu and started else None     # a network from scratch begins far from its input
        return {**super().defaults(device, started), "iters": iters, "guard": guard}

    def check(self) -> None:
        if self.cfg.gray not in GRAY_MODES:
            raise ValueError(f"gray must be one of {GRAY_MODES}, got {self.cfg.gray!r}")
        g = self.cfg.guard
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < 1):
            raise ValueError(f"guard must be a number in [0, 1) (0: off) or None (the default), got {g!r}")
        if self.cfg.start not in STARTS:
            raise ValueError(f"start must be one of {tuple(STARTS)}, got {self.cfg.start!r}")

    def resolve(self, cfg: P2NConfig, device: torch.device) -> P2NConfig:
        # "gaussian_pretrained" is P2N's name of the shared "start"
        cfg = cfg.replace(init="start") if cfg.init == "gaussian_pretrained" else cfg
        if cfg.start is None:   # the paper's Gaussian-pretrained init on CUDA; the camera start on the CPU
            cfg = cfg.replace(start="gaussian" if device.type == "cuda" else "camera")
        return cfg

    def start_path(self, in_ch: int) -> str | None:
        """The shipped start named by ``start``: RGB, or for 1-channel images its grayscale file
        (``gray="native"``; with ``gray="replicate"`` none, so the engine folds the RGB start over the colour
        channels)."""
        rgb, gray = (os.path.join(WEIGHTS_DIR, f) for f in STARTS[self.cfg.start])
        if in_ch == 1:
            native = self.cfg.gray == "native" and os.path.exists(gray)
            return gray if native else None
        return rgb if in_ch == 3 and os.path.exists(rgb) else None

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        from fastdenoise.models.unet_n2n import UNetN2N

        return UNetN2N(in_ch)

    def step(self, run, y: torch.Tensor, t: int, total: int, seed: int):
        return p2n_step(self.cfg, run.backend, lambda x: run.net(x).float(),
                        lambda z: run.net(z).float().chunk(2, dim=0), y, t, total, seed)


def p2n_step(c: P2NConfig, be, net, net_pair, y: torch.Tensor, t: int, total: int, seed: int):
    """One P2N iteration (the numbered steps of the module docstring): ``net(y)`` gives x_hat (fp32),
    ``net_pair(z)`` maps the renoised [positives; negatives] batch to ``(out_pos, out_neg)``.
    Returns ``(loss, x_hat detached)``."""
    import fastdenoise.functional as F

    # 1. x_hat = F(y) (with gradients unless detach)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not c.detach):
        x_hat = net(y)
    # 2. z = [x_hat + a n_hat; x_hat - b n_hat], n_hat = y - x_hat, a, b ~ N(1, sigma)
    kw = {"clamp": True} if c.clamp else {}
    z, _ = F.rdc_renoise(y, x_hat, seed, sigma=c.sigma, granularity=c.granularity, detach=c.detach,
                         backend=be, **kw)
    # 3. one 2B forward F(z) -> (positive, negative)
    out_pos, out_neg = net_pair(z)
    # 4. L = mean((|F(y+) - F(y-)| + eps)^gamma_t)
    gamma = F.p2n_gamma(t, total, start=c.gamma_start, end=c.gamma_end)
    return F.p2n_loss(out_pos, out_neg, gamma, c.eps, backend=be), x_hat.detach()


build, fit, train = method_api(P2N)


def fit_many(images: torch.Tensor, config: P2NConfig | None = None, *, trainer: Trainer | None = None,
             iters: int | None = None, seed: int | None = None, **overrides) -> torch.Tensor:
    """Throughput mode: fit one independent copy of the network to each of ``images`` at once.

    ``images`` is (K, C, H, W) on [0, 1]; copy k sees only image k. The engine's batched fit
    (:meth:`fastdenoise.engine.Trainer.fit_many`): the same loop, schedules and EMAs as :func:`fit`, the K
    copies run as one batched network, so a GPU is busy with K images per kernel instead of one. The draws
    differ from K separate :func:`fit` calls (one seed stream for the batch): outputs are statistically, not
    bitwise, equal to them.

    Args:
        images: (K, C, H, W) noisy images, all the same size.
        config, overrides: as for :func:`build`; ``trainer`` supplies the network and initial weights.
        iters: iterations (default: the config's, else the method's).
        seed: seed of the draws (default: the config's).

    Returns:
        (K, C, H, W) float32 denoised images: each copy's output EMA (``ema`` set, the P2N default), else its
        output after training.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (K, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    tr = trainer or build(config, in_ch=images.shape[1], **overrides)
    if not isinstance(tr.method, P2N):
        raise TypeError("trainer must be a P2N trainer (from fastdenoise.methods.p2n.build)")
    return tr.fit_many(images, iters=iters, seed=seed).best.contiguous()
