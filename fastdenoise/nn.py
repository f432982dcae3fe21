"""nn.Module wrappers of the fused ops (hyper-parameters stored on the module)."""
from __future__ import annotations

import torch
from torch import nn

from fastdenoise import functional as F
from fastdenoise.ops.blindspot.reference import DIRECTIONS
from fastdenoise.ops.blindspot.reference import direction_index


class ShiftConv2d(nn.Conv2d):
    """Shifted convolution module: a Conv2d whose output pixel sees only the half-plane on one side of
    it, see :func:`fastdenoise.functional.shift_conv2d`.

    Args:
        in_ch, out_ch: channels.
        kernel_size: odd square kernel size (3 in AT-BSN).
        direction: ``"down"`` (rows <= i), ``"up"`` (rows >= i), ``"right"`` (columns <= j),
            ``"left"`` (columns >= j), or 0..3 in the order down, left, up, right.
        bias: learnable bias.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, direction="down", bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_ch, out_ch, kernel_size, padding=0, bias=bias)
        self.direction = direction_index(direction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.shift_conv2d(x, self.weight, self.bias, self.direction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, direction={DIRECTIONS[self.direction]!r}"


class ShiftedMaxPool2d(nn.Module):
    """Module form of :func:`fastdenoise.functional.shifted_max_pool2d`."""

    def __init__(self, direction="down", backend: str | None = None):
        super().__init__()
        self.direction, self.backend = direction_index(direction), backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.shifted_max_pool2d(x, self.direction, backend=self.backend)

    def extra_repr(self) -> str:
        return f"direction={self.direction}, backend={self.backend!r}"


class Nb2NbLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.nb2nb_loss` with a fixed ``gamma``."""

    def __init__(self, gamma: float = 2.0, backend: str | None = None):
        super().__init__()
        self.gamma, self.backend = float(gamma), backend

    def forward(self, out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int) -> torch.Tensor:
        return F.nb2nb_loss(out, y, fy, seed, self.gamma, backend=self.backend)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, backend={self.backend!r}"


class NeighborSubsampler(nn.Module):
    """Module form of :func:`fastdenoise.functional.neighbor_subsample`."""

    def __init__(self, backend: str | None = None):
        super().__init__()
        self.backend = backend

    def forward(self, x: torch.Tensor, seed: int):
        return F.neighbor_subsample(x, seed, backend=self.backend)


class APRLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.apr_loss` with a fixed ``lam`` and gradient policy."""

    def __init__(self, lam: float = 4.0, grad_through_reg: bool = False, backend: str | None = None):
        super().__init__()
        self.lam, self.grad_through_reg, self.backend = float(lam), bool(grad_through_reg), backend

    def forward(self, out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int) -> torch.Tensor:
        return F.apr_loss(out, y, fy, seed, self.lam, self.grad_through_reg, backend=self.backend)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, grad_through_reg={self.grad_through_reg}, backend={self.backend!r}"


class Blind2GradLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.blind2grad_loss` with fixed hyper-parameters."""

    def __init__(self, omega: float = 0.8, gamma: float = 0.5, grad_on: str = "all", detach_full: bool = True,
                 backend: str | None = None):
        super().__init__()
        self.omega, self.gamma, self.grad_on, self.detach_full = float(omega), float(gamma), grad_on, bool(detach_full)
        self.backend = backend

    def forward(self, out_masked: torch.Tensor, out_full: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        return F.blind2grad_loss(out_masked, out_full, y, mask, self.omega, self.gamma, self.grad_on, self.detach_full,
                                 backend=self.backend)

    def extra_repr(self) -> str:
        return (f"omega={self.omega}, gamma={self.gamma}, grad_on={self.grad_on!r}, detach_full={self.detach_full}, "
                f"backend={self.backend!r}")


class Noise2SameLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.noise2same_loss` with a fixed ``lam`` and ``eps``."""

    def __init__(self, lam: float = 2.0, eps: float = 1e-12, backend: str | None = None):
        super().__init__()
        self.lam, self.eps, self.backend = float(lam), float(eps), backend

    def forward(self, out_full: torch.Tensor, out_masked: torch.Tensor, x: torch.Tensor, mask: torch.Tensor):
        return F.noise2same_loss(out_full, out_masked, x, mask, self.lam, self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, eps={self.eps}, backend={self.backend!r}"


class P2NLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.p2n_loss`; ``gamma`` may be overridden per call
    (e.g. by :func:`fastdenoise.functional.p2n_gamma`), and ``out_neg=None`` splits a 2B batch."""

    def __init__(self, gamma: float = 2.0, eps: float = 1e-8, backend: str | None = None):
        super().__init__()
        self.gamma, self.eps, self.backend = float(gamma), float(eps), backend

    def forward(self, out_pos: torch.Tensor, out_neg: torch.Tensor | None = None, gamma: float | None = None):
        if out_neg is None:
            out_pos, out_neg = out_pos.chunk(2, 0)
        return F.p2n_loss(out_pos, out_neg, self.gamma if gamma is None else gamma, self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, eps={self.eps}, backend={self.backend!r}"


class RechargeL1Loss(nn.Module):
    """Module form of :func:`fastdenoise.functional.recharge_l1_loss`."""

    def __init__(self, backend: str | None = None):
        super().__init__()
        self.backend = backend

    def forward(self, student: torch.Tensor, y: torch.Tensor, teachers, seed: int) -> torch.Tensor:
        return F.recharge_l1_loss(student, y, teachers, seed, backend=self.backend)


class PairDownsampler(nn.Module):
    """Module form of :func:`fastdenoise.functional.pair_downsample` (ZS-N2N)."""

    def __init__(self, backend: str | None = None):
        super().__init__()
        self.backend = backend

    def forward(self, x: torch.Tensor):
        return F.pair_downsample(x, backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


class ZSN2NLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.zsn2n_loss`."""

    def __init__(self, backend: str | None = None):
        super().__init__()
        self.backend = backend

    def forward(self, y: torch.Tensor, n_y: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor) -> torch.Tensor:
        return F.zsn2n_loss(y, n_y, n1, n2, backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"
