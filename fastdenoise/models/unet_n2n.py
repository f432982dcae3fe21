"""The Noise2Noise / MASH / Positive2Negative U-Net.

991,203 parameters for 3 channels, 11.40 GMAC at 256x256. Five 2x2 max-pools, nearest-neighbour
upsampling, LeakyReLU(0.1) after every conv except the last, no output activation: the output is the
clean image itself (not a residual). Inputs of any size are reflect-padded to a multiple of 32 and the
output is cropped back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as tF
from torch import nn

__all__ = ["UNetN2N", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom/right of ``x`` (B, C, H, W) so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original (H, W). Images smaller than the pad fall back to
    replicate padding (reflect needs pad < size).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return tF.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class UNetN2N(nn.Module):
    """N2N/MASH U-Net (``UNet_n2n_un``), as used by P2N.

    Args:
        in_ch: input channels C.
        out_ch: output channels (default C).

    Shapes: (B, in_ch, H, W) -> (B, out_ch, H, W), any H, W (internally padded to a multiple of 32).

    Example:
        >>> net = UNetN2N(3)
        >>> sum(p.numel() for p in net.parameters())
        991203
    """

    def __init__(self, in_ch: int = 3, out_ch: int | None = None):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.in_ch, self.out_ch = in_ch, out_ch
        f = 48
        self.enc0 = _conv(in_ch, f)
        self.enc1 = _conv(f, f)
        self.enc2 = _conv(f, f)
        self.enc3 = _conv(f, f)
        self.enc4 = _conv(f, f)
        self.enc5a = _conv(f, f)
        self.enc5b = _conv(f, f)
        self.dec5a = _conv(2 * f, 2 * f)
        self.dec5b = _conv(2 * f, 2 * f)
        self.dec4a = _conv(3 * f, 2 * f)
        self.dec4b = _conv(2 * f, 2 * f)
        self.dec3a = _conv(3 * f, 2 * f)
        self.dec3b = _conv(2 * f, 2 * f)
        self.dec2a = _conv(3 * f, 2 * f)
        self.dec2b = _conv(2 * f, 2 * f)
        self.dec1a = _conv(2 * f + in_ch, 64)
        self.dec1b = _conv(64, 32)
        self.out = _conv(32, out_ch)

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return tF.leaky_relu(x, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, 32)
        a = self._act
        p1 = tF.max_pool2d(a(self.enc1(a(self.enc0(x)))), 2)
        p2 = tF.max_pool2d(a(self.enc2(p1)), 2)
        p3 = tF.max_pool2d(a(self.enc3(p2)), 2)
        p4 = tF.max_pool2d(a(self.enc4(p3)), 2)
        p5 = tF.max_pool2d(a(self.enc5a(p4)), 2)
        u = tF.interpolate(a(self.enc5b(p5)), scale_factor=2, mode="nearest")
        u = a(self.dec5b(a(self.dec5a(torch.cat([u, p4], 1)))))
        u = tF.interpolate(u, scale_factor=2, mode="nearest")
        u = a(self.dec4b(a(self.dec4a(torch.cat([u, p3], 1)))))
        u = tF.interpolate(u, scale_factor=2, mode="nearest")
        u = a(self.dec3b(a(self.dec3a(torch.cat([u, p2], 1)))))
        u = tF.interpolate(u, scale_factor=2, mode="nearest")
        u = a(self.dec2b(a(self.dec2a(torch.cat([u, p1], 1)))))
        u = tF.interpolate(u, scale_factor=2, mode="nearest")
        u = a(self.dec1b(a(self.dec1a(torch.cat([u, x], 1)))))
        y = self.out(u)
        return y[..., :h, :w]
