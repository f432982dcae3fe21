"""Blind2Grad dual mask and fused loss: every backend against the reference, and the mask's law."""
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
from fastdenoise.nn import Blind2GradLoss
from fastdenoise.ops.blind2grad import ops
from fastdenoise.ops.blind2grad.reference import blind2grad_loss_ref
from fastdenoise.ops.blind2grad.reference import detail_ref
from fastdenoise.ops.blind2grad.reference import dual_mask_ref
from fastdenoise.ops.blind2grad.reference import mask_count

SHAPES = [(1, 1, 1, 1), (2, 1, 5, 7), (1, 4, 6, 9), (2, 3, 8, 8)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]
EPS = 0.5  # with x_m = y + N(0, 0.5^2) noise roughly a third of the pixels are detail pixels


def _pair(shape, dtype=torch.float32, layout="contiguous"):
    y = make_input(shape, dtype, layout, gen_seed=1)
    x = make_input(shape, dtype, layout, gen_seed=2)
    return y, (y.double() + 0.5 * x.double()).to(dtype)


def _loss_inputs(shape, dtype=torch.float32, layout="contiguous", rate=0.3):
    y, xm = _pair(shape, dtype, layout)
    mask = dual_mask_ref(y, xm, 3, rate, EPS)
    a = make_input(shape, dtype, layout, gen_seed=3, requires_grad=True)
    f = make_input(shape, dtype, layout, gen_seed=4, requires_grad=True)
    return a, f, y, mask


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, dtype, shape):
    """The mask is bit-identical to the reference; the loss value matches it."""
    y, xm = _pair(shape, dtype)
    for rate in (0.0, 0.25, 0.6, 1.0):
        assert torch.equal(F.dual_mask(y, xm, 7, rate, EPS, backend=backend), dual_mask_ref(y, xm, 7, rate, EPS))
    a, f, y, mask = _loss_inputs(shape, dtype)
    for grad_on in ("all", "masked"):
        got = F.blind2grad_loss(a, f, y, mask, 0.8, 0.5, grad_on, backend=backend)
        ref = blind2grad_loss_ref(a, f, y, mask, 0.8, 0.5, grad_on)
        assert got.dtype == ref.dtype
        torch.testing.assert_close(got, ref, **tol(dtype if dtype in (torch.float64, torch.float32) else torch.float32))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("grad_on", ["all", "masked"])
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5)])
def test_backward_matches_reference(backend, layout, grad_on, shape):
    a, f, y, mask = _loss_inputs(shape, torch.float32, layout)
    a2, f2 = a.detach().clone().requires_grad_(True), f.detach().clone().requires_grad_(True)
    (3.0 * F.blind2grad_loss(a, f, y, mask, 0.8, 0.5, grad_on, False, backend=backend)).backward()
    (3.0 * blind2grad_loss_ref(a2, f2, y, mask, 0.8, 0.5, grad_on, False)).backward()
    torch.testing.assert_close(a.grad, a2.grad)
    torch.testing.assert_close(f.grad, f2.grad)
    a.grad = f.grad = None  # detach_full=True: no gradient into out_full
    F.blind2grad_loss(a, f, y, mask, backend=backend).backward()
    assert f.grad is None and a.grad is not None


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    a, f, y, mask = _loss_inputs((2, 2, 4, 5), torch.float64, rate=0.4)
    fast = backend == "triton"  # the interpreter is slow: random-direction gradcheck
    for grad_on in ("all", "masked"):
        assert torch.autograd.gradcheck(
            lambda s, t: F.blind2grad_loss(s, t, y, mask, 0.8, 0.5, grad_on, False, backend=backend), (a, f),
            fast_mode=fast)
    assert torch.autograd.gradcheck(lambda s: F.blind2grad_loss(s, f, y, mask, backend=backend), (a,), fast_mode=fast)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_opcheck(backend, layout):
    y, xm = _pair((2, 3, 6, 5), torch.float32, layout)
    torch.library.opcheck(ops.dual_mask_fwd, (y, xm, 9, 8, EPS, backend))
    a, f, y, mask = _loss_inputs((2, 3, 6, 5), torch.float32, layout)
    for masked_only, ga, gf in ((False, True, False), (True, True, True), (False, False, False)):
        torch.library.opcheck(ops.blind2grad_loss_fwd, (a.detach(), f.detach(), y, mask, 0.8, 0.5, masked_only, ga, gf,
                                                        backend))


