"""Nb2Nb sub-sampler and fused loss: every backend against the reference, and the sampler's law."""
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
from fastdenoise.nn import Nb2NbLoss
from fastdenoise.ops.neighbor import ops
from fastdenoise.ops.neighbor.reference import PAIRS
from fastdenoise.ops.neighbor.reference import nb2nb_loss_ref
from fastdenoise.ops.neighbor.reference import neighbor_choice_ref
from fastdenoise.ops.neighbor.reference import neighbor_subsample_ref

SHAPES = [(1, 1, 2, 2), (2, 1, 5, 7), (2, 3, 8, 6), (1, 4, 9, 10), (3, 3, 16, 16)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, dtype, shape):
    """Sub-images are exact copies, so every backend equals the reference bit for bit."""
    x = make_input(shape, dtype)
    g1, g2 = F.neighbor_subsample(x, 7, backend=backend)
    r1, r2 = neighbor_subsample_ref(x, 7)
    assert torch.equal(g1, r1) and torch.equal(g2, r2)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5)])
def test_backward_matches_reference(backend, layout, shape):
    x = make_input(shape, torch.float32, layout, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    g1, g2 = F.neighbor_subsample(x, 3, backend=backend)
    r1, r2 = neighbor_subsample_ref(xr, 3)
    w1, w2 = torch.randn_like(g1), torch.randn_like(g2)
    ((g1 * w1).sum() + (g2 * w2).sum()).backward()
    ((r1 * w1).sum() + (r2 * w2).sum()).backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    x = make_input((2, 2, 5, 6), torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.neighbor_subsample(t, 11, backend=backend), (x,))
    out = make_input((2, 2, 2, 3), torch.float64, requires_grad=True)
    y, fy = make_input((2, 2, 5, 6), torch.float64, gen_seed=1), make_input((2, 2, 5, 6), torch.float64, gen_seed=2)
    assert torch.autograd.gradcheck(lambda o: F.nb2nb_loss(o, y, fy, 5, 1.5, backend=backend), (out,))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_opcheck(backend, layout):
    x = make_input((2, 3, 6, 5), torch.float32, layout)
    for need_g2 in (True, False):
        torch.library.opcheck(ops.neighbor_subsample_fwd, (x, 9, need_g2, backend))
    dg = make_input((2, 3, 3, 2), torch.float32, layout)
    torch.library.opcheck(ops.neighbor_subsample_bwd, (dg, dg * 2, 9, 6, 5, backend))
    out = make_input((2, 3, 3, 2), torch.float32, layout)
    for compute_grad in (True, False):
        torch.library.opcheck(ops.nb2nb_loss_fwd, (out, x, x * 0.5, 9, 0.5, 2.0, compute_grad, backend))


@pytest.mark.parametrize("backend", kernel_backends())
def test_seed_determinism_and_bit_identity(backend):
    """Same seed -> identical; a new seed -> different; identical to the reference stream."""
    x = make_input((2, 3, 16, 12))
    a = F.neighbor_subsample(x, 42, backend=backend)
    b = F.neighbor_subsample(x, 42, backend=backend)
    c = F.neighbor_subsample(x, 43, backend=backend)
    ref = F.neighbor_subsample(x, 42, backend="torch")
    assert torch.equal(a[0], b[0]) and torch.equal(a[0], ref[0]) and torch.equal(a[1], ref[1])
    assert not torch.equal(a[0], c[0])


def test_pair_law():
    """Each of the 8 ordered pairs is drawn uniformly (4 sigma over 2**16 cells); g1 and g2 are always
    edge-adjacent; the choice is shared across channels."""
    k = neighbor_choice_ref(1234, 4, 128, 128)
    assert chi2_uniform_ok(torch.bincount(k.flatten(), minlength=8))
    # With x = position index, g1/g2 reveal the picked positions; channels share the choice.
    b, h, w = 2, 32, 32
    pos = (torch.arange(h)[:, None] % 2) * 2 + (torch.arange(w)[None, :] % 2)
    x = pos.to(torch.float32).expand(b, 3, h, w).contiguous().to(DEVICE)
    for backend in ALL_BACKENDS:
        g1, g2 = F.neighbor_subsample(x, 5, backend=backend)
        assert torch.equal(g1[:, 0], g1[:, 2]) and torch.equal(g2[:, 0], g2[:, 1])
        pairs = set(zip(g1.flatten().long().tolist(), g2.flatten().long().tolist()))
        assert pairs == set(PAIRS)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 9, 8), (1, 4, 6, 11)])
def test_loss_matches_formula(backend, dtype, shape):
    """The fused loss equals the formula evaluated on the op's own sub-images; grad to out only."""
    b, c, h, w = shape
    y, fy = make_input(shape, dtype, gen_seed=1), make_input(shape, dtype, gen_seed=2)
    out = make_input((b, c, h // 2, w // 2), dtype, requires_grad=True)
    gamma, seed = 1.7, 99
    loss = F.nb2nb_loss(out, y, fy, seed, gamma, backend=backend)
    g1f, g2f = F.neighbor_subsample(fy.double(), seed, backend=backend)
    _, g2y = F.neighbor_subsample(y.double(), seed, backend=backend)
    o = out.detach().double().requires_grad_(True)
    d = o - g2y
    expect = (d**2).mean() + gamma * ((d - (g1f - g2f)) ** 2).mean()
    expect.backward()
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(loss.double(), expect.detach(), **tol(dtype if dtype != torch.bfloat16 else torch.float32))
    loss.backward()
    torch.testing.assert_close(out.grad.double(), o.grad, **tol(dtype))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
def test_loss_backward_matches_reference(backend, layout):
    y = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=1)
    fy = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=2)
    out = make_input((2, 3, 4, 5), torch.float32, layout, requires_grad=True)
    o2 = out.detach().clone().requires_grad_(True)
    (3.0 * F.nb2nb_loss(out, y, fy, 1, 2.0, backend=backend)).backward()
    (3.0 * nb2nb_loss_ref(o2, y, fy, 1, 2.0)).backward()
    torch.testing.assert_close(out.grad, o2.grad)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 9, 8)])
