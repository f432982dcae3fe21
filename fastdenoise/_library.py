"""Registration of fused ops with torch.library: one ``define`` + CPU/CUDA ``impl`` + fake per op.

Python owns every schema so ops exist even without the compiled extension. The impl receives the
resolved backend (``"cpp"`` or ``"triton"``) as its last ``str`` argument; ``backend="torch"`` never
reaches an op (the public function calls the reference directly).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

LIB = torch.library.Library("fastdenoise", "DEF")
IMPLS: dict[str, Callable] = {}  # op name -> its CPU/CUDA impl (tools.hostwork looks inside the ops)


def register_op(name: str, schema: str, impl: Callable, fake: Callable):
    """Define ``fastdenoise::<name>`` with ``schema`` (argument list and returns, e.g.
    ``"(Tensor x, int seed, str backend) -> (Tensor, Tensor)"``), one impl for CPU and CUDA, and
    the fake kernel. Returns the op overload to call."""
    qualname = f"fastdenoise::{name}"
    torch.library.define(qualname, schema, lib=LIB)
    torch.library.impl(qualname, ("CPU", "CUDA"), impl, lib=LIB)
    IMPLS[name] = impl
    torch.library.register_fake(qualname, fake, lib=LIB)
    return getattr(torch.ops.fastdenoise, name).default


def cpp():
    """The compiled extension module (only called on the cpp backend, which was checked)."""
    from fastdenoise._ext import _C

    return _C