@pytest.mark.parametrize("backend", kernel_backends())
def test_seed_determinism_and_bit_identity(backend):
    """Same seed -> identical; new seed -> different; identical to the reference on every dtype."""
    y, xm = _pair((2, 3, 16, 12))
    a = F.dual_mask(y, xm, 42, eps_g=EPS, backend=backend)
    assert a.sum() > 0
    assert torch.equal(a, F.dual_mask(y, xm, 42, eps_g=EPS, backend=backend))
    assert not torch.equal(a, F.dual_mask(y, xm, 43, eps_g=EPS, backend=backend))
    assert torch.equal(a, F.dual_mask(y, xm, 42, eps_g=EPS, backend="torch"))
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        yd, xd = y.to(dt), xm.to(dt)
        assert torch.equal(F.dual_mask(yd, xd, 42, eps_g=EPS, backend=backend), dual_mask_ref(yd, xd, 42, eps_g=EPS))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_mask_law(backend):
    """Exact count per image when enough flat pixels; detail pixels never masked; all flat pixels
    masked when fewer than K are flat; shared across channels (one plane)."""
    y, xm = _pair((3, 3, 24, 20))
    k = mask_count(0.25, 24, 20)
    m = F.dual_mask(y, xm, 5, 0.25, EPS, backend=backend)
    assert m.shape == (3, 1, 24, 20) and m.dtype == y.dtype
    detail = detail_ref(y, xm, EPS)
    assert (~detail).flatten(1).sum(1).min() > k
    assert torch.equal(m.flatten(1).sum(1), torch.full((3,), float(k), device=m.device, dtype=m.dtype))
    assert not (m[:, 0].bool() & detail).any()
    m = F.dual_mask(y, xm, 5, 0.25, 0.05, backend=backend)  # few flat pixels: all of them masked
    flat = ~detail_ref(y, xm, 0.05)
    assert flat.flatten(1).sum(1).max() < k
    assert torch.equal(m[:, 0].bool(), flat)


def test_mask_uniform_among_flat():
    """Every flat pixel is masked with the same probability (4 sigma, counts over seeds); the
    selection is without replacement (exactly K per draw)."""
    y = torch.zeros(1, 1, 8, 8, device=DEVICE)
    xm = torch.zeros(1, 1, 8, 8, device=DEVICE)
    xm[..., :2, :] = 1.0  # the top 16 pixels are detail pixels
    be = "cpp" if "cpp" in kernel_backends() else "triton" if DEVICE.type == "cuda" else "torch"
    counts = torch.zeros(8, 8, device=DEVICE)
    for s in range(400):
        m = F.dual_mask(y, xm, s, 0.25, 0.5, backend=be)[0, 0]
        assert m.sum() == 16 and m[:2].sum() == 0
        counts += m
    assert chi2_uniform_ok(counts[2:].flatten())


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 9, 8), (1, 4, 6, 11)])
def test_loss_matches_formula(backend, dtype, shape):
    """The fused loss equals the documented formula on the op's own mask (torch.diff gradients)."""
    y, xm = _pair(shape, dtype)
    mask = F.dual_mask(y, xm, 11, 0.25, EPS, backend=backend)
    a = make_input(shape, dtype, gen_seed=3, requires_grad=True)
    f = make_input(shape, dtype, gen_seed=4)
    omega, gamma = 0.7, 0.4
    loss = F.blind2grad_loss(a, f, y, mask, omega, gamma, backend=backend)
    o = a.detach().double().requires_grad_(True)
    m, ff, yy = mask.double(), f.double(), y.double()
    c = shape[1]
    dc = m * (o - yy)
    dgx = torch.diff(ff, dim=-1) - torch.diff(o, dim=-1)
    dgy = torch.diff(ff, dim=-2) - torch.diff(o, dim=-2)
    n_d = max(dgx.numel() + dgy.numel(), 1)
    n_m = max(c * m.sum().item(), 1)
    expect = (1 + gamma) * (dc**2).sum() / n_m + omega**2 * ((dgx**2).sum() + (dgy**2).sum()) / n_d
    expect.backward()
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    vtol = tol(dtype if dtype != torch.bfloat16 else torch.float32)
    torch.testing.assert_close(loss.double(), expect.detach(), **vtol)
    loss.backward()
    torch.testing.assert_close(a.grad.double(), o.grad, **tol(dtype))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    a, f, y, mask = _loss_inputs((2, 3, 5, 4))
    y = make_input((1, 1, 5, 4)).expand(2, 3, 5, 4)
    mask = mask[:1].expand(2, 1, 5, 4)
    loss = F.blind2grad_loss(a, f, y, mask, backend=backend)
    loss.backward()
    a2 = a.detach().clone().requires_grad_(True)
    blind2grad_loss_ref(a2, f, y, mask).backward()
    torch.testing.assert_close(a.grad, a2.grad)