def test_need_g2_false(backend, shape):
    """need_g2=False returns (g1, None) with g1 bit-identical to the full call, and g1's gradient."""
    x = make_input(shape, requires_grad=True)
    g1, g2 = F.neighbor_subsample(x, 21, need_g2=False, backend=backend)
    r1, _ = F.neighbor_subsample(x.detach(), 21, backend="torch")
    assert g2 is None and torch.equal(g1, r1)
    w = torch.randn_like(g1)
    (g1 * w).sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    (neighbor_subsample_ref(xr, 21)[0] * w).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("lambda1", [1.0, 0.25, 0.0])
def test_loss_terms_and_lambda1(backend, lambda1):
    """lambda1 * mean(d^2) + gamma * mean(r^2) with the two means returned for logging; lambda1 = 0
    keeps only the regulariser (value and gradient)."""
    y, fy = make_input((2, 3, 8, 6), gen_seed=1), make_input((2, 3, 8, 6), gen_seed=2)
    out = make_input((2, 3, 4, 3), requires_grad=True)
    loss, t1, t2 = F.nb2nb_loss(out, y, fy, 8, 1.5, lambda1=lambda1, return_terms=True, backend=backend)
    o = out.detach().clone().requires_grad_(True)
    r1, r2 = (nb2nb_loss_ref(o, y, fy, 8, 0.0), nb2nb_loss_ref(o, y, fy, 8, 1.0, lambda1=0.0))
    expect = lambda1 * r1 + 1.5 * r2
    expect.backward()
    assert not t1.requires_grad and not t2.requires_grad
    torch.testing.assert_close(t1, r1.detach())
    torch.testing.assert_close(t2, r2.detach())
    torch.testing.assert_close(loss, expect.detach())
    loss.backward()
    torch.testing.assert_close(out.grad, o.grad)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    x = make_input((1, 1, 4, 4)).expand(2, 3, 4, 4).requires_grad_(False)
    x = x.clone().requires_grad_(True)
    g1, g2 = F.neighbor_subsample(x, 0, backend=backend)
    g1.sum().backward()  # expanded (stride-0) incoming gradient
    assert x.grad.sum().item() == pytest.approx(g1.numel())


def test_module_matches_functional():
    y, fy = make_input((1, 3, 8, 8), gen_seed=1), make_input((1, 3, 8, 8), gen_seed=2)
    out = make_input((1, 3, 4, 4))
    m = Nb2NbLoss(gamma=1.25)
    assert "gamma=1.25" in repr(m)
    torch.testing.assert_close(m(out, y, fy, 3), F.nb2nb_loss(out, y, fy, 3, 1.25))


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    def step(x, y, fy):
        g1, g2 = F.neighbor_subsample(x, 4, backend=backend)
        return F.nb2nb_loss(g1 * 2, y, fy, 4, 2.0, backend=backend) + g2.mean()

    x = make_input((1, 2, 6, 6), requires_grad=True)
    y, fy = make_input((1, 2, 6, 6), gen_seed=1), make_input((1, 2, 6, 6), gen_seed=2)
    eager = step(x, y, fy)
    eager.backward()
    ge = x.grad.clone()
    x.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x, y, fy)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x.grad, ge)


def test_invalid_inputs():
    x = torch.rand(1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="x must have shape"):
        F.neighbor_subsample(x[0], 1)
    with pytest.raises(ValueError, match="H and W >= 2"):
        F.neighbor_subsample(x[:, :, :1], 1)
    with pytest.raises(TypeError, match="x must be float"):
        F.neighbor_subsample(x.to(torch.int32), 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        F.neighbor_subsample(x, 1.5)
    with pytest.raises(ValueError, match="seed must be in"):
        F.neighbor_subsample(x, -1)
    with pytest.raises(ValueError, match="out must have shape"):
        F.nb2nb_loss(torch.rand(1, 3, 8, 8, device=DEVICE), x, x, 1)
    with pytest.raises(TypeError, match="fy must be float"):
        F.nb2nb_loss(torch.rand(1, 3, 4, 4, device=DEVICE), x, x.to(torch.int32), 1)
    with pytest.raises(TypeError, match="needs the seed its sampler used"):
        F.nb2nb_loss(torch.rand(1, 3, 4, 4, device=DEVICE), x, x, None)
    with pytest.raises(ValueError, match="lambda1 must be >="):
        F.nb2nb_loss(torch.rand(1, 3, 4, 4, device=DEVICE), x, x, 1, lambda1=-1)
    with pytest.raises(TypeError, match="need_g2 must be a bool"):
        F.neighbor_subsample(x, 1, need_g2=0)
    with pytest.raises(ValueError, match="gamma must be >="):
        F.nb2nb_loss(torch.rand(1, 3, 4, 4, device=DEVICE), x, x, 1, gamma=-1)
    with pytest.raises(ValueError, match="backend must be one of"):
        F.neighbor_subsample(x, 1, backend="cuda")
