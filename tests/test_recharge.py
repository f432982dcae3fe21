"""RD recharged multi-target L1 loss: every backend against the reference, and the recharge law."""
import pytest
import torch

import fastdenoise.functional as F
from common import ALL_BACKENDS
from common import DEVICE
from common import FLOAT_DTYPES
from common import chi2_uniform_ok
from common import kernel_backends
from common import make_input
from common import tol
from fastdenoise.nn import RechargeL1Loss
from fastdenoise.ops.recharge import ops
from fastdenoise.ops.recharge.reference import recharge_choice_ref
from fastdenoise.ops.recharge.reference import recharge_l1_loss_ref
from fastdenoise.ops.recharge.reference import recharge_targets_ref

SHAPES = [(1, 1, 1, 1), (2, 1, 5, 7), (2, 3, 8, 6), (1, 4, 9, 10)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]


def _inputs(shape, j=3, dtype=torch.float32, layout="contiguous", requires_grad=False):
    s = make_input(shape, dtype, layout, gen_seed=1, requires_grad=requires_grad)
    y = make_input(shape, dtype, layout, gen_seed=2)
    t = torch.stack([make_input(shape, dtype, layout, gen_seed=10 + i) for i in range(j)])
    return s, y, t


def _loss_tol(dtype):
    return tol(torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("j", [1, 6])
def test_forward_matches_reference(backend, dtype, shape, j):
    s, y, t = _inputs(shape, j, dtype)
    loss = F.recharge_l1_loss(s, y, t, 7, backend=backend)
    ref = recharge_l1_loss_ref(s, y, t, 7)
    assert loss.dtype == ref.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(loss, ref, **_loss_tol(dtype))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5)])
def test_backward_matches_reference(backend, layout, shape):
    s, y, t = _inputs(shape, 4, torch.float32, layout, requires_grad=True)
    sr = s.detach().clone().requires_grad_(True)
    (3.0 * F.recharge_l1_loss(s, y, t, 3, backend=backend)).backward()
    (3.0 * recharge_l1_loss_ref(sr, y, t, 3)).backward()
    torch.testing.assert_close(s.grad, sr.grad)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    s, y, t = _inputs((2, 2, 2, 3), 2, torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: F.recharge_l1_loss(a, y, t, 5, backend=backend), (s,))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_opcheck(backend, layout):
    s, y, t = _inputs((2, 3, 4, 5), 3, torch.float32, layout)
    for compute_grad in (True, False):
        torch.library.opcheck(ops.recharge_l1_fwd, (s, y, t, 9, compute_grad, backend))


@pytest.mark.parametrize("backend", kernel_backends())
def test_seed_determinism_and_bit_identity(backend):
    """Same seed -> identical loss and gradient; new seed -> different; gradient equal to the reference's
    (sum_j sign / N; the reference sums J rounded terms), loss equal within summation-order rounding."""
    s, y, t = _inputs((2, 3, 6, 5), 6, requires_grad=True)
    out = []
    for seed in (42, 42, 43):
        s.grad = None
        loss = F.recharge_l1_loss(s, y, t, seed, backend=backend)
        loss.backward()
        out.append((loss.detach(), s.grad.clone()))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert not torch.equal(out[0][1], out[2][1])
    sr = s.detach().clone().requires_grad_(True)
    ref = F.recharge_l1_loss(sr, y, t, 42, backend="torch")
    ref.backward()
    torch.testing.assert_close(out[0][0], ref.detach())
    torch.testing.assert_close(out[0][1], sr.grad)


