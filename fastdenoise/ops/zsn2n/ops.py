"""torch.library registration of the ZS-N2N ops (schemas, CPU/CUDA impls, fake kernels)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._runtime import opmath_dtype


def _down_fwd(x, backend):
    if backend == "cpp":
        return tuple(cpp().pair_downsample_fwd(x))
    from fastdenoise.ops.zsn2n.triton import pair_downsample_fwd_triton

    return pair_downsample_fwd_triton(x)


def _down_fwd_fake(x, backend):
    b, c, h, w = x.shape
    return x.new_empty((b, c, h // 2, w // 2)), x.new_empty((b, c, h // 2, w // 2))


def _down_bwd(g1, g2, h, w, backend):
    if backend == "cpp":
        return cpp().pair_downsample_bwd(g1, g2, h, w)
    from fastdenoise.ops.zsn2n.triton import pair_downsample_bwd_triton

    return pair_downsample_bwd_triton(g1, g2, h, w)


def _down_bwd_fake(g1, g2, h, w, backend):
    return g1.new_empty((g1.shape[0], g1.shape[1], h, w))


def _loss_fwd(y, n_y, n1, n2, grad_y, grad_ny, grad_n1, grad_n2, backend):
    if backend == "cpp":
        return tuple(cpp().zsn2n_loss_fwd(y, n_y, n1, n2, grad_y, grad_ny, grad_n1, grad_n2))
    from fastdenoise.ops.zsn2n.triton import zsn2n_loss_fwd_triton

    return zsn2n_loss_fwd_triton(y, n_y, n1, n2, grad_y, grad_ny, grad_n1, grad_n2)


def _loss_fwd_fake(y, n_y, n1, n2, grad_y, grad_ny, grad_n1, grad_n2, backend):
    def g(like, need):
        return torch.empty_like(like, memory_format=torch.contiguous_format) if need else like.new_empty((0,))

    return (y.new_empty((), dtype=opmath_dtype(y.dtype)), g(y, grad_y), g(n_y, grad_ny), g(n1, grad_n1),
            g(n2, grad_n2))


pair_downsample_fwd = register_op(
    "pair_downsample_fwd", "(Tensor x, str backend) -> (Tensor, Tensor)", _down_fwd, _down_fwd_fake
)
pair_downsample_bwd = register_op(
    "pair_downsample_bwd", "(Tensor g1, Tensor g2, SymInt h, SymInt w, str backend) -> Tensor", _down_bwd,
    _down_bwd_fake,
)
zsn2n_loss_fwd = register_op(
    "zsn2n_loss_fwd",
    "(Tensor y, Tensor n_y, Tensor n1, Tensor n2, bool grad_y, bool grad_ny, bool grad_n1, bool grad_n2, "
    "str backend) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    _loss_fwd,
    _loss_fwd_fake,
)
