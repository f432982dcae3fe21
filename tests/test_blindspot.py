"""Shifted max-pool (fused), s-shift and shifted conv: every backend against the reference."""
import pytest
import torch
import torch.nn.functional as TF

import fastdenoise.functional as F
from common import ALL_BACKENDS
from common import DEVICE
from common import FLOAT_DTYPES
from common import kernel_backends
from common import make_input
from fastdenoise.nn import ShiftConv2d
from fastdenoise.nn import ShiftedMaxPool2d
from fastdenoise.ops.blindspot import ops
from fastdenoise.ops.blindspot.reference import DIRECTIONS
from fastdenoise.ops.blindspot.reference import shifted_max_pool2d_index_ref
from fastdenoise.ops.blindspot.reference import shifted_max_pool2d_ref

SHAPES = [(1, 1, 2, 2), (2, 1, 5, 7), (2, 3, 8, 6), (1, 2, 9, 10), (1, 2, 12, 12)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, dtype, shape):
    """A max is exact: values bit-identical to the reference, saved argmax equal to the index oracle."""
    x = make_input(shape, dtype)
    for d in range(4):
        y = F.shifted_max_pool2d(x, d, backend=backend)
        assert torch.equal(y, shifted_max_pool2d_ref(x, d)), DIRECTIONS[d]
        _, idx = ops.shifted_max_pool2d_fwd(x, d, backend)
        assert idx.dtype == torch.int8 and torch.equal(idx, shifted_max_pool2d_index_ref(x, d))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 2, 8, 6), (1, 2, 7, 5)])
def test_backward_matches_reference(backend, layout, shape):
    for d in DIRECTIONS:
        x = make_input(shape, torch.float32, layout, requires_grad=True)
        xr = x.detach().clone().requires_grad_(True)
        y = F.shifted_max_pool2d(x, d, backend=backend)
        r = shifted_max_pool2d_ref(xr, d)
        w = torch.randn_like(y)
        (y * w).sum().backward()
        (r * w).sum().backward()
        torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_ties_and_zero_row(backend):
    """Ties go to the first maximum in raster order; a winning zero row/column gets no gradient
    (all-negative input: only zero-padded windows win), identical to the reference on every backend."""
    for base in (torch.zeros(1, 2, 6, 8), -torch.ones(1, 2, 6, 8), torch.ones(1, 2, 6, 8)):
        for d in range(4):
            x = base.clone().to(DEVICE).requires_grad_(True)
            xr = base.clone().to(DEVICE).requires_grad_(True)
            F.shifted_max_pool2d(x, d, backend=backend).sum().backward()
            shifted_max_pool2d_ref(xr, d).sum().backward()
            assert torch.equal(x.grad, xr.grad)
    x = (-torch.ones(1, 1, 4, 4, device=DEVICE)).requires_grad_(True)
    y = F.shifted_max_pool2d(x, "down", backend=backend)
    y.sum().backward()
    assert torch.equal(y[0, 0, 0], torch.zeros(2, device=DEVICE))  # top windows: the zero row wins
    assert x.grad[0, 0, 0].abs().sum() == 0 and x.grad.sum() == 2  # 2 real windows, 1 each


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    for d in range(4):  # fast_mode: a random projection (the interpreter makes full Jacobians slow)
        x = make_input((1, 2, 4, 5), torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: F.shifted_max_pool2d(t, d, backend=backend), (x,), fast_mode=True)
        assert torch.autograd.gradcheck(lambda t: F.s_shift(t, 2, d), (x,))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_opcheck(backend, layout):
    for d in ((0, 2) if layout == "contiguous" else (1, 3)):
        x = make_input((2, 3, 6, 5), torch.float32, layout)
        torch.library.opcheck(ops.shifted_max_pool2d_fwd, (x, d, backend))
        dy = make_input((2, 3, 3, 2), torch.float32, layout)
        idx = shifted_max_pool2d_index_ref(make_input((2, 3, 6, 5), gen_seed=3), d)
        torch.library.opcheck(ops.shifted_max_pool2d_bwd, (dy, idx, d, 6, 5, backend))


def test_directions_are_rotations():
    """Direction k == rot90^-k o down o rot90^k (even sizes), for values and gradients."""
    x = make_input((1, 2, 8, 8), torch.float64)
    for k in range(4):
        expect = torch.rot90(shifted_max_pool2d_ref(torch.rot90(x, k, (2, 3)), 0), -k, (2, 3))
        assert torch.equal(F.shifted_max_pool2d(x, k), expect)
        expect = torch.rot90(F.s_shift(torch.rot90(x, k, (2, 3)), 3, 0), -k, (2, 3))
        assert torch.equal(F.s_shift(x, 3, k), expect)


