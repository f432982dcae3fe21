"""torch.library registration of the Nb2Nb ops (schemas, CPU/CUDA impls, fake kernels)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._runtime import opmath_dtype


def _sub_fwd(x, seed, need_g2, backend):
    if backend == "cpp":
        return tuple(cpp().neighbor_subsample_fwd(x, seed, need_g2))
    from fastdenoise.ops.neighbor.triton import neighbor_subsample_fwd_triton

    return neighbor_subsample_fwd_triton(x, seed, need_g2)


def _sub_fwd_fake(x, seed, need_g2, backend):
    b, c, h, w = x.shape
    return x.new_empty((b, c, h // 2, w // 2)), x.new_empty((b, c, h // 2, w // 2) if need_g2 else (0,))


def _sub_bwd(dg1, dg2, seed, h, w, backend):
    if backend == "cpp":
        return cpp().neighbor_subsample_bwd(dg1, dg2, seed, h, w)
    from fastdenoise.ops.neighbor.triton import neighbor_subsample_bwd_triton

    return neighbor_subsample_bwd_triton(dg1, dg2, seed, h, w)


def _sub_bwd_fake(dg1, dg2, seed, h, w, backend):
    return dg1.new_empty((dg1.shape[0], dg1.shape[1], h, w))


def _loss_fwd(out, y, fy, seed, w1, w2, compute_grad, backend):
    if backend == "cpp":
        return tuple(cpp().nb2nb_loss_fwd(out, y, fy, seed, w1, w2, compute_grad))
    from fastdenoise.ops.neighbor.triton import nb2nb_loss_fwd_triton

    return nb2nb_loss_fwd_triton(out, y, fy, seed, w1, w2, compute_grad)


def _loss_fwd_fake(out, y, fy, seed, w1, w2, compute_grad, backend):
    grad = torch.empty_like(out, memory_format=torch.contiguous_format) if compute_grad else out.new_empty((0,))
    return out.new_empty((2,), dtype=opmath_dtype(out.dtype)), grad


neighbor_subsample_fwd = register_op(
    "neighbor_subsample_fwd", "(Tensor x, SymInt seed, bool need_g2, str backend) -> (Tensor, Tensor)", _sub_fwd,
    _sub_fwd_fake
)
neighbor_subsample_bwd = register_op(
    "neighbor_subsample_bwd",
    "(Tensor dg1, Tensor dg2, SymInt seed, SymInt h, SymInt w, str backend) -> Tensor",
    _sub_bwd,
    _sub_bwd_fake,
)
nb2nb_loss_fwd = register_op(
    "nb2nb_loss_fwd",
    "(Tensor out, Tensor y, Tensor fy, SymInt seed, float w1, float w2, bool compute_grad, str backend)"
    " -> (Tensor, Tensor)",
    _loss_fwd,
    _loss_fwd_fake,
)
