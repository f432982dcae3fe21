"""Backend selection, Triton availability, input validation, the compute dtype rule and the fused losses'
saved-gradient backward, shared by every op."""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from fastdenoise._ext import EXT_ERROR
from fastdenoise._ext import HAS_EXT

BACKENDS = ("torch", "cpp", "triton")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
HAS_TRITON = importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backends() -> dict[str, str]:
    """What each backend can run here, e.g. ``{'torch': 'cpu, cuda', 'cpp': 'cpu', 'triton': ...}``."""
    out = {"torch": "cpu" + (", cuda" if torch.cuda.is_available() else "")}
    out["cpp"] = "cpu" if HAS_EXT else f"unavailable ({EXT_ERROR})"
    if not HAS_TRITON:
        out["triton"] = "unavailable (triton is not installed)"
    else:
        devs = []
        if torch.cuda.is_available():
            devs.append("cuda")
        if interpreting():
            devs.append("cpu (interpreter)")
        out["triton"] = ", ".join(devs) if devs else "unavailable (no CUDA device; set TRITON_INTERPRET=1 for the CPU interpreter)"
    return out


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """The backend that runs an op on ``device``.

    ``backend`` (or ``FASTDENOISE_BACKEND`` when ``backend`` is None) forces one of ``torch``, ``cpp``,
    ``triton``; a forced backend that cannot run here raises ``RuntimeError`` (never a silent fallback).
    Unforced: CUDA tensors use Triton, CPU tensors the C++ kernels, and plain torch where those are
    missing.
    """
    if backend is None:
        backend = os.environ.get("FASTDENOISE_BACKEND") or None
        if backend in ("", "auto"):
            backend = None
    if backend is None:
        if device.type == "cuda" and HAS_TRITON:
            return "triton"
        if device.type == "cpu" and HAS_EXT:
            return "cpp"
        return "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend == "cpp":
        if not HAS_EXT:
            raise RuntimeError(f"backend='cpp' requested but fastdenoise._C is not available: {EXT_ERROR}")
        if device.type != "cpu":
            raise RuntimeError(f"backend='cpp' runs CPU tensors only, got a tensor on {device}")
    elif backend == "triton":
        if not HAS_TRITON:
            raise RuntimeError("backend='triton' requested but triton is not installed")
        if device.type == "cpu" and not interpreting():
            raise RuntimeError(
                "backend='triton' on CPU tensors needs the Triton interpreter: set TRITON_INTERPRET=1 "
                "before importing fastdenoise"
            )
        if device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"backend='triton' does not run on {device}")
    return backend


# ----------------------------------------------------------------------------------------------
# validation: clear errors naming the argument, raised before any kernel runs


def check_tensor(name: str, t, *, ndim: int | Sequence[int] = 4, min_hw: int = 1) -> torch.Tensor:
    """Check ``t`` is a floating (B, C, H, W) tensor with B, C >= 1 and H, W >= ``min_hw``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16, bfloat16 or float64, got {t.dtype}")
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if t.dim() not in ndims:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {t.dim()} dims with shape {tuple(t.shape)}")
    if t.dim() == 4:
        b, c, h, w = t.shape
        if b < 1 or c < 1:
            raise ValueError(f"{name} must have B >= 1 and C >= 1, got shape {tuple(t.shape)}")
        if h < min_hw or w < min_hw:
            raise ValueError(f"{name} must have H and W >= {min_hw}, got shape {tuple(t.shape)}")
    return t


def check_like(name: str, t, ref_name: str, ref: torch.Tensor, *, shape: Sequence[int] | None = None,
               any_float: bool = False) -> torch.Tensor:
    """Check ``t`` matches ``ref`` in device and dtype, and has ``shape`` (default: ``ref.shape``).
    ``any_float``: any floating dtype is accepted instead of ``ref``'s (the op promotes mixed dtypes)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if any_float and t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16, bfloat16 or float64, got {t.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{name} must be on the same device as {ref_name} ({ref.device}), got {t.device}")
    if not any_float and t.dtype != ref.dtype:
        raise TypeError(f"{name} must have the same dtype as {ref_name} ({ref.dtype}), got {t.dtype}")
    want = tuple(ref.shape if shape is None else shape)
    if tuple(t.shape) != want:
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


def check_seed(seed) -> int:
    """A seed is a Python/NumPy integer in [0, 2**63)."""
    if isinstance(seed, torch.Tensor) or isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return seed


def check_float(name: str, v, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    """A finite real scalar inside the given bounds."""
    if isinstance(v, torch.Tensor) or isinstance(v, bool):
        raise TypeError(f"{name} must be a Python number, got {type(v).__name__}")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def seed_halves(seed: int) -> tuple[int, int]:
    """(low, high) 32-bit halves of a seed, the form kernels take."""
    return seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The one compute dtype rule of every op: float64 for float64 inputs, float32 for float32, float16
    and bfloat16. Kernels and references compute and accumulate in it, and losses are returned in it."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def skip_checks() -> bool:
    """Validation is skipped while torch.compile traces (it was done eagerly on the same code)."""
    return torch.compiler.is_compiling()


def scale_saved_grad(grad: torch.Tensor, dloss: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    """``grad * dloss * sign`` for a fused loss's backward, where ``grad`` is the gradient its forward saved.

    When the loss is the last node (``loss.backward()``, so ``dloss`` is exactly 1) on the CPU, the saved
    tensor is returned as is instead of a scaled copy: a fresh full-size allocation plus a pass over it was
    the largest single cost of the CPU APR step. Autograd never writes into an incoming gradient that
    another reference holds (the saved tensor is one), so handing it on is safe. On CUDA (reading the
    value would synchronise) and while tracing (torch.compile) it always multiplies.
    """
    if (sign == 1.0 and dloss.device.type == "cpu" and dloss.numel() == 1 and not dloss.requires_grad
            and not torch.compiler.is_compiling() and float(dloss) == 1.0):
        return grad
    s = dloss.to(grad.dtype)
    return grad * (s if sign == 1.0 else -s)


def save_loss_grads(ctx, *grads) -> None:
    """Save the gradients a fused loss's forward computed, for :class:`FusedLossFunction`'s backward.

    ``grads[i]`` is the gradient of forward input ``i``: a tensor, ``(tensor, sign)`` for ``sign * tensor``
    (P2N's ``out_neg`` gets ``-grad``), or None for no gradient; inputs past the last entry get none. A
    tensor shared by several inputs is saved once.
    """
    tensors, routes = [], []
    for g in grads:
        if g is None:
            routes.append(None)
            continue
        t, sign = g if isinstance(g, tuple) else (g, 1.0)
        k = next((j for j, u in enumerate(tensors) if u is t), len(tensors))
        if k == len(tensors):
            tensors.append(t)
        routes.append((k, float(sign)))
    ctx.save_for_backward(*tensors)
    ctx.loss_grad_routes = tuple(routes)


class FusedLossFunction(torch.autograd.Function):
    """Base of the fused losses' autograd Functions. The subclass's ``forward`` computes the value and
    the gradients in one pass and passes the gradients to :func:`save_loss_grads`; this shared backward
    returns ``sign * grad * dloss`` (:func:`scale_saved_grad`) for every input that needs a gradient and
    None for the others."""

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        saved = ctx.saved_tensors
        routes = ctx.loss_grad_routes
        out = []
        for i, need in enumerate(ctx.needs_input_grad):
            r = routes[i] if i < len(routes) else None
            out.append(scale_saved_grad(saved[r[0]], dloss, r[1]) if need and r is not None else None)
        return tuple(out)
