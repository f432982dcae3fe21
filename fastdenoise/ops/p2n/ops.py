"""torch.library registration of the P2N ops (schemas, CPU/CUDA impls, fake kernels)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._runtime import opmath_dtype


def _scales(y, seed, sigma, m, backend):
    if backend == "cpp":
        from fastdenoise.ops.p2n.reference import scales_flat

        return scales_flat(seed, m, sigma, y.dtype)
    from fastdenoise.ops.p2n.triton import rdc_scales_triton

    return rdc_scales_triton(y, seed, sigma, m)


def _scales_fake(y, seed, sigma, m, backend):
    return y.new_empty((2 * m,), dtype=opmath_dtype(y.dtype))


def _renoise_fwd(y, x_hat, scales, group, clamp, backend):
    if backend == "cpp":
        return cpp().rdc_renoise_fwd(y, x_hat, scales, group, clamp)
    from fastdenoise.ops.p2n.triton import rdc_renoise_fwd_triton

    return rdc_renoise_fwd_triton(y, x_hat, scales, group, clamp)


def _renoise_fwd_fake(y, x_hat, scales, group, clamp, backend):
    b, c, h, w = y.shape
    return y.new_empty((2 * b, c, h, w))


def _renoise_bwd(dz, y, x_hat, scales, group, clamp, need_dy, need_dxh, backend):
    if backend == "cpp":
        return tuple(cpp().rdc_renoise_bwd(dz, y, x_hat, scales, group, clamp, need_dy, need_dxh))
    from fastdenoise.ops.p2n.triton import rdc_renoise_bwd_triton

    return rdc_renoise_bwd_triton(dz, y, x_hat, scales, group, clamp, need_dy, need_dxh)


def _renoise_bwd_fake(dz, y, x_hat, scales, group, clamp, need_dy, need_dxh, backend):
    def one(need):
        return torch.empty_like(y, memory_format=torch.contiguous_format) if need else y.new_empty((0,))

    return one(need_dy), one(need_dxh)


def _loss_fwd(out_pos, out_neg, gamma, eps, compute_grad, backend):
    if backend == "cpp":
        return tuple(cpp().p2n_loss_fwd(out_pos, out_neg, gamma, eps, compute_grad))
    from fastdenoise.ops.p2n.triton import p2n_loss_fwd_triton

    return p2n_loss_fwd_triton(out_pos, out_neg, gamma, eps, compute_grad)


def _loss_fwd_fake(out_pos, out_neg, gamma, eps, compute_grad, backend):
    grad = torch.empty_like(out_pos, memory_format=torch.contiguous_format) if compute_grad else out_pos.new_empty((0,))
    return out_pos.new_empty((), dtype=opmath_dtype(out_pos.dtype)), grad


rdc_scales = register_op(
    "rdc_scales",
    "(Tensor y, SymInt seed, float sigma, int m, str backend) -> Tensor",
    _scales,
    _scales_fake,
)
rdc_renoise_fwd = register_op(
    "rdc_renoise_fwd",
    "(Tensor y, Tensor x_hat, Tensor scales, int group, bool clamp, str backend) -> Tensor",
    _renoise_fwd,
    _renoise_fwd_fake,
)
rdc_renoise_bwd = register_op(
    "rdc_renoise_bwd",
    "(Tensor dz, Tensor y, Tensor x_hat, Tensor scales, int group, bool clamp, bool need_dy, bool need_dxh, "
    "str backend) -> (Tensor, Tensor)",
    _renoise_bwd,
    _renoise_bwd_fake,
)
p2n_loss_fwd = register_op(
    "p2n_loss_fwd",
    "(Tensor out_pos, Tensor out_neg, float gamma, float eps, bool compute_grad, str backend) -> (Tensor, Tensor)",
    _loss_fwd,
    _loss_fwd_fake,
)
