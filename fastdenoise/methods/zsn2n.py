"""ZS-N2N (Zero-Shot Noise2Noise, Mansour & Heckel, CVPR 2023) on the fused ops.

Per iteration, on the whole noisy image ``y`` (the network ``f`` predicts noise; denoised = y - f(y)):

1. ``(d1, d2) = D(y)``: the fixed pair downsampler, both diagonal averages of every 2x2 cell in one pass
   (:func:`fastdenoise.functional.pair_downsample`; d1 = (TR + BL)/2, d2 = (TL + BR)/2);
2. ``f(d1), f(d2)`` in one batched pass, and ``f(y)`` on the full image;
3. ``L = 1/2 [mse(d1, d2 - f(d2)) + mse(d2, d1 - f(d1))]
   + 1/2 [mse(d1 - f(d1), D1(y - f(y))) + mse(d2 - f(d2), D2(y - f(y)))]`` (residual + consistency, no
   stop-gradient) with the fused :func:`~fastdenoise.functional.zsn2n_loss`, which recomputes both
   downsamplings of ``y`` and of ``y - f(y)`` on the fly;
4. Adam, lr 1e-3, x0.5 after 3/4 of the iterations (the reproduction's StepLR at 1500 of 2000).

Network: :class:`~fastdenoise.models.zsn2n.ZSN2NNet` (22,275 parameters, 45x fewer than P2N's U-Net).
Result: ``y - f(y)`` after the last step, or with ``ema`` set the EMA of the steps' estimates.

Defaults: CUDA 2000 iterations (the paper's), tta 1. CPU: 600 iterations from the shipped start
(``fastdenoise/weights/zsn2n_start.pt``, the default whenever it fits), 1000 from scratch, and the output
averaged over the 8 dihedral transforms (``tta=8``). Measurements: ``docs/methods/zsn2n.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import method_api
from fastdenoise.engine import staircase_lr

CUDA_ITERS, CPU_ITERS = 2000, 1000
CPU_ITERS_START = 600        # from the shipped start (module docstring)


@dataclass
class ZSN2NConfig(FitConfig):
    """ZS-N2N defaults. Extra fields:

    Attributes:
        width: hidden channels of the network (48).
        decay_at: fraction of the iterations after which the learning rate is multiplied by ``decay``.
        decay: the step factor (0.5).
        weights: optional initial weights (a state dict or trainer checkpoint of the network).
    """

    iters: int | None = None       # None: 2000 on CUDA, 1000 on the CPU
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    ema: float | None = None
    width: int = 48
    decay_at: float = 0.75
    decay: float = 0.5
    weights: str | None = None


class ZSN2N(Method):
    """Zero-Shot Noise2Noise: the pair-downsampler step below on a 22k-parameter noise predictor."""

    name = "zsn2n"
    summary = "Zero-Shot Noise2Noise: fixed pair downsampler, 22k-parameter network (the fastest)"
    Config = ZSN2NConfig

    def check(self) -> None:
        if not 0.0 < self.cfg.decay_at <= 1.0:
            raise ValueError(f"decay_at must be in (0, 1], got {self.cfg.decay_at}")

    def defaults(self, device: torch.device, started: bool) -> dict:
        cuda = device.type == "cuda"
        iters = CUDA_ITERS if cuda else CPU_ITERS_START if started else CPU_ITERS
        # CPU: 8 transforms (+0.12 dB at 300 iterations, 8 tiny forwards)
        return {**super().defaults(device, started), "iters": iters, "tta": 1 if cuda else 8}

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        from fastdenoise.models.zsn2n import ZSN2NNet

        return ZSN2NNet(in_ch, self.cfg.width)

    def lr_at(self, t: int, total: int) -> float:
        return staircase_lr(self.cfg.lr, t, max(1, round(self.cfg.decay_at * total)), self.cfg.decay)

    def step(self, run, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        be = run.backend
        # 1. the two diagonal sub-images of y, in one pass
        d1, d2 = F.pair_downsample(y, backend=be)
        # 2. f(d1), f(d2) in one batched pass; f(y) on the full image
        n1, n2 = run.net(torch.cat([d1, d2])).float().chunk(2)
        n_y = run.net(y).float()
        # 3. residual + consistency loss (fused; downsamplings recomputed in the kernel)
        loss = F.zsn2n_loss(y, n_y, n1, n2, backend=be)
        return loss, (y - n_y).detach()

    def infer(self, run, x: torch.Tensor, **options) -> torch.Tensor:
        return x - run.forward(x)


build, fit, train = method_api(ZSN2N)