def test_recharge_law():
    """k uniform over J (4 sigma per bin over 2**15 pixels), each pixel recharged in exactly one
    target, shared across channels; recovered from every backend through the loss gradient."""
    for j in (2, 6):
        k = recharge_choice_ref(1234, 4, 64, 128, j)
        assert chi2_uniform_ok(torch.bincount(k.flatten(), minlength=j))
    j, shape = 6, (2, 3, 8, 8)
    y = torch.zeros(shape, device=DEVICE)
    t = torch.ones((j, *shape), device=DEVICE)
    tg = recharge_targets_ref(y, t, 5)
    assert torch.equal((tg == 0).sum(0), torch.ones(shape, dtype=torch.long, device=DEVICE))  # exactly one target is y
    assert torch.equal(tg[:, :, 0], tg[:, :, 2])  # shared across channels
    # student = 0.5: every term is 0.5, the gradient counts (#targets above - #below): (J - 1) - 1.
    # With teachers j = j + 1 and y = 0, sign(s - t_j) reveals which target was recharged.
    for backend in ALL_BACKENDS:
        tt = torch.stack([torch.full(shape, float(i + 1), device=DEVICE) for i in range(j)])
        s = torch.full(shape, 0.5, device=DEVICE).requires_grad_(True)
        loss = F.recharge_l1_loss(s, y, tt, 5, backend=backend)
        loss.backward()
        g = s.grad * s.numel()
        assert torch.equal(g, torch.full(shape, -(j - 2.0), device=DEVICE))  # one +1 (y), J - 1 times -1
        k = recharge_choice_ref(5, shape[0], shape[2], shape[3], j).to(DEVICE)
        expect = sum(((k != i).float() * (i + 1 - 0.5) + (k == i).float() * 0.5).sum() for i in range(j))
        torch.testing.assert_close(loss, expect * shape[1] / s.numel())


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 9, 8), (1, 4, 6, 11)])
def test_loss_matches_formula(backend, dtype, shape):
    """sum_j mean|s - target_j| with the targets built from the op's own draws (materialised here)."""
    s, y, t = _inputs(shape, 5, dtype, requires_grad=True)
    loss = F.recharge_l1_loss(s, y, list(t.unbind(0)), 99, backend=backend)
    tg = recharge_targets_ref(y.double(), t.double(), 99)
    o = s.detach().double().requires_grad_(True)
    expect = sum((o - tg[i]).abs().mean() for i in range(tg.shape[0]))
    expect.backward()
    torch.testing.assert_close(loss.double(), expect.detach(), **_loss_tol(dtype))
    loss.backward()
    torch.testing.assert_close(s.grad.double(), o.grad, **tol(dtype))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    """Expanded (stride-0) inputs and teachers given as a list of views work; y and teachers get no grad."""
    s = make_input((1, 1, 4, 4)).expand(2, 3, 4, 4).clone().requires_grad_(True)
    y = make_input((1, 1, 4, 4), gen_seed=3).expand(2, 3, 4, 4)
    base = make_input((2, 3, 4, 8), gen_seed=4)
    teachers = [base[..., ::2], base[..., 1::2], y]
    loss = F.recharge_l1_loss(s, y, teachers, 0, backend=backend)
    ref = recharge_l1_loss_ref(s, y, torch.stack(teachers), 0)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert s.grad is not None and s.grad.shape == s.shape


def test_module_matches_functional():
    s, y, t = _inputs((1, 3, 8, 8), 6)
    m = RechargeL1Loss()
    torch.testing.assert_close(m(s, y, t, 3), F.recharge_l1_loss(s, y, t, 3))


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    def step(s, y, t):
        return F.recharge_l1_loss(s * 2, y, t, 4, backend=backend)

    s, y, t = _inputs((1, 2, 6, 6), 3, requires_grad=True)
    eager = step(s, y, t)
    eager.backward()
    ge = s.grad.clone()
    s.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(s, y, t)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(s.grad, ge)


def test_invalid_inputs():
    x = torch.rand(1, 3, 8, 8, device=DEVICE)
    t = torch.rand(2, 1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="student must have shape"):
        F.recharge_l1_loss(x[0], x[0], t, 1)
    with pytest.raises(ValueError, match="y must have shape"):
        F.recharge_l1_loss(x, x[:, :2], t, 1)
    with pytest.raises(ValueError, match="J >= 1"):
        F.recharge_l1_loss(x, x, t[:0], 1)
    with pytest.raises(ValueError, match="J >= 1"):
        F.recharge_l1_loss(x, x, [], 1)
    with pytest.raises(ValueError, match="teachers must have shape"):
        F.recharge_l1_loss(x, x, t[..., :4], 1)
    with pytest.raises(ValueError, match="teachers must have shape"):
        F.recharge_l1_loss(x, x, t[0], 1)
    with pytest.raises(ValueError, match=r"teachers\[1\] must have shape"):
        F.recharge_l1_loss(x, x, [x, x[:, :1]], 1)
    with pytest.raises(TypeError, match="teachers must be float32"):
        F.recharge_l1_loss(x, x, t.to(torch.int32), 1)
    with pytest.raises(TypeError, match="y must be float32"):
        F.recharge_l1_loss(x, x.to(torch.int32), t, 1)
    # mixed floating dtypes (autocast: a bf16 student) are promoted, as the reference computes them
    torch.testing.assert_close(F.recharge_l1_loss(x.bfloat16(), x, t, 1), F.recharge_l1_loss(x.bfloat16().float(), x, t, 1))
    with pytest.raises(TypeError, match="seed must be an int"):
        F.recharge_l1_loss(x, x, t, 1.5)
    with pytest.raises(ValueError, match="backend must be one of"):
        F.recharge_l1_loss(x, x, t, 1, backend="cuda")
