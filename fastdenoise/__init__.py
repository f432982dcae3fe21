"""fastdenoise: fused kernels for fast self-supervised single-image denoising."""
from fastdenoise import functional
from fastdenoise import nn
from fastdenoise._ext import HAS_EXT
from fastdenoise._runtime import backends

__version__ = "0.1.0"
__all__ = ["HAS_EXT", "backends", "functional", "nn", "__version__"]
