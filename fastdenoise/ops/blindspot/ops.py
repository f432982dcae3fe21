"""torch.library registration of the shifted max-pool ops (schemas, CPU/CUDA impls, fake kernels)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op


def _fwd(x, direction, backend):
    if backend == "cpp":
        return tuple(cpp().shifted_max_pool2d_fwd(x, direction))
    from fastdenoise.ops.blindspot.triton import shifted_max_pool2d_fwd_triton

    return shifted_max_pool2d_fwd_triton(x, direction)


def _fwd_fake(x, direction, backend):
    b, c, h, w = x.shape
    return x.new_empty((b, c, h // 2, w // 2)), x.new_empty((b, c, h // 2, w // 2), dtype=torch.int8)


def _bwd(dy, idx, direction, h, w, backend):
    if backend == "cpp":
        return cpp().shifted_max_pool2d_bwd(dy, idx, direction, h, w)
    from fastdenoise.ops.blindspot.triton import shifted_max_pool2d_bwd_triton

    return shifted_max_pool2d_bwd_triton(dy, idx, direction, h, w)


def _bwd_fake(dy, idx, direction, h, w, backend):
    return dy.new_empty((dy.shape[0], dy.shape[1], h, w))


shifted_max_pool2d_fwd = register_op(
    "shifted_max_pool2d_fwd", "(Tensor x, int direction, str backend) -> (Tensor, Tensor)", _fwd, _fwd_fake
)
shifted_max_pool2d_bwd = register_op(
    "shifted_max_pool2d_bwd",
    "(Tensor dy, Tensor idx, int direction, SymInt h, SymInt w, str backend) -> Tensor",
    _bwd,
    _bwd_fake,
)