def test_s_shift():
    x = make_input((1, 2, 5, 7))
    assert torch.equal(F.s_shift(x, 2, "down"), TF.pad(x, (0, 0, 2, 0))[:, :, :5])
    assert torch.equal(F.s_shift(x, 2, "up"), TF.pad(x, (0, 0, 0, 2))[:, :, 2:])
    assert torch.equal(F.s_shift(x, 2, "right"), TF.pad(x, (2, 0, 0, 0))[..., :7])
    assert torch.equal(F.s_shift(x, 2, "left"), TF.pad(x, (0, 2, 0, 0))[..., 2:])
    assert torch.equal(F.s_shift(x, 0, "down"), x)
    assert torch.equal(F.s_shift(x, 5, "down"), torch.zeros_like(x))


@pytest.mark.parametrize("k", [1, 3])
def test_shift_conv2d_matches_pad_conv_crop(k):
    """ShiftConv2d == pad one side by k//2 + conv(padding k//2) + crop the other side, all directions;
    output row i of "down" depends on input rows <= i only."""
    x = make_input((2, 3, 7, 9), torch.float64)
    p = k // 2
    pads = {"down": ((0, 0, p, 0), (slice(None), slice(None), slice(0, 7))),
            "up": ((0, 0, 0, p), (slice(None), slice(None), slice(p, 7 + p))),
            "right": ((p, 0, 0, 0), (Ellipsis, slice(0, 9))),
            "left": ((0, p, 0, 0), (Ellipsis, slice(p, 9 + p)))}
    for d, (pad, crop) in pads.items():
        m = ShiftConv2d(3, 4, k, d).double().to(DEVICE)
        expect = TF.conv2d(TF.pad(x, pad), m.weight, m.bias, padding=p)[crop]
        torch.testing.assert_close(m(x), expect, rtol=0, atol=1e-12)
        assert d in repr(m)
    if k == 3:
        xg = x.clone().requires_grad_(True)
        ShiftConv2d(3, 4, 3, "down").double().to(DEVICE)(xg)[0, :, 3, 4].sum().backward()
        assert xg.grad[:, :, 4:].abs().sum() == 0 and xg.grad[0, :, 1:4, 3:6].abs().min() > 0


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    x = make_input((1, 1, 4, 4), fn=torch.rand).expand(2, 3, 4, 4).clone().requires_grad_(True)
    y = F.shifted_max_pool2d(x, "up", backend=backend)
    y.sum().backward()  # expanded (stride-0) incoming gradient
    assert x.grad.sum().item() == pytest.approx(y.numel())


def test_module_matches_functional():
    x = make_input((1, 3, 8, 8))
    m = ShiftedMaxPool2d("left")
    assert "direction=1" in repr(m)
    assert torch.equal(m(x), F.shifted_max_pool2d(x, "left"))


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    def step(x):
        return F.shifted_max_pool2d(x * 2, "down", backend=backend).square().mean() + F.s_shift(x, 1, "left").mean()

    x = make_input((1, 2, 6, 6), requires_grad=True)
    eager = step(x)
    eager.backward()
    ge = x.grad.clone()
    x.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x.grad, ge)


def test_invalid_inputs():
    x = torch.rand(1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="x must have shape"):
        F.shifted_max_pool2d(x[0])
    with pytest.raises(ValueError, match="H and W >= 2"):
        F.shifted_max_pool2d(x[:, :, :1])
    with pytest.raises(TypeError, match="x must be float"):
        F.shifted_max_pool2d(x.to(torch.int32))
    with pytest.raises(ValueError, match="direction must be one of"):
        F.shifted_max_pool2d(x, "diagonal")
    with pytest.raises(ValueError, match="direction must be one of"):
        F.shifted_max_pool2d(x, 4)
    with pytest.raises(TypeError, match="direction must be a str or an int"):
        F.shifted_max_pool2d(x, 1.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        F.shifted_max_pool2d(x, backend="cuda")
    with pytest.raises(ValueError, match="s must be in"):
        F.s_shift(x, 9, "down")
    with pytest.raises(TypeError, match="s must be an int"):
        F.s_shift(x, 1.5)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ShiftConv2d(3, 3, 2)
