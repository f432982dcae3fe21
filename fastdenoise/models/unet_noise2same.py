"""The Noise2Same network: the GVTNets U-Net used by the official TensorFlow code.

Layout for ``depth`` = 3, ``base`` = 96 (widths double at each down-sampling):

* 3x3 conv C->96 (no bias), pre-activation residual block at 96;
* down: 2x2 stride-2 conv 96->192 (bias), residual block 192; 2x2 stride-2 conv 192->384 (bias),
  bottom residual block 384;
* up: 2x2 stride-2 transposed conv 384->192 (bias), concat the skip (384), residual block 384->192;
  transposed conv 192->96, concat (192), residual block 192->96;
* BN -> ReLU -> 1x1 conv 96->C (no bias).

Residual block (pre-activation, He et al. 2016 / TF official ResNet v2): ``BN-ReLU-conv3x3-BN-ReLU-conv3x3``
plus the shortcut; the 3x3 convs have no bias; where the width changes the shortcut is a 1x1 conv
(no bias) applied to the pre-activated input (after the first BN-ReLU), as in ResNet v2.

BatchNorm: TF momentum 0.997 is torch ``momentum=0.003``; eps 1e-5. Init: Glorot-uniform weights,
zero biases, BN weight 1 and bias 0.

Parameter count (with the BN affine parameters, biases only on the stride-2 convs and the transposed
convs): 5,563,680 for C = 1 and 5,565,600 for C = 3.
Running statistics are buffers, not parameters.

Inputs are reflect-padded (bottom/right) to a multiple of 2**depth and the output cropped back. Note
that Noise2Same runs the masked and the full pass separately, each with its own
batch statistics in training mode; concatenating them into one batch changes the result.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fastdenoise.models.unet_nb2nb import crop_to
from fastdenoise.models.unet_nb2nb import pad_to_multiple

__all__ = ["UNetNoise2Same"]

BN_MOMENTUM = 0.003  # = 1 - 0.997 (TF convention)
BN_EPS = 1e-5


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class PreActBlock(nn.Module):
    """Pre-activation residual block ``cin -> cout`` with a 1x1 projection shortcut when they differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = _bn(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn2 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.proj is None else self.proj(pre)
        t = self.conv1(pre)
        t = self.conv2(self.relu(self.bn2(t)))
        return t + shortcut


class UNetNoise2Same(nn.Module):
    """Noise2Same / GVTNets U-Net. ``forward(x)``: (B, in_ch, H, W) -> (B, out_ch, H, W), any H, W.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        base: width at full resolution (doubled at each level).
        depth: number of resolution levels (``depth - 1`` down-samplings; the official network uses
            3 with base 96, one residual block per level). Inputs are padded to a multiple of
            ``2**depth`` (= 8), as the official inference code does.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, base: int = 96, depth: int = 3):
        super().__init__()
        for name, v in (("in_ch", in_ch), ("out_ch", out_ch), ("base", base), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.depth = depth
        self.stem = nn.Conv2d(in_ch, base, 3, padding=1, bias=False)
        self.enc_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        c = base
        for _ in range(depth - 1):
            self.enc_blocks.append(PreActBlock(c, c))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.bottom = PreActBlock(c, c)
        self.ups = nn.ModuleList()
        self.dec_blocks = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            skip = base * 2**i
            self.ups.append(nn.ConvTranspose2d(c, skip, 2, stride=2))
            self.dec_blocks.append(PreActBlock(2 * skip, skip))
            c = skip
        self.bn_out = _bn(c)
        self.out = nn.Conv2d(c, out_ch, 1, bias=False)
        self.relu = nn.ReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, zero biases, BN (1, 0); running statistics reset."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        t = self.stem(pad_to_multiple(x, 2**self.depth))
        skips = []
        for block, down in zip(self.enc_blocks, self.downs):
            t = block(t)
            skips.append(t)
            t = down(t)
        t = self.bottom(t)
        for up, block in zip(self.ups, self.dec_blocks):
            t = block(torch.cat([up(t), skips.pop()], dim=1))
        t = self.out(self.relu(self.bn_out(t)))
        return crop_to(t, h, w)
