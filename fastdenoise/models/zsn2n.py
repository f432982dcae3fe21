"""The ZS-N2N network (Mansour & Heckel, CVPR 2023): two 3x3 convolutions of width 48
with LeakyReLU(0.2) and a 1x1 head, predicting the NOISE of its input (denoised = y - f(y)).
22,275 parameters for C = 3."""
from __future__ import annotations

import torch
from torch import nn


class ZSN2NNet(nn.Module):
    """``f``: (B, C, H, W) -> (B, C, H, W) noise estimate (any H, W; zero-padded 3x3 convolutions)."""

    def __init__(self, in_ch: int = 3, width: int = 48):
        super().__init__()
        self.in_ch = in_ch
        self.conv1 = nn.Conv2d(in_ch, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, in_ch, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
