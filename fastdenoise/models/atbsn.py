"""AT-BSN (CVPR 2024) blind-spot network, rotation-free, plus the upstream rotated form and the RD
students of APR-RD (AAAI 2025).

Frames and directions: branch k (k = 0..3, named "down", "left", "up", "right") is the upstream
"down" U-Net applied to ``torch.rot90(x, k, (2, 3))`` and rotated back. ``ATBSN`` computes branch k
directly on the unrotated image with the k-th shifted conv/pool and the 3x3 weights rotated by
``rot90(W, -k)`` (conv(rot(x), W) == rot(conv(x, rot^-1 W))), so no activation is ever rotated
and H != W works. Both classes share parameter names (``unet.*``, ``nin_a/b/c``).

Sizes: the U-Net pools 5 times, so inputs are zero-padded at the bottom/right to a multiple of 32
and the output is cropped back. Zero padding (not reflect) keeps the blind spot exact: a mirrored
copy of a pixel could otherwise re-enter its own hole near the border.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastdenoise.nn import ShiftConv2d
from fastdenoise.ops.blindspot.api import shift_conv2d
from fastdenoise.ops.blindspot.api import shifted_max_pool2d
from fastdenoise.ops.blindspot.reference import s_shift_ref

NEG_SLOPE = 0.1


def _pad_to(x: torch.Tensor, m: int, mode: str = "constant") -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _init(module: nn.Module, linear_last: nn.Module | None = None) -> None:
    """Kaiming-normal (a=0.1) weights and zero biases for every conv; linear gain for ``linear_last``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=NEG_SLOPE)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if linear_last is not None:
        nn.init.kaiming_normal_(linear_last.weight, nonlinearity="linear")


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class BlindUNet(nn.Module):
    """Laine19 / AT-BSN U-Net (48/96 channels, 5 pools, nearest upsampling, LeakyReLU(0.1) after
    every conv including the last).

    ``blind=True``: every conv is a shifted conv and every pool a shifted max-pool in the direction
    passed to :meth:`forward` (the weights are stored in the "down" frame); the output at row r
    then depends on input rows <= r only (direction "down"). ``blind=False``: plain convs (padding
    1) and plain 2x2 max-pools (the non-blind RD student "1.00M").

    Encoder: enc_conv0 C->48, enc_conv1..5 48->48 each followed by a pool, enc_conv6 48->48.
    Decoder: up, cat pool4 -> dec_conv5a/b (96->96); up, cat pool3 -> dec_conv4a (144->96)/4b;
    up, cat pool2 -> 3a/3b; up, cat pool1 -> 2a/2b; up, cat input -> dec_conv1a (96+C->96),
    dec_conv1b (96->out_ch). Skips are the pooled outputs; pool5 is not a skip.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 96, base: int = 48, dec: int = 96, blind: bool = True,
                 backend: str | None = None):
        super().__init__()
        self.blind, self.backend = bool(blind), backend

        def conv(i, o):
            return ShiftConv2d(i, o, 3, "down") if blind else nn.Conv2d(i, o, 3, padding=1)

        self.enc_conv0 = conv(in_ch, base)
        for n in range(1, 7):
            setattr(self, f"enc_conv{n}", conv(base, base))
        self.dec_conv5a = conv(base + base, dec)
        self.dec_conv5b = conv(dec, dec)
        for n in (4, 3, 2):
            setattr(self, f"dec_conv{n}a", conv(dec + base, dec))
            setattr(self, f"dec_conv{n}b", conv(dec, dec))
        self.dec_conv1a = conv(dec + in_ch, dec)
        self.dec_conv1b = conv(dec, out_ch)

    def _conv(self, name: str, x: torch.Tensor, d: int) -> torch.Tensor:
        m = getattr(self, name)
        if not self.blind:
            y = F.conv2d(x, m.weight, m.bias, padding=1)
        else:
            w = m.weight if d == 0 else torch.rot90(m.weight, -d, (2, 3))
            y = shift_conv2d(x, w, m.bias, d)
        return F.leaky_relu(y, NEG_SLOPE)  # out of place: also makes the narrowed conv output contiguous

    def _pool(self, x: torch.Tensor, d: int) -> torch.Tensor:
        if not self.blind:
            return F.max_pool2d(x, 2)
        return shifted_max_pool2d(x, d, backend=self.backend)

    def forward(self, x: torch.Tensor, direction: int = 0) -> torch.Tensor:
        """x: (B, C, H, W) with H, W multiples of 32 -> (B, out_ch, H, W)."""
        d = direction
        h = self._conv("enc_conv0", x, d)
        skips = []
        for n in range(1, 6):
            h = self._pool(self._conv(f"enc_conv{n}", h, d), d)
            skips.append(h)
        h = self._conv("enc_conv6", h, d)
        for n, skip in zip((5, 4, 3, 2), skips[3::-1]):
            h = torch.cat([_up(h), skip], 1)
            h = self._conv(f"dec_conv{n}b", self._conv(f"dec_conv{n}a", h, d), d)
        h = torch.cat([_up(h), x], 1)
        return self._conv("dec_conv1b", self._conv("dec_conv1a", h, d), d)


def _check_s(s, name: str = "s") -> int:
    if isinstance(s, bool) or not hasattr(s, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(s).__name__}")
    if int(s) < 0:
        raise ValueError(f"{name} must be >= 0, got {s}")
    return int(s)


class ATBSN(nn.Module):
    """Rotation-free AT-BSN: four direction branches sharing one U-Net's weights, s-shift per branch,
    channel concat (4 x head) and the 1x1 head 4h->4h, LReLU -> 4h->h, LReLU -> h->C.

    The blind spot is a (2s-1)x(2s-1) square around each pixel (s=1: Laine19's single pixel; s=0:
    non-blind). 1,268,547 parameters for C=3 (base 48, head 96). Any H, W (padded internally).

    Args:
        in_ch: image channels C.
        base, head: encoder and decoder/branch widths (48, 96).
        s: default shift used by :meth:`forward` (APR trains with 5, infers with 1).
        backend: backend of the shifted max-pool op (None: auto).
    """

    def __init__(self, in_ch: int = 3, base: int = 48, head: int = 96, s: int = 1, backend: str | None = None):
        super().__init__()
        self.in_ch, self.head_ch, self.s = in_ch, head, _check_s(s)
        self.unet = BlindUNet(in_ch, head, base, head, blind=True, backend=backend)
        self.nin_a = nn.Conv2d(4 * head, 4 * head, 1)
        self.nin_b = nn.Conv2d(4 * head, head, 1)
        self.nin_c = nn.Conv2d(head, in_ch, 1)
        _init(self, linear_last=self.nin_c)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
        if x.shape[1] != self.in_ch:
            raise ValueError(f"x must have {self.in_ch} channels, got shape {tuple(x.shape)}")

    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four branch features (B, head, H, W), unshifted, in the image frame (H, W multiples of 32)."""
        return [self.unet(x, k) for k in range(4)]

    def head(self, z: torch.Tensor) -> torch.Tensor:
        z = F.leaky_relu(self.nin_a(z), NEG_SLOPE)
        z = F.leaky_relu(self.nin_b(z), NEG_SLOPE)
        return self.nin_c(z)

    @staticmethod
    def shift_cat(feats: Sequence[torch.Tensor], s: int) -> torch.Tensor:
        """cat([s_shift(f_k, s, k) for k], dim=1) written in ONE pass into the concat buffer (each
        branch's region is copied at its offset, the uncovered strip zeroed) instead of a shifted
        copy per branch followed by the concat copy."""
        b, c, h, w = feats[0].shape
        out = feats[0].new_empty((b, 4 * c, h, w))
        for k, f in enumerate(feats):
            o = out[:, k * c:(k + 1) * c]
            n = min(s, h if k in (0, 2) else w)
            if n == 0:
                o.copy_(f)
            elif k == 0:  # down: rows move down
                o[:, :, :n].zero_()
                o[:, :, n:].copy_(f[:, :, :h - n])
            elif k == 2:  # up
                o[:, :, h - n:].zero_()
                o[:, :, :h - n].copy_(f[:, :, n:])
            elif k == 3:  # right: columns move right
                o[..., :n].zero_()
                o[..., n:].copy_(f[..., :w - n])
            else:  # left
                o[..., w - n:].zero_()
                o[..., :w - n].copy_(f[..., n:])
        return out

    def forward(self, x: torch.Tensor, s: int | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W) denoised with a (2s-1)^2 blind spot (default ``self.s``)."""
        s = self.s if s is None else _check_s(s)
        self._check_input(x)
        h, w = x.shape[-2:]
        out = self.head(self.shift_cat(self.trunk(_pad_to(x, 32)), s))
        return out[..., :h, :w]

    def teachers(self, x: torch.Tensor, shifts: Sequence[int] = (0, 1, 2, 3, 4, 5)) -> list[torch.Tensor]:
        """RD teacher targets: the outputs for each s in ``shifts``, running the U-Net trunk ONCE and
        repeating only the shift + 1x1 head per s. Equals ``[self(x, s) for s in shifts]``."""
        shifts = [_check_s(s, "shifts") for s in shifts]
        self._check_input(x)
        h, w = x.shape[-2:]
        feats = self.trunk(_pad_to(x, 32))
        return [self.head(self.shift_cat(feats, s))[..., :h, :w] for s in shifts]


class ATBSNRotated(ATBSN):
    """The upstream formulation (reference for :class:`ATBSN`, same parameters): stack the four
    rotations of the (square) input on the batch axis, one "down" U-Net, s-shift down, un-rotate
    each quarter, concat on channels, 1x1 head."""

    def _rotated_trunk(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] != x.shape[-1]:
            raise ValueError(f"ATBSNRotated needs square inputs (H == W), got shape {tuple(x.shape)}; "
                             "use ATBSN for non-square images")
        xp = _pad_to(x, 32)
        return self.unet(torch.cat([torch.rot90(xp, k, (2, 3)) for k in range(4)], 0), 0)

    def _head_rotated(self, f: torch.Tensor, s: int) -> torch.Tensor:
        f = s_shift_ref(f, min(s, f.shape[-2]), 0)
        parts = torch.chunk(f, 4, 0)
        return self.head(torch.cat([torch.rot90(p, -k, (2, 3)) for k, p in enumerate(parts)], 1))

    def forward(self, x: torch.Tensor, s: int | None = None) -> torch.Tensor:
        s = self.s if s is None else _check_s(s)
        self._check_input(x)
        h, w = x.shape[-2:]
        return self._head_rotated(self._rotated_trunk(x), s)[..., :h, :w]

    def teachers(self, x: torch.Tensor, shifts: Sequence[int] = (0, 1, 2, 3, 4, 5)) -> list[torch.Tensor]:
        shifts = [_check_s(s, "shifts") for s in shifts]
        self._check_input(x)
        h, w = x.shape[-2:]
        f = self._rotated_trunk(x)
        return [self._head_rotated(f, s)[..., :h, :w] for s in shifts]


class StudentUNet102(nn.Module):
    """The APR paper's "1.02M" student: six plain convs in the encoder (enc_conv1 C->48, enc_conv2..6
    48->48, no intro conv), skips taken from enc_conv1..5 *before* pooling, decoder dec_conv5a/b
    (96->96), dec_conv4a..2a (144->96) + b (96->96), dec_conv1a (144->96), dec_conv1b 96->C linear."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, base: int = 48, dec: int = 96):
        super().__init__()
        self.enc_conv1 = nn.Conv2d(in_ch, base, 3, padding=1)
        for n in range(2, 7):
            setattr(self, f"enc_conv{n}", nn.Conv2d(base, base, 3, padding=1))
        self.dec_conv5a = nn.Conv2d(base + base, dec, 3, padding=1)
        self.dec_conv5b = nn.Conv2d(dec, dec, 3, padding=1)
        for n in (4, 3, 2, 1):
            setattr(self, f"dec_conv{n}a", nn.Conv2d(dec + base, dec, 3, padding=1))
        for n in (4, 3, 2):
            setattr(self, f"dec_conv{n}b", nn.Conv2d(dec, dec, 3, padding=1))
        self.dec_conv1b = nn.Conv2d(dec, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, NEG_SLOPE)  # noqa: E731
        h, skips = x, []
        for n in range(1, 6):
            h = act(getattr(self, f"enc_conv{n}")(h))
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = act(self.enc_conv6(h))
        for n, skip in zip((5, 4, 3, 2, 1), skips[::-1]):
            h = torch.cat([_up(h), skip], 1)
            h = act(getattr(self, f"dec_conv{n}a")(h))
            h = getattr(self, f"dec_conv{n}b")(h)
            h = act(h) if n > 1 else h
        return h


class Student(nn.Module):
    """RD student (non-blind). ``variant="1.00M"``: :class:`BlindUNet` with plain convs/pools and
    n_out=C, LeakyReLU(0.1) on the output (AT-BSN's code, 1,003,011 params for C=3; the parameter
    names match ``ATBSN.unet`` except the C-channel dec_conv1b, so the BSN's U-Net weights can seed
    it as AT-BSN's distiller does). ``variant="1.02M"``: :class:`StudentUNet102` (1,021,107 params).
    Any H, W: replicate-padded to a multiple of 32 internally (no blind spot to protect)."""

    VARIANTS = ("1.00M", "1.02M")

    def __init__(self, in_ch: int = 3, variant: str = "1.00M"):
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {self.VARIANTS}, got {variant!r}")
        self.variant = variant
        if variant == "1.00M":
            self.unet = BlindUNet(in_ch, in_ch, blind=False)
            _init(self)
        else:
            self.unet = StudentUNet102(in_ch, in_ch)
            _init(self, linear_last=self.unet.dec_conv1b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.unet(_pad_to(x, 32, "replicate"))[..., :h, :w]
