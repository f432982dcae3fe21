"""The Neighbor2Neighbor U-Net: a modified Laine19 U-Net with ``n_feature`` = 48.

Encoder: 3x3 conv C->48, 3x3 conv 48->48, max-pool; four more (3x3 conv 48->48, max-pool) levels (five
pools in all), then a 3x3 conv 48->48 at H/32. Decoder: at every level a learned 2x2 stride-2
``ConvTranspose2d`` without bias, a concatenation with the skip and two 3x3 convs:
H/16: 48 up, cat 48 -> 96 -> 96 -> 96; H/8, H/4, H/2: 96 up, cat 48 -> 144 -> 96 -> 96;
H: 96 up, cat the input (C) -> 96+C -> 96 -> 96; then three 1x1 convs 96->96, 96->96, 96->C.
LeakyReLU(0.2) after every conv except the last; the output is the clean image. Every conv and
transposed conv is initialised Kaiming-normal (fan-in, gain for ReLU) times 0.1, with zero biases.
1,259,043 parameters for C = 3.

Padding: the input is reflect-padded at the bottom/right to a multiple of 32 in each
dimension and the output cropped back. ``square_pad=True`` reproduces the official evaluation, which
pads to a square whose side is the next multiple of 32 of max(H, W).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["UNetNb2Nb", "crop_to", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int, *, square: bool = False) -> torch.Tensor:
    """Reflect-pad a (B, C, H, W) tensor at the bottom and right so H and W are multiples of ``multiple``
    (both equal to the padded max(H, W) when ``square``).

    Works for any size: when the padding is larger than the image allows for one reflection, the
    reflection is repeated (a size-1 dimension is replicated instead)."""
    h, w = x.shape[-2:]
    th = -(-h // multiple) * multiple
    tw = -(-w // multiple) * multiple
    if square:
        th = tw = max(th, tw)
    while x.shape[-2] < th or x.shape[-1] < tw:
        ch, cw = x.shape[-2:]
        ph = min(th - ch, ch - 1) if ch > 1 else th - ch
        pw = min(tw - cw, cw - 1) if cw > 1 else tw - cw
        mode = "reflect" if (ph == 0 or ch > 1) and (pw == 0 or cw > 1) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x


def crop_to(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The top-left (H, W) window of a (B, C, H', W') tensor."""
    return y[..., :h, :w]


class UNetNb2Nb(nn.Module):
    """Nb2Nb U-Net. ``forward(x)``: (B, in_ch, H, W) -> (B, out_ch, H, W) for any H, W.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        n_feature: encoder width (the decoder is twice as wide).
        square_pad: pad to a square multiple of 32 as the official evaluation does.
        init_scale: factor on the Kaiming-normal init (0.1 upstream).
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, n_feature: int = 48, *, square_pad: bool = False,
                 init_scale: float = 0.1):
        super().__init__()
        for name, v in (("in_ch", in_ch), ("out_ch", out_ch), ("n_feature", n_feature)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        f, d = n_feature, 2 * n_feature
        self.square_pad = square_pad
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.enc = nn.ModuleList([nn.Conv2d(in_ch, f, 3, padding=1)]
                                 + [nn.Conv2d(f, f, 3, padding=1) for _ in range(6)])
        # decoder levels from the bottom (H/16) to the top (H)
        ups, convs = [], []
        for level in range(5):
            cin = f if level == 0 else d
            skip = in_ch if level == 4 else f
            ups.append(nn.ConvTranspose2d(cin, cin, 2, stride=2, bias=False))
            convs.append(nn.ModuleList([nn.Conv2d(cin + skip, d, 3, padding=1), nn.Conv2d(d, d, 3, padding=1)]))
        self.ups = nn.ModuleList(ups)
        self.dec = nn.ModuleList(convs)
        self.head = nn.ModuleList([nn.Conv2d(d, d, 1), nn.Conv2d(d, d, 1), nn.Conv2d(d, out_ch, 1)])
        self.reset_parameters(init_scale)

    def reset_parameters(self, scale: float = 0.1) -> None:
        """Kaiming-normal (fan-in) times ``scale`` on every (transposed) conv, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight)
                with torch.no_grad():
                    m.weight.mul_(scale)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, 32, square=self.square_pad)
        a = self.act
        skips = [xp]
        t = a(self.enc[0](xp))
        t = F.max_pool2d(a(self.enc[1](t)), 2)
        skips.append(t)  # H/2
        for i in range(2, 6):
            t = F.max_pool2d(a(self.enc[i](t)), 2)
            skips.append(t)  # H/4 .. H/32
        t = a(self.enc[6](skips.pop()))
        for up, (c1, c2) in zip(self.ups, self.dec):
            t = torch.cat([up(t), skips.pop()], dim=1)
            t = a(c2(a(c1(t))))
        t = a(self.head[0](t))
        t = a(self.head[1](t))
        return crop_to(self.head[2](t), h, w)
