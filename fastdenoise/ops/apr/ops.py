"""torch.library registration of the APR ops (schemas, CPU/CUDA impls, fake kernels)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._runtime import opmath_dtype


def _sample_fwd(x, seed, need_h2, backend):
    if backend == "cpp":
        return tuple(cpp().apr_sample_fwd(x, seed, need_h2))
    from fastdenoise.ops.apr.triton import apr_sample_fwd_triton

    return apr_sample_fwd_triton(x, seed, need_h2)


def _sample_fwd_fake(x, seed, need_h2, backend):
    def full():
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    return full(), full() if need_h2 else x.new_empty((0,))


def _sample_bwd(dh1, dh2, seed, backend):
    if backend == "cpp":
        return cpp().apr_sample_bwd(dh1, dh2, seed)
    from fastdenoise.ops.apr.triton import apr_sample_bwd_triton

    return apr_sample_bwd_triton(dh1, dh2, seed)


def _sample_bwd_fake(dh1, dh2, seed, backend):
    return dh1.new_empty(dh1.shape)


def _loss_fwd(out, y, fy, seed, lam, compute_grad, grad_fy, backend):
    if backend == "cpp":
        return tuple(cpp().apr_loss_fwd(out, y, fy, seed, lam, compute_grad, grad_fy))
    from fastdenoise.ops.apr.triton import apr_loss_fwd_triton

    return apr_loss_fwd_triton(out, y, fy, seed, lam, compute_grad, grad_fy)


def _loss_fwd_fake(out, y, fy, seed, lam, compute_grad, grad_fy, backend):
    def full():
        return torch.empty_like(out, memory_format=torch.contiguous_format)

    return (
        out.new_empty((), dtype=opmath_dtype(out.dtype)),
        full() if compute_grad else out.new_empty((0,)),
        full() if grad_fy else out.new_empty((0,)),
    )


apr_sample_fwd = register_op(
    "apr_sample_fwd", "(Tensor x, SymInt seed, bool need_h2, str backend) -> (Tensor, Tensor)", _sample_fwd, _sample_fwd_fake
)
apr_sample_bwd = register_op(
    "apr_sample_bwd", "(Tensor dh1, Tensor dh2, SymInt seed, str backend) -> Tensor", _sample_bwd, _sample_bwd_fake
)
apr_loss_fwd = register_op(
    "apr_loss_fwd",
    "(Tensor out, Tensor y, Tensor fy, SymInt seed, float lam, bool compute_grad, bool grad_fy, str backend)"
    " -> (Tensor, Tensor, Tensor)",
    _loss_fwd,
    _loss_fwd_fake,
)
