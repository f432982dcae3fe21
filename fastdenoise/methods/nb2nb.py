"""Neighbor2Neighbor (Nb2Nb, CVPR 2021) on the fused ops.

Per iteration:

1. ``f(y)`` under ``no_grad`` (the regulariser's stop-gradient);
2. ``g1(y)`` from the fused neighbour sub-sampler (:func:`fastdenoise.functional.neighbor_subsample`);
3. ``out = f(g1(y))``;
4. ``L = mean((out - g2 y)^2) + lambda_t mean((out - g2 y - (g1 f(y) - g2 f(y)))^2)`` with the fused
   :func:`~fastdenoise.functional.nb2nb_loss` (same seed, so the same cells; nothing else materialised);
   lambda ramps per iteration, ``lambda_t = gamma (t + 1) / T`` with gamma = 2 (sRGB; 1 for raw);
5. Adam (lr below), constant.

Network: :class:`~fastdenoise.models.unet_nb2nb.UNetNb2Nb` (1.26M params). There is no official
single-image setting (a [DECISION]). Defaults:

* **CUDA: 2000 iterations, Adam lr 3e-4, upstream init** (Kaiming-normal x 0.1; 2000 is the low end of a
  2-5k iteration range).
* **CPU: 150 iterations from the shipped start** (``fastdenoise/weights/nb2nb_start.pt``, the default
  whenever it fits) at Adam lr 1e-3; from scratch 400 iterations, lr 1e-3, init x 0.3 (a fresh U-Net at
  x 0.1 first sits on a blurry plateau below the noisy input for hundreds of iterations; the larger
  init and lr leave it sooner).
* **Output EMA 0.98** (``ema``; ``None`` returns the last iterate): the per-iteration estimate ``f(y)``
  wobbles by about 1 dB from one iteration to the next; the EMA (a ~50-iteration window) smooths it.

``init_scale``/``lr``/``iters`` override each choice. Nb2Nb assumes pixel-independent noise: it does
poorly on spatially correlated (real sRGB) noise. Measurements: ``docs/methods/nb2nb.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import method_api

CUDA_ITERS, CPU_ITERS = 2000, 400
CPU_ITERS_START = 150      # from the shipped start (module docstring)
CUDA_LR, CPU_LR = 3e-4, 1e-3
CUDA_INIT_SCALE, CPU_INIT_SCALE = 0.1, 0.3  # upstream: 0.1


@dataclass
class Nb2NbConfig(FitConfig):
    """Nb2Nb defaults. Extra fields:

    Attributes:
        gamma: final regulariser weight (2 for sRGB, 1 for raw).
        ramp: ramp lambda linearly per iteration to ``gamma`` (False: constant ``gamma``).
        weights: optional initial weights (a state dict or trainer checkpoint of the network).
        init_scale: factor on the Kaiming-normal init of a fresh network (None: 0.1 = upstream on
            CUDA, 0.3 on the CPU).

    ``lr`` None picks the device default (3e-4 on CUDA, 1e-3 on the CPU); ``ema`` defaults to 0.98.
    """

    iters: int | None = None  # None: 2000 on CUDA, 400 on the CPU
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    gamma: float = 2.0
    ramp: bool = True
    weights: str | None = None
    init_scale: float | None = None
    ema: float | None = 0.98


class Nb2Nb(Method):
    """Neighbor2Neighbor: the step below on the Nb2Nb U-Net from a fresh init."""

    name = "nb2nb"
    summary = "Neighbor2Neighbor: from scratch, 2000 iterations on CUDA / 400 on the CPU"
    Config = Nb2NbConfig

    def resolve(self, cfg: Nb2NbConfig, device: torch.device) -> Nb2NbConfig:
        cuda = device.type == "cuda"
        return cfg.replace(init_scale=(CUDA_INIT_SCALE if cuda else CPU_INIT_SCALE) if cfg.init_scale is None
                           else cfg.init_scale,
                           lr=(CUDA_LR if cuda else CPU_LR) if cfg.lr is None else cfg.lr)

    def check(self) -> None:
        s = self.cfg.init_scale
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < float("inf")):
            raise ValueError(f"init_scale must be a positive finite number, got {s!r}")

    def defaults(self, device: torch.device, started: bool) -> dict:
        iters = CUDA_ITERS if device.type == "cuda" else CPU_ITERS_START if started else CPU_ITERS
        return {**super().defaults(device, started), "iters": iters}

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        from fastdenoise.models.unet_nb2nb import UNetNb2Nb

        return UNetNb2Nb(in_ch, in_ch, init_scale=self.cfg.init_scale)

    def step(self, run, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        be = run.backend
        # 1. f(y) under no_grad (the regulariser's stop-gradient)
        with torch.no_grad():
            fy = run.net(y).float()
        # 2. g1(y) from the fused neighbour sub-sampler
        g1, _ = F.neighbor_subsample(y, seed, need_g2=False, backend=be)   # g2 is never used
        # 3. out = f(g1(y))
        out = run.net(g1).float()
        # 4. L = |out - g2 y|^2 + lambda_t |out - g2 y - (g1 f(y) - g2 f(y))|^2 (same seed: same cells)
        lam = self.cfg.gamma * (t + 1) / max(1, total) if self.cfg.ramp else self.cfg.gamma
        return F.nb2nb_loss(out, y, fy, seed, lam, backend=be), fy


build, fit, train = method_api(Nb2Nb)
