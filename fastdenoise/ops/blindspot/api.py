"""Public blind-spot ops: ``shifted_max_pool2d`` (fused), ``s_shift`` and ``shift_conv2d`` (torch).

Directions (see reference.py): ``"down"`` (0), ``"left"`` (1), ``"up"`` (2), ``"right"`` (3); direction
k is the upstream "down" op conjugated by ``torch.rot90(., k, (2, 3))``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fastdenoise._runtime import check_tensor
from fastdenoise._runtime import resolve_backend
from fastdenoise._runtime import skip_checks
from fastdenoise.ops.blindspot import ops
from fastdenoise.ops.blindspot.reference import direction_index
from fastdenoise.ops.blindspot.reference import s_shift_ref
from fastdenoise.ops.blindspot.reference import shifted_max_pool2d_ref


class ShiftedMaxPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, direction, backend):
        y, idx = ops.shifted_max_pool2d_fwd(x, direction, backend)
        ctx.mark_non_differentiable(idx)
        ctx.save_for_backward(idx)  # 1 byte per output: the input itself is not kept alive
        ctx.direction, ctx.backend, ctx.hw = direction, backend, (x.shape[-2], x.shape[-1])
        return y, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _didx):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (idx,) = ctx.saved_tensors
        dx = ops.shifted_max_pool2d_bwd(dy, idx, ctx.direction, ctx.hw[0], ctx.hw[1], ctx.backend)
        return dx, None, None


def shifted_max_pool2d(x: torch.Tensor, direction="down", *, backend: str | None = None) -> torch.Tensor:
    """AT-BSN/Laine19 shifted 2x2 max-pool in one pass (no padded copy of the input).

    ``"down"``: output (i, j) is the max over input rows (2i-1, 2i) (row -1 is a zero row) and columns
    (2j, 2j+1), i.e. zero-pad one row at the top, drop the last row, 2x2 max-pool. The other
    directions are the rotated equivalents (table in ``fastdenoise.ops.blindspot.reference``).
    The backward routes the gradient to the argmax saved as int8 in the forward; ties go to the first
    maximum in raster order (identical on every backend and equal to torch's max_pool2d on the padded
    tensor); a maximum on the zero row/column sends its gradient nowhere.

    Args:
        x: (B, C, H, W) float tensor, H and W >= 2. Any strides; the output is contiguous.
        direction: ``"down"``, ``"left"``, ``"up"``, ``"right"`` or 0..3.
        backend: ``"torch"`` (reference), ``"cpp"``, ``"triton"`` or None (auto).

    Returns:
        (B, C, H // 2, W // 2) tensor, differentiable with respect to ``x``.

    Example:
        >>> y = shifted_max_pool2d(torch.rand(1, 48, 32, 32), "down")
    """
    d = direction_index(direction)
    if not skip_checks():
        check_tensor("x", x, min_hw=2)
    be = resolve_backend(backend, x.device)
    if be == "torch":
        return shifted_max_pool2d_ref(x, d)
    return ShiftedMaxPool2dFunction.apply(x, d, be)[0]


def s_shift(x: torch.Tensor, s: int, direction="down") -> torch.Tensor:
    """AT-BSN's s-shift: move the content ``s`` pixels in ``direction``, zeros entering behind
    ("down": zero-pad s rows at the top, crop s at the bottom).

    Kept in torch on purpose: it is one ``constant_pad_nd`` with a negative pad on the far side, a
    single read+write pass forward and backward, which is what a kernel would cost too. Inside the
    AT-BSN head the shift is folded into the channel concat instead (see ``fastdenoise.models.atbsn``).

    Args:
        x: (B, C, H, W) tensor.
        s: shift in pixels, 0 <= s <= the shifted dimension.
        direction: as for :func:`shifted_max_pool2d`.

    Returns:
        Tensor of the shape of ``x``.
    """
    d = direction_index(direction)
    if not skip_checks():
        check_tensor("x", x)
        if isinstance(s, bool) or not hasattr(s, "__index__"):
            raise TypeError(f"s must be an int, got {type(s).__name__}")
        lim = x.shape[-2] if d in (0, 2) else x.shape[-1]
        if not 0 <= int(s) <= lim:
            raise ValueError(f"s must be in [0, {lim}] for this input and direction, got {s}")
    return s_shift_ref(x, int(s), d)


def shift_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, direction="down") -> torch.Tensor:
    """Shifted convolution (Laine19/AT-BSN): ``"down"`` = zero-pad k//2 rows at the top, conv with
    padding k//2, crop the last k//2 rows, so output row i sees input rows <= i only. The other
    directions are the rotated equivalents ("up": rows >= i, "right": columns <= j, "left":
    columns >= j). ``weight`` (O, I, k, k), k odd, is applied as given (not rotated).

    Implementation: one conv2d with padding (2p, p) (or (p, 2p)) and a view of the first/last H (W)
    output rows (columns); no padded copy of the input. Measured on CPU (mkldnn) and the same holds
    for cuDNN: the symmetric-padding conv runs the library's native padded kernel, whose cost equals a
    plain conv plus 2p/H extra rows, while the upstream pad+conv+crop (or F.pad with asymmetric pads +
    conv(padding 0)) pays a full extra read+write of the input for the padded copy, forward and
    backward. The narrowed output view is consumed by the following out-of-place LeakyReLU, which
    writes a contiguous tensor anyway, so the view costs nothing extra.
    """
    d = direction_index(direction)
    k = weight.shape[-1]
    p = k // 2
    if d in (0, 2):
        y = F.conv2d(x, weight, bias, padding=(2 * p, p))
        return y.narrow(2, 0 if d == 0 else 2 * p, x.shape[-2])
    y = F.conv2d(x, weight, bias, padding=(p, 2 * p))
    return y.narrow(3, 0 if d == 3 else 2 * p, x.shape[-1])

