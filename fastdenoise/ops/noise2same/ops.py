"""torch.library registration of the Noise2Same ops (schemas, CPU/CUDA impls, fake kernels).

``mode`` is 0 for Gaussian replacement and 1 for the donut. The loss forward returns the scalar loss
and ``coef = (2 / N, lam / (sum(m) sqrt(inv)))`` (0 when ``inv < eps`` or ``sum(m) == 0``), both on
the device: the backward multiplies ``coef`` by the incoming gradient and runs one elementwise kernel
without any host synchronisation.
"""
import torch

from fastdenoise._ext import HAS_EXT
from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._rng import box_muller_exact
from fastdenoise._runtime import opmath_dtype
from fastdenoise.ops.noise2same.reference import STREAM_GAUSS
from fastdenoise.ops.noise2same.reference import gaussian_values
from fastdenoise.ops.noise2same.reference import n_boxes
from fastdenoise.ops.noise2same.reference import round_to

GAUSSIAN, DONUT = 0, 1


def _gaussian_values(seed: int, nbox: int, sigma_m: float, dtype: torch.dtype, device) -> torch.Tensor:
    """``reference.gaussian_values`` with the Philox words from the C++ extension when it is built (one
    call instead of ~150 small torch ops); the transform is the same ``_rng.box_muller_exact``, so the
    values are bit-identical (tested)."""
    if not HAS_EXT:
        return gaussian_values(seed, nbox, sigma_m, dtype, device)
    idx = torch.arange(2 * ((nbox + 1) // 2), dtype=torch.int64)
    w = cpp().philox(seed, idx, STREAM_GAUSS)
    zc, zs = box_muller_exact(w[0::2], w[1::2])
    z = torch.stack([zc, zs], -1).reshape(-1)[:nbox]
    return round_to(z * float(sigma_m), dtype).to(device)


def _mask_fwd(x, seed, box, mode, sigma_m, backend):
    if backend == "cpp":
        if mode == DONUT:
            vals = x.new_empty((0,))
        else:
            vals = _gaussian_values(seed, n_boxes(x.shape, box)[0], sigma_m, x.dtype, x.device)
        return tuple(cpp().noise2same_mask_fwd(x, vals, seed, box, mode))
    from fastdenoise.ops.noise2same.triton import noise2same_mask_fwd_triton

    return noise2same_mask_fwd_triton(x, seed, box, mode == DONUT, sigma_m)  # Gaussian values drawn in-kernel


def _mask_fwd_fake(x, seed, box, mode, sigma_m, backend):
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(x, memory_format=torch.contiguous_format))


def _mask_bwd(grad, mask, seed, box, mode, backend):
    if backend == "cpp":
        return cpp().noise2same_mask_bwd(grad, mask, seed, box, mode)
    from fastdenoise.ops.noise2same.triton import noise2same_mask_bwd_triton

    return noise2same_mask_bwd_triton(grad, mask, mode == DONUT)


def _mask_bwd_fake(grad, mask, seed, box, mode, backend):
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


def _combine(sums: torch.Tensor, n: int, lam: float, eps: float, dtype: torch.dtype):
    """(loss, coef) from the three sums, with torch ops on the sums' device (no host sync)."""
    s = sums.to(torch.float64)
    s0, s1, sm = s.unbind(0)
    pos = sm > 0
    sm_safe = torch.where(pos, sm, torch.ones_like(sm))
    inv = torch.where(pos, s1 / sm_safe, torch.zeros_like(sm))
    root = torch.sqrt(torch.clamp(inv, min=eps))
    loss = s0 / n + lam * root
    c1 = torch.where(pos & (inv >= eps), lam / (sm_safe * root), torch.zeros_like(sm))
    coef = torch.stack([torch.full_like(sm, 2.0 / n), c1])
    return loss.to(opmath_dtype(dtype)), coef


def _loss_fwd(full, masked, x, mask, lam, eps, backend):
    if backend == "cpp":
        sums = cpp().noise2same_loss_sums(full, masked, x, mask)
    else:
        from fastdenoise.ops.noise2same.triton import noise2same_loss_sums_triton

        sums = noise2same_loss_sums_triton(full, masked, x, mask)
    return _combine(sums, full.numel(), lam, eps, full.dtype)


def _loss_fwd_fake(full, masked, x, mask, lam, eps, backend):
    return full.new_empty((), dtype=opmath_dtype(full.dtype)), full.new_empty((2,), dtype=torch.float64)


def _loss_bwd(coef, full, masked, x, mask, backend):
    if backend == "cpp":
        return tuple(cpp().noise2same_loss_bwd(coef, full, masked, x, mask))
    from fastdenoise.ops.noise2same.triton import noise2same_loss_bwd_triton

    return noise2same_loss_bwd_triton(coef, full, masked, x, mask)


def _loss_bwd_fake(coef, full, masked, x, mask, backend):
    return (torch.empty_like(full, memory_format=torch.contiguous_format),
            torch.empty_like(full, memory_format=torch.contiguous_format))


noise2same_mask_fwd = register_op(
    "noise2same_mask_fwd",
    "(Tensor x, SymInt seed, int box, int mode, float sigma_m, str backend) -> (Tensor, Tensor)",
    _mask_fwd,
    _mask_fwd_fake,
)
noise2same_mask_bwd = register_op(
    "noise2same_mask_bwd",
    "(Tensor grad, Tensor mask, SymInt seed, int box, int mode, str backend) -> Tensor",
    _mask_bwd,
    _mask_bwd_fake,
)
noise2same_loss_fwd = register_op(
    "noise2same_loss_fwd",
    "(Tensor full, Tensor masked, Tensor x, Tensor mask, float lam, float eps, str backend) -> (Tensor, Tensor)",
    _loss_fwd,
    _loss_fwd_fake,
)
noise2same_loss_bwd = register_op(
    "noise2same_loss_bwd",
    "(Tensor coef, Tensor full, Tensor masked, Tensor x, Tensor mask, str backend) -> (Tensor, Tensor)",
    _loss_bwd,
    _loss_bwd_fake,
)