def test_module_matches_functional():
    a, f, y, mask = _loss_inputs((1, 3, 8, 8))
    mod = Blind2GradLoss(omega=0.5, gamma=0.25, grad_on="masked")
    assert "omega=0.5" in repr(mod) and "grad_on='masked'" in repr(mod)
    torch.testing.assert_close(mod(a, f, y, mask), F.blind2grad_loss(a, f, y, mask, 0.5, 0.25, "masked"))


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    def step(a, f, y, xm):
        mask = F.dual_mask(y, xm, 4, 0.25, EPS, backend=backend)
        return F.blind2grad_loss(a * 2, f, y, mask, 0.8, 0.5, "all", False, backend=backend)

    a, f, y, _ = _loss_inputs((1, 2, 6, 6))
    _, xm = _pair((1, 2, 6, 6))
    eager = step(a, f, y, xm)
    eager.backward()
    ga, gf = a.grad.clone(), f.grad.clone()
    a.grad = f.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(a, f, y, xm)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(a.grad, ga)
    torch.testing.assert_close(f.grad, gf)


def test_invalid_inputs():
    y = torch.rand(1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="y must have shape"):
        F.dual_mask(y[0], y[0], 1)
    with pytest.raises(TypeError, match="y must be float"):
        F.dual_mask(y.to(torch.int32), y, 1)
    with pytest.raises(ValueError, match="x_m must have shape"):
        F.dual_mask(y, y[:, :2], 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        F.dual_mask(y, y, 1.5)
    with pytest.raises(ValueError, match="rate must be <= 1"):
        F.dual_mask(y, y, 1, rate=1.5)
    with pytest.raises(ValueError, match="eps_g must be >="):
        F.dual_mask(y, y, 1, eps_g=-1)
    m = torch.zeros(1, 1, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="mask must have shape"):
        F.blind2grad_loss(y, y, y, y, 1)
    with pytest.raises(TypeError, match="out_full must be float32"):
        F.blind2grad_loss(y, y.to(torch.int32), y, m)
    # mixed floating dtypes (autocast) are promoted, as the reference computes them
    torch.testing.assert_close(F.blind2grad_loss(y.bfloat16(), y, y, m), F.blind2grad_loss(y.bfloat16().float(), y, y, m))
    with pytest.raises(ValueError, match="y must have shape"):
        F.blind2grad_loss(y, y, y[..., :4], m)
    with pytest.raises(ValueError, match="omega must be >="):
        F.blind2grad_loss(y, y, y, m, omega=-1)
    with pytest.raises(ValueError, match="grad_on must be one of"):
        F.blind2grad_loss(y, y, y, m, grad_on="edges")
    with pytest.raises(ValueError, match="backend must be one of"):
        F.dual_mask(y, y, 1, backend="cuda")
