"""torch.library registration of the Blind2Grad ops (schemas, CPU/CUDA impls, fake kernels)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._runtime import opmath_dtype


def _mask_fwd(y, x_m, seed, k, eps_g, backend):
    if backend == "cpp":
        return cpp().dual_mask_fwd(y, x_m, seed, k, eps_g)
    from fastdenoise.ops.blind2grad.triton import dual_mask_fwd_triton

    return dual_mask_fwd_triton(y, x_m, seed, k, eps_g)


def _mask_fwd_fake(y, x_m, seed, k, eps_g, backend):
    b, _, h, w = y.shape
    return y.new_empty((b, 1, h, w))


def _loss_fwd(a, f, y, mask, omega, gamma, masked_only, grad_a, grad_f, backend):
    if backend == "cpp":
        return tuple(cpp().blind2grad_loss_fwd(a, f, y, mask, omega, gamma, masked_only, grad_a, grad_f))
    from fastdenoise.ops.blind2grad.triton import blind2grad_loss_fwd_triton

    return blind2grad_loss_fwd_triton(a, f, y, mask, omega, gamma, masked_only, grad_a, grad_f)


def _loss_fwd_fake(a, f, y, mask, omega, gamma, masked_only, grad_a, grad_f, backend):
    def g(on):
        return torch.empty_like(a, memory_format=torch.contiguous_format) if on else a.new_empty((0,))

    return a.new_empty((), dtype=opmath_dtype(a.dtype)), g(grad_a), g(grad_f)


dual_mask_fwd = register_op(
    "dual_mask_fwd",
    "(Tensor y, Tensor x_m, SymInt seed, int k, float eps_g, str backend) -> Tensor",
    _mask_fwd,
    _mask_fwd_fake,
)
blind2grad_loss_fwd = register_op(
    "blind2grad_loss_fwd",
    "(Tensor out_masked, Tensor out_full, Tensor y, Tensor mask, float omega, float gamma, bool masked_only, "
    "bool grad_a, bool grad_f, str backend) -> (Tensor, Tensor, Tensor)",
    _loss_fwd,
    _loss_fwd_fake,
)
