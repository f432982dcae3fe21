"""Argument helpers shared by the public ops: tensor scalars and mixed floating dtypes."""
from __future__ import annotations

import torch

from fastdenoise._runtime import check_like


def number(name: str, v):
    """``v`` as a Python number: a one-element real tensor is read with ``.item()`` (and treated as a
    constant: no gradient reaches it); other values pass through for the op's own range check."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.dtype.is_complex or v.dtype == torch.bool:
            raise TypeError(f"{name} must be a number or a one-element real tensor, got dtype {v.dtype} "
                            f"and shape {tuple(v.shape)}")
        return v.detach().item()
    return v


def check_partner(name: str, t, ref_name: str, ref: torch.Tensor, *, shape=None) -> torch.Tensor:
    """``_runtime.check_like`` accepting any floating dtype (mixed dtypes are promoted by the op)."""
    return check_like(name, t, ref_name, ref, shape=shape, any_float=True)


def promote(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast tensors of mixed floating dtypes to their promoted dtype (``torch.promote_types``).

    Autocast leaves network outputs in bfloat16/float16 while data stays float32; the fused kernels
    take one dtype, so a bfloat16 ``out`` with a float32 ``y`` runs in float32, as the reference does
    (it computes in float32 either way). The cast is differentiable: gradients come back in each
    input's own dtype. Inputs already sharing a dtype are returned unchanged (no copy).
    """
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = torch.promote_types(dt, t.dtype)
    return tuple(t if t.dtype == dt else t.to(dt) for t in tensors)
