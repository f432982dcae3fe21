"""fastdenoise: fused kernels for fast self-supervised single-image denoising."""
from fastdenoise import functional
from fastdenoise import nn
from fastdenoise._ext import HAS_EXT
from fastdenoise._runtime import backends

__version__ = "0.1.0"
__all__ = ["HAS_EXT", "backends", "denoise", "functional", "nn", "__version__"]


def denoise(image, method: str = "p2n", **kwargs):
    """Fit ``method`` to one noisy image and return it denoised; see :func:`fastdenoise.api.denoise`."""
    from fastdenoise.api import denoise as _denoise

    return _denoise(image, method, **kwargs)
