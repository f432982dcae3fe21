"""The Blind2Grad network, reconstructed from the paper (no official code exists).

Every choice below that the paper leaves open is an interpretation, listed here:

1. **Input partial conv** (Self2Self style). ``forward(x, mask)`` takes the Bernoulli mask (1 = visible,
   0 = hidden; (B, 1, H, W) broadcast over channels, or (B, C, H, W)). The first 3x3 conv sees
   ``mask * x`` and is renormalised by the mask coverage of each window:
   ``out = conv(mask * x) * (k*k*C / coverage) + bias`` where coverage > 0, 0 elsewhere; the updated
   mask is ``coverage > 0``. Zero padding counts as hidden. Only the input layer is partial (the paper
   mentions "a masked (partial) conv at the input"); the updated mask is not propagated further.
2. **Encoder**: partial conv C->base and conv base->base at H, then five levels of
   (2x2 max-pool, 3x3 conv base->base), i.e. 5 down-samplings to H/32. Every encoder conv is followed
   by LeakyReLU(0.1) (the paper's "ReLU hyperparameter 0.1"); no normalisation in the encoder.
3. **Decoder** (symmetric, 5 levels, H/16 ... H): nearest 2x up-sampling, concatenation with the
   encoder feature of that scale (plus ``mask * x`` at full resolution, as in Self2Self), T-standout
   dropout on the concatenation, then two (3x3 conv, BatchNorm, LeakyReLU(0.1)) layers of width
   2*base (the last level: 2*base then base), then squeeze-excitation channel attention (global
   average pool, FC C->C/8, ReLU, FC C/8->C, sigmoid, channel-wise scaling).
4. **Gradient layer** at the H/2 decoder level (after its convs and attention): the feature map f is
   concatenated with its horizontal and vertical forward differences (D_x f, D_y f, zero in the last
   column/row, the same ∇ as the loss) and mixed back to the level width by a 1x1 conv and
   LeakyReLU(0.1).
5. **T-standout dropout**: inverted dropout with drop probability ``dropout`` that never drops a unit
   whose gradient magnitude is >= ``eps_s``. The gradient magnitude of a unit is that of the
   finite-difference gradient of the dropout's *input* feature map at that unit,
   ``sqrt(D_x f^2 + D_y f^2)`` (forward differences, zero beyond the last column/row). Protected units
   pass unchanged; the others are zeroed with probability p and scaled by 1/(1-p), so every unit keeps
   its expectation. ``eps_s`` defaults to 25/255 (the paper's 25 on the 0-255 scale, applied to
   features of an image on [0, 1]). Standout is active in training mode and, when ``mc_dropout``
   is True, also in eval mode (for the Self2Self-style average of 40 stochastic predictions);
   otherwise it is the identity in eval mode. It uses torch's global RNG.
6. **Output**: a 3x3 conv base->out_ch followed by a sigmoid (Self2Self; the clean image lies in
   [0, 1]); ``out_activation="none"`` gives a linear output.
7. **Padding**: x and mask are reflect-padded (bottom/right) to multiples of 32 and the output is
   cropped back, so any H, W works.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastdenoise.models.unet_nb2nb import crop_to
from fastdenoise.models.unet_nb2nb import pad_to_multiple

__all__ = ["Blind2GradNet", "GradientLayer", "PartialConv2d", "SqueezeExcitation", "TStandout", "forward_diff"]


def forward_diff(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(D_x f, D_y f) of a (B, C, H, W) tensor, forward differences, zero in the last column / row."""
    dx = F.pad(f[..., :, 1:] - f[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(f[..., 1:, :] - f[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


class PartialConv2d(nn.Conv2d):
    """Mask-renormalised convolution; ``forward(x, mask) -> (out, updated_mask)``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor):  # type: ignore[override]
        m = mask.expand_as(x).to(x.dtype)
        kh, kw = self.kernel_size
        ones = torch.ones(1, x.shape[1], kh, kw, dtype=x.dtype, device=x.device)
        with torch.no_grad():
            cov = F.conv2d(m, ones, stride=self.stride, padding=self.padding, dilation=self.dilation)
            valid = (cov > 0).to(x.dtype)
            ratio = (kh * kw * x.shape[1]) / cov.clamp_min(1.0) * valid
        out = F.conv2d(x * m, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        out = out * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * valid
        return out, valid


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool, FC, ReLU, FC, sigmoid, channel scaling."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class GradientLayer(nn.Module):
    """cat(f, D_x f, D_y f) -> 1x1 conv back to ``channels`` -> LeakyReLU(0.1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(3 * channels, channels, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        dx, dy = forward_diff(f)
        return F.leaky_relu(self.mix(torch.cat([f, dx, dy], dim=1)), 0.1)


class TStandout(nn.Module):
    """Dropout that never drops units whose finite-difference gradient magnitude is >= ``eps_s``."""

    def __init__(self, p: float, eps_s: float, mc_dropout: bool = False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        if eps_s < 0:
            raise ValueError(f"eps_s must be >= 0, got {eps_s}")
        self.p, self.eps_s, self.mc_dropout = float(p), float(eps_s), mc_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not (self.training or self.mc_dropout):
            return x
        with torch.no_grad():
            dx, dy = forward_diff(x)
            protected = (dx * dx + dy * dy) >= self.eps_s * self.eps_s
            keep = torch.rand_like(x) >= self.p
            scale = torch.where(protected, torch.ones_like(x), keep.to(x.dtype) / (1.0 - self.p))
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}, eps_s={self.eps_s:.6g}, mc_dropout={self.mc_dropout}"


class _DecLevel(nn.Module):
    def __init__(self, cin: int, cmid: int, cout: int, p: float, eps_s: float, gradient: bool):
        super().__init__()
        self.standout = TStandout(p, eps_s)
        self.conv1 = nn.Conv2d(cin, cmid, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cmid)
        self.conv2 = nn.Conv2d(cmid, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcitation(cout)
        self.grad = GradientLayer(cout) if gradient else None

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = self.standout(t)
        t = F.leaky_relu(self.bn1(self.conv1(t)), 0.1)
        t = F.leaky_relu(self.bn2(self.conv2(t)), 0.1)
        t = self.se(t)
        return t if self.grad is None else self.grad(t)


class Blind2GradNet(nn.Module):
    """Blind2Grad denoiser. ``forward(x, mask=None)``: (B, in_ch, H, W) -> (B, out_ch, H, W), any H, W.

    Args:
        in_ch: input channels.
        base: encoder width (the decoder is 2*base wide).
        dropout: T-standout drop probability in the decoder.
        eps_s: T-standout threshold on the feature gradient magnitude (25/255: the paper's 25 on the
            0-255 scale).
        out_ch: output channels (default ``in_ch``).
        out_activation: ``"sigmoid"`` (default) or ``"none"``.
        mc_dropout: keep T-standout active in eval mode (stochastic test-time ensembles).
    """

    def __init__(self, in_ch: int = 3, base: int = 48, dropout: float = 0.3, eps_s: float = 25.0 / 255.0, *,
                 out_ch: int | None = None, out_activation: str = "sigmoid", mc_dropout: bool = False):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        for name, v in (("in_ch", in_ch), ("base", base), ("out_ch", out_ch)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if out_activation not in ("sigmoid", "none"):
            raise ValueError(f"out_activation must be 'sigmoid' or 'none', got {out_activation!r}")
        self.out_activation = out_activation
        b, d = base, 2 * base
        self.pconv = PartialConv2d(in_ch, b, 3, padding=1)
        self.enc0 = nn.Conv2d(b, b, 3, padding=1)
        self.enc = nn.ModuleList([nn.Conv2d(b, b, 3, padding=1) for _ in range(5)])
        levels = []
        for i in range(5):  # H/16, H/8, H/4, H/2, H
            cin = (b if i == 0 else d) + b + (in_ch if i == 4 else 0)
            cout = b if i == 4 else d
            levels.append(_DecLevel(cin, d, cout, dropout, eps_s, gradient=(i == 3)))
        self.dec = nn.ModuleList(levels)
        self.out = nn.Conv2d(b, out_ch, 3, padding=1)
        self.set_mc_dropout(mc_dropout)

    def set_mc_dropout(self, on: bool) -> None:
        """Keep T-standout active in eval mode (True) or not (False)."""
        for m in self.modules():
            if isinstance(m, TStandout):
                m.mc_dropout = bool(on)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones_like(x[:, :1])
        if mask.dim() != 4 or mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:] \
                or mask.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"mask must have shape (B, 1, H, W) or (B, C, H, W) matching x {tuple(x.shape)}, "
                             f"got {tuple(mask.shape)}")
        h, w = x.shape[-2:]
        mask = mask.to(x.dtype)
        xp = pad_to_multiple(x, 32)
        mp = pad_to_multiple(mask, 32)
        xin = xp * mp
        t, _ = self.pconv(xp, mp)
        t = F.leaky_relu(t, 0.1)
        t = F.leaky_relu(self.enc0(t), 0.1)
        skips = [xin, t]
        for conv in self.enc:
            t = F.leaky_relu(conv(F.max_pool2d(t, 2)), 0.1)
            skips.append(t)
        skips.pop()  # the bottom (H/32) is t itself
        for i, level in enumerate(self.dec):
            up = F.interpolate(t, scale_factor=2, mode="nearest")
            extra = [skips.pop()] + ([skips.pop()] if i == 4 else [])
            t = level(torch.cat([up, *extra], dim=1))
        y = self.out(t)
        if self.out_activation == "sigmoid":
            y = torch.sigmoid(y)
        return crop_to(y, h, w)


class MaskedInputNet(nn.Module):
    """Single-input view of a ``forward(x, visible_mask)`` network: ``forward(cat([x, visible], 1))``, so the
    engine's network call, CUDA-graph capture and checkpoints apply unchanged."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :-1], z[:, -1:])
