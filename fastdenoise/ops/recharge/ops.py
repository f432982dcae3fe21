"""torch.library registration of the RD recharge loss op (schema, CPU/CUDA impl, fake kernel)."""
import torch

from fastdenoise._library import cpp
from fastdenoise._library import register_op
from fastdenoise._runtime import opmath_dtype


def _fwd(student, y, teachers, seed, compute_grad, backend):
    if backend == "cpp":
        return tuple(cpp().recharge_l1_fwd(student, y, teachers, seed, compute_grad))
    from fastdenoise.ops.recharge.triton import recharge_l1_fwd_triton

    return recharge_l1_fwd_triton(student, y, teachers, seed, compute_grad)


def _fwd_fake(student, y, teachers, seed, compute_grad, backend):
    grad = torch.empty_like(student, memory_format=torch.contiguous_format) if compute_grad else student.new_empty((0,))
    return student.new_empty((), dtype=opmath_dtype(student.dtype)), grad


recharge_l1_fwd = register_op(
    "recharge_l1_fwd",
    "(Tensor student, Tensor y, Tensor teachers, SymInt seed, bool compute_grad, str backend) -> (Tensor, Tensor)",
    _fwd,
    _fwd_fake,
)
