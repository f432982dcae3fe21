"""Import deepinv for the compat tests, or None when it is not installed (optional dependency:
requirements-compat.txt, `make test-compat`).

torchvision's PyPI wheel is built for CUDA torch; beside the CPU torch its compiled ops cannot load and
``import torchvision`` fails where it registers fake kernels for ``torchvision::nms`` and ``qnms``.
Declaring those two schemas (no kernels) lets the Python package import; deepinv's losses and Trainer
call no torchvision op."""
from __future__ import annotations

import sys

import torch


def import_deepinv():
    try:
        import deepinv
        return deepinv
    except ImportError:
        return None
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "deepinv")]:
        del sys.modules[name]
    schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    for op in ("nms", "qnms"):
        if not hasattr(torch.ops.torchvision, op):
            torch.library.define(f"torchvision::{op}", schema)
    try:
        import deepinv
    except ImportError:
        return None
    return deepinv
