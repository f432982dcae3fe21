"""Synthetic noise in the Nb2Nb / Laine19 convention.

* Gaussian: ``y = x + sigma / 255 * N(0, 1)``; ``sigma`` is quoted on the 0-255 scale. **No clipping.**
  A range ``(lo, hi)`` draws one std per image, uniform in [lo, hi] / 255 (e.g. gauss5_50).
* Poisson: ``y = Poisson(lam * x) / lam`` with ``x`` in [0, 1]; ``lam`` a number or a range (one
  ``lam`` per image, uniform in [lo, hi]).
* Spatially correlated (the case APR-RD and P2N were made for; Nb2Nb and Noise2Same assume independent
  pixels): ``correlated:SIGMA[:K]`` is white Gaussian noise filtered per channel by the K x K binomial
  kernel (K odd, default 3), scaled back to a per-pixel std of ``SIGMA / 255``; ``demosaic:LAM[:READ]`` is
  a raw sensor image: the clean RGB image sampled on an RGGB Bayer mosaic, Poisson-Gaussian noise on the
  mosaic (``Poisson(lam * x) / lam`` plus read noise of std ``READ / 255``, default 2), then bilinear
  demosaicing, so neighbouring pixels and channels share noise.
* Camera noise (:func:`add_camera`, spec ``camera[:...]``), made the "unprocessing" way of Brooks et al.,
  CVPR 2019: sRGB -> raw by inverting a camera pipeline (smoothstep tone curve, gamma 2.2, a colour matrix
  mixed from four real cameras', white-balance and brightening gains), an RGGB mosaic, sensor noise of
  variance ``shot * raw + read`` with ``log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26^2)`` (the paper's
  fit to real sensors), bilinear demosaicing and the forward pipeline back to sRGB. Every parameter is a
  field of :class:`CameraParams` (given, or drawn per image from the seed, and returned by
  ``NoiseSpec.apply(..., return_params=True)``). Denoisers are scored against the noise-free rendering
  (:meth:`NoiseSpec.target`).
* What a noisy image says about its own noise (:func:`estimate_noise`): its level per channel, how much of it
  neighbouring pixels share, and the pixel-shuffle stride that makes it pixel-independent.
* Fluorescence microscopy (:func:`add_microscopy`, spec ``microscopy[:...]``): Poisson-Gaussian noise on
  the signal, optionally blurred by a Gaussian PSF first.

Randomness: a ``torch.Generator`` on the CPU seeded with ``seed``; all values are drawn on the CPU and
moved to ``x``'s device, so a given seed gives the same noise on every device. Draw order: with a
range, first one uniform per image (the per-image parameter), then the noise field. "Image" means
the leading axis of a 4-D input ((B, C, H, W) tensor or (B, H, W, C) array); a 2-D or 3-D input is a
single image. Torch tensors and NumPy arrays are accepted and the result has the input's type, dtype
and shape.
"""
from __future__ import annotations

from fastdenoise.noise._common import _as_tensor  # noqa: F401
from fastdenoise.noise.camera import *  # noqa: F401,F403
from fastdenoise.noise.camera import _smoothstep  # noqa: F401
from fastdenoise.noise.estimate import NoiseEstimate  # noqa: F401
from fastdenoise.noise.estimate import estimate_noise  # noqa: F401
from fastdenoise.noise.spec import NoiseSpec  # noqa: F401
from fastdenoise.noise.spec import add_noise  # noqa: F401
from fastdenoise.noise.spec import parse_noise  # noqa: F401
from fastdenoise.noise.spec import split_noises  # noqa: F401
from fastdenoise.noise.synthetic import *  # noqa: F401,F403
from fastdenoise.noise.synthetic import _binomial  # noqa: F401

__all__ = ["CAMERA_DEFAULT", "CameraParams", "NoiseSpec", "add_camera", "camera_raw", "add_correlated",
           "add_demosaic", "add_gaussian", "NoiseEstimate", "estimate_noise", "add_microscopy", "add_noise", "add_poisson", "parse_noise", "psf_blur",
           "split_noises"]
