"""What a noisy image says about its own noise: its level, how much of it is shared between neighbouring
pixels, and the pixel-shuffle stride that makes it pixel-independent.

The level is Donoho's wavelet estimate: the median absolute finest-scale diagonal (Haar HH) coefficient over
0.6745, per channel. For white noise it is the noise std; for noise that neighbouring pixels share (real
camera photos: demosaicing, denoising and sharpening in the camera spread each pixel's noise over its
neighbours) the finest diagonal band sees only part of it and the estimate falls short. Taken on the four
stride-2 sub-images (every second pixel), where neighbours are two pixels apart and share little noise, the
estimate comes back to nearly the whole level. So the two estimates give both the level (the stride-2 one)
and the spatial correlation of the noise::

    correlation = 1 - (sigma_full / sigma_stride2)^2

about 0 for pixel-independent noise and about 0.65-0.75 for phone photos (SIDD). Where it exceeds
:data:`PD_THRESHOLD` the methods that assume pixel-independent noise should fit the stride-2 sub-images
(``pd=2``), which :func:`fastdenoise.denoise` does by itself with ``pd="auto"`` (its default).

Measured 2026-12-08 on the 40 SIDD validation blocks (256 x 256 phone photos with their ground truth;
``python -m benchmarks.real_noise --phases noise``): the level is 0.92 of the true noise std on average (0.61
to 1.04; the full-resolution estimate alone reads about half) and the correlation 0.56 to 0.67, every block
above the threshold; the true noise's correlation is 0.47 between neighbours and 0.08 two pixels apart. On the sample images: Gaussian sigma 25 and 50 and Poisson 30 give 0.00-0.12, the synthetic
correlated, demosaicked and camera noises 0.78-0.85. Weak noise (Gaussian sigma 5: 0.23-0.45) and clean images
(0.5-0.8: natural images are smooth at the finest scale) read higher, because the image's own texture fills
the estimates; there the noise is too weak for the choice of stride to matter much.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NoiseEstimate", "estimate_noise", "haar_sigma", "PD_THRESHOLD"]

PD_THRESHOLD = 0.5
"""Spatial correlation above which ``pd="auto"`` picks pixel-shuffle stride 2."""
_MAD = 0.6744897501960817     # the median of |N(0, 1)|


@dataclass(frozen=True)
class NoiseEstimate:
    """The noise of one image as :func:`estimate_noise` reads it (levels on [0, 1], per channel).

    Attributes:
        sigma: the noise std per channel (the stride-2 estimate: nearly the whole level, correlated or not).
        sigma_full: the full-resolution estimate per channel (the part of the noise that neighbouring pixels
            do not share).
        correlation: ``1 - mean(sigma_full^2) / mean(sigma^2)``, clipped to [0, 1]: the fraction of the noise
            power shared between neighbouring pixels (0: pixel-independent).
        pd: the pixel-shuffle stride that leaves the noise nearly pixel-independent: 2 where
            ``correlation > PD_THRESHOLD``, else 1.
    """

    sigma: tuple[float, ...]
    sigma_full: tuple[float, ...]
    correlation: float
    pd: int

    @property
    def level(self) -> float:
        """The root-mean-square of ``sigma`` over the channels (one number for the image)."""
        return float(np.sqrt(np.mean(np.square(self.sigma))))

    def as_dict(self) -> dict:
        return {"sigma": [round(s, 6) for s in self.sigma], "sigma_full": [round(s, 6) for s in self.sigma_full],
                "level255": round(self.level * 255, 3), "correlation": round(self.correlation, 4), "pd": self.pd}


def haar_sigma(x: torch.Tensor) -> torch.Tensor:
    """Donoho's MAD noise std of each channel of ``x`` (B, C, H, W) from its finest Haar diagonal band: (B, C)
    float64. Needs H, W >= 2 (an odd last row or column is left out)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    v = x[..., :h, :w].double()
    hh = (v[..., 0::2, 0::2] - v[..., 0::2, 1::2] - v[..., 1::2, 0::2] + v[..., 1::2, 1::2]) / 2
    return hh.flatten(2).abs().median(dim=2).values / _MAD


def estimate_noise(image) -> NoiseEstimate:
    """The noise level, spatial correlation and recommended pixel-shuffle stride of one noisy image.

    Args:
        image: (H, W) / (H, W, C) NumPy array or (C, H, W) / (1, C, H, W) tensor, float on [0, 1] or uint8,
            at least 8 x 8 pixels.

    Returns:
        A :class:`NoiseEstimate` (see the module docstring for the method and what it measured).
    """
    from fastdenoise.io import as_bchw

    t, _ = as_bchw("image", image if isinstance(image, torch.Tensor) else np.asarray(image))
    if t.shape[0] != 1:
        raise ValueError(f"image must be one image, got a batch of {t.shape[0]}")
    if min(t.shape[-2:]) < 8:
        raise ValueError(f"image must be at least 8 x 8 pixels to estimate its noise, got {tuple(t.shape[-2:])}")
    t = t.double() / 255.0 if t.dtype == torch.uint8 else t.double()
    full = haar_sigma(t)[0]
    subs = torch.cat([t[..., i::2, j::2] for i in range(2) for j in range(2)])
    sub = haar_sigma(subs).pow(2).mean(dim=0).sqrt()
    p_full, p_sub = float(full.pow(2).mean()), float(sub.pow(2).mean())
    corr = 0.0 if p_sub <= 1e-12 else min(1.0, max(0.0, 1.0 - p_full / p_sub))
    return NoiseEstimate(tuple(float(s) for s in sub), tuple(float(s) for s in full), corr,
                         2 if corr > PD_THRESHOLD else 1)
