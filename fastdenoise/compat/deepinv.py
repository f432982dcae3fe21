"""Drop-in for deepinv's self-supervised losses that fastdenoise fuses (needs ``pip install deepinv``).

Switch a deepinv training script with one import line::

    from fastdenoise.compat.deepinv import Neighbor2Neighbor   # instead of deepinv.loss.Neighbor2Neighbor

and keep ``losses = [Neighbor2Neighbor(gamma=2.0)]``, ``deepinv.Trainer(..., losses=losses)``.
(deepinv 0.5's other self-supervised losses, SURE, R2R, splitting, EI, MC, have no fused counterpart here.)

:class:`Neighbor2Neighbor` is a subclass of ``deepinv.loss.Neighbor2Neighbor`` with the same
constructor and ``forward(y, physics, model, **kwargs)``. With the default metric
(``torch.nn.MSELoss()``, mean reduction) it samples ``g1(y)`` with the fused sampler and computes the
loss with the fused Nb2Nb loss; any other metric (L1, deepinv metrics, another reduction) and odd
image sizes defer to deepinv's own implementation. The network output on the full ``y`` that the
Trainer passes as ``x_net`` is reused (detached) instead of running the network on ``y`` a second
time as deepinv's loss does (``reuse_x_net=False`` restores the second pass; the two differ only for
networks whose training-mode output is random, e.g. dropout). Mixed dtypes under autocast (a
bfloat16 network output with float32 measurements) are promoted to float32.

Draws: deepinv draws one ``torch.randint(0, 8)`` per 2x2 cell from torch's default generator of
``y``'s device; this loss draws one 62-bit seed per call from torch's default CPU generator (so it
follows ``torch.manual_seed`` as deepinv does) and the cells' choices from the Philox stream of that
seed. Same law (uniform over the same 8 neighbour pairs, per cell and image, shared across
channels): results are **statistically** equal to deepinv's, not bitwise; with the same per-cell
choices the loss and gradients agree to float32 rounding (tests/test_compat_deepinv.py).
"""
from __future__ import annotations

import torch

try:
    import deepinv as _dinv
    from deepinv.loss import Neighbor2Neighbor as _DeepinvNeighbor2Neighbor
except ImportError as e:  # pragma: no cover - exercised only without deepinv
    raise ImportError("fastdenoise.compat.deepinv needs deepinv: pip install deepinv "
                      "(see requirements-compat.txt)") from e
except RuntimeError as e:  # pragma: no cover - a torchvision built for another torch
    if "torchvision::" not in str(e):
        raise
    raise ImportError("deepinv imports torchvision, whose compiled ops do not load with this torch build "
                      f"({torch.__version__}): install the torchvision built for it ({e})") from e

from fastdenoise._rng import draw_seed
from fastdenoise.ops.neighbor.api import nb2nb_loss
from fastdenoise.ops.neighbor.api import neighbor_subsample

__all__ = ["Neighbor2Neighbor"]

DEEPINV_VERSION = getattr(_dinv, "__version__", "unknown")


class Neighbor2Neighbor(_DeepinvNeighbor2Neighbor):
    r"""deepinv's Neighbor2Neighbor loss with the fused sampler and loss.

    :param metric: metric of both terms (default ``torch.nn.MSELoss()``: fused; anything else runs
        deepinv's own implementation).
    :param float gamma: weight of the regulariser (a number or a one-element tensor).
    :param bool reuse_x_net: reuse the Trainer's ``x_net`` as the network output on ``y`` (default True).
    :param torch.Generator generator: generator the per-call seed is drawn from (default: torch's
        default CPU generator).
    """

    def __init__(self, metric=None, gamma=2.0, *, reuse_x_net: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__(metric=torch.nn.MSELoss() if metric is None else metric, gamma=gamma)
        self.reuse_x_net = reuse_x_net
        self.generator = generator
        self.last_seed: int | None = None

    def fused(self, y: torch.Tensor) -> bool:
        """Whether ``forward`` runs the fused path for measurements ``y``."""
        m = self.metric
        return (type(m) is torch.nn.MSELoss and m.reduction == "mean" and isinstance(y, torch.Tensor)
                and y.dim() == 4 and y.shape[2] % 2 == 0 and y.shape[3] % 2 == 0 and y.shape[2] >= 2
                and y.shape[3] >= 2)

    def forward(self, y, physics, model, x_net=None, **kwargs):
        r"""The Neighbor2Neighbor loss of ``model`` on measurements ``y`` (same arguments as deepinv's).

        :param torch.Tensor y: measurements (B, C, H, W).
        :param deepinv.physics.Physics physics: forward operator (passed to ``model``).
        :param torch.nn.Module model: reconstruction network, called as ``model(y, physics)``.
        :param torch.Tensor x_net: the Trainer's ``model(y, physics)``, reused when given.
        :return: scalar loss.
        """
        if not self.fused(y):
            return super().forward(y, physics, model, **kwargs)
        seed = draw_seed(self.generator)
        self.last_seed = seed
        y1, _ = neighbor_subsample(y, seed, need_g2=False)
        xhat1 = model(y1, physics)
        if self.reuse_x_net and isinstance(x_net, torch.Tensor) and x_net.shape == y.shape:
            xhat = x_net.detach()
        else:
            with torch.no_grad():
                xhat = model(y, physics)
        return nb2nb_loss(xhat1, y, xhat, seed, gamma=self.gamma)
