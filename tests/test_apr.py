"""APR sampler and fused loss: every backend against the reference, and the sampler's law."""
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
from fastdenoise.nn import APRLoss
from fastdenoise.ops.apr import ops
from fastdenoise.ops.apr.reference import PAIRS72
from fastdenoise.ops.apr.reference import apr_choice_ref
from fastdenoise.ops.apr.reference import apr_loss_ref
from fastdenoise.ops.apr.reference import apr_sample_ref

SHAPES = [(1, 1, 1, 1), (2, 1, 5, 7), (1, 4, 3, 2), (2, 3, 8, 6), (1, 2, 1, 9)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]


def _position_image(b, h, w, c=1):
    """x[b, :, r, c] = r * w + c (exactly representable), to read back the picked source pixels."""
    pos = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    return pos.expand(b, c, h, w).contiguous().to(DEVICE)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, dtype, shape):
    """Samples are exact copies, so every backend equals the reference bit for bit."""
    x = make_input(shape, dtype)
    h1, h2 = F.apr_sample(x, 7, backend=backend)
    r1, r2 = apr_sample_ref(x, 7)
    assert torch.equal(h1, r1) and torch.equal(h2, r2)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5), (1, 1, 1, 3)])
def test_backward_matches_reference(backend, layout, shape):
    x = make_input(shape, torch.float32, layout, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    h1, h2 = F.apr_sample(x, 3, backend=backend)
    r1, r2 = apr_sample_ref(xr, 3)
    w1, w2 = torch.randn_like(h1), torch.randn_like(h2)
    ((h1 * w1).sum() + (h2 * w2).sum()).backward()
    ((r1 * w1).sum() + (r2 * w2).sum()).backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_backward_bit_identical_across_kernels():
    """The gather-form backward sums in the same order on every kernel backend."""
    backends = kernel_backends()
    if len(backends) < 2:  # e.g. a CUDA run, where Triton is the only kernel backend
        pytest.skip("needs two kernel backends (cpp and triton run together only on the CPU)")
    dh1, dh2 = make_input((2, 3, 9, 7), gen_seed=1), make_input((2, 3, 9, 7), gen_seed=2)
    grads = [ops.apr_sample_bwd(dh1, dh2, 5, be) for be in backends]
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    fast = backend == "triton"  # the interpreter is slow: one random projection instead of full Jacobians
    shape = (1, 2, 4, 5) if fast else (2, 2, 5, 6)
    x = make_input(shape, torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.apr_sample(t, 11, backend=backend), (x,), fast_mode=fast)
    # |.| is not differentiable at 0: random doubles keep every residual far from it.
    out = make_input(shape, torch.float64, requires_grad=True)
    y, fy = make_input(shape, torch.float64, gen_seed=1), make_input(shape, torch.float64, gen_seed=2)
    assert torch.autograd.gradcheck(lambda o: F.apr_loss(o, y, fy, 5, 1.5, backend=backend), (out,), fast_mode=fast)
    fy = fy.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda o, f: F.apr_loss(o, y, f, 5, 1.5, True, backend=backend), (out, fy),
                                    fast_mode=fast)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_opcheck(backend, layout):
    x = make_input((2, 3, 4, 5), torch.float32, layout)
    for need_h2 in (True, False):
        torch.library.opcheck(ops.apr_sample_fwd, (x, 9, need_h2, backend))
    torch.library.opcheck(ops.apr_sample_bwd, (x, x * 2, 9, backend))
    out = make_input((2, 3, 4, 5), torch.float32, layout, gen_seed=3)
    combos = ((True, True), (True, False), (False, False)) if layout == "contiguous" else ((True, True),)
    for compute_grad, grad_fy in combos:
        torch.library.opcheck(ops.apr_loss_fwd, (out, x, x * 0.5, 9, 4.0, compute_grad, grad_fy, backend))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_h1_only(backend):
    """need_h2=False returns (h1, None) with the same h1, and its backward matches the pair's."""
    x = make_input((2, 3, 9, 7), requires_grad=True)
    h1, h2 = F.apr_sample(x, 5, need_h2=False, backend=backend)
    assert h2 is None
    ref1, _ = F.apr_sample(x, 5, backend="torch")
    assert torch.equal(h1, ref1)
    g = torch.randn_like(h1)
    (gx,) = torch.autograd.grad(h1, x, g)
    (gr,) = torch.autograd.grad(ref1, x, g)
    torch.testing.assert_close(gx, gr)
    with pytest.raises(TypeError, match="need_h2"):
        F.apr_sample(x, 5, need_h2=1, backend=backend)


@pytest.mark.parametrize("backend", kernel_backends())
def test_seed_determinism_and_bit_identity(backend):
    """Same seed -> identical; a new seed -> different; identical to the reference stream."""
    x = make_input((2, 3, 16, 12))
    a = F.apr_sample(x, 42, backend=backend)
    b = F.apr_sample(x, 42, backend=backend)
    c = F.apr_sample(x, 43, backend=backend)
    ref = F.apr_sample(x, 42, backend="torch")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], ref[0]) and torch.equal(a[1], ref[1])
    assert not torch.equal(a[0], c[0])


def test_pair_law():
    """Each of the 72 ordered pairs is drawn uniformly (4 sigma over 2**16 pixels); in the interior
    h1 and h2 read the two positions of the drawn pair (so never the same pixel); channels share it."""
    k = apr_choice_ref(1234, 4, 128, 128)
    assert chi2_uniform_ok(torch.bincount(k.flatten(), minlength=72))
    b, h, w = 2, 40, 40
    x = _position_image(b, h, w, c=3)
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    for backend in ALL_BACKENDS:
        h1, h2 = F.apr_sample(x, 5, backend=backend)
        assert torch.equal(h1[:, 0], h1[:, 2]) and torch.equal(h2[:, 0], h2[:, 1])
        i1, i2 = h1[:, 0, 1:-1, 1:-1].long().cpu(), h2[:, 0, 1:-1, 1:-1].long().cpu()
        r, c = rows[1:-1, 1:-1], cols[1:-1, 1:-1]
        p = (i1 // w - r + 1) * 3 + (i1 % w - c + 1)
        q = (i2 // w - r + 1) * 3 + (i2 % w - c + 1)
        assert bool((i1 != i2).all())
        assert set(zip(p.flatten().tolist(), q.flatten().tolist())) == set(PAIRS72)
    # marginals: each member uniform over the 9 positions, the centre included
    pq = torch.tensor(PAIRS72)[k.flatten()]
    assert chi2_uniform_ok(torch.bincount(pq[:, 0], minlength=9))
    assert chi2_uniform_ok(torch.bincount(pq[:, 1], minlength=9))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_border_clamping(backend):
    """Sources are clamped (replicate edge): every pick lies inside the image within one pixel of
    its target, and for a 1-pixel-wide image every pick is in the same column."""
    b, h, w = 2, 6, 5
    x = _position_image(b, h, w)
    rows = torch.arange(h, device=DEVICE).view(h, 1)
    cols = torch.arange(w, device=DEVICE).view(1, w)
    k = apr_choice_ref(8, b, h, w, DEVICE)
    pairs = torch.tensor(PAIRS72, device=DEVICE)[k]
    h1, h2 = F.apr_sample(x, 8, backend=backend)
    for m, hm in enumerate((h1, h2)):
        i = hm[:, 0].long()
        p = pairs[..., m]
        assert torch.equal(i // w, (rows + p // 3 - 1).clamp(0, h - 1))
        assert torch.equal(i % w, (cols + p % 3 - 1).clamp(0, w - 1))
    col = _position_image(1, 7, 1)
    c1, c2 = F.apr_sample(col, 2, backend=backend)
    assert ((c1 - col).abs() <= 1).all() and ((c2 - col).abs() <= 1).all()
    one = torch.full((1, 2, 1, 1), 3.0, device=DEVICE)
    o1, o2 = F.apr_sample(one, 0, backend=backend)
    assert torch.equal(o1, one) and torch.equal(o2, one)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 9, 8), (1, 4, 6, 11)])
def test_loss_matches_formula(backend, dtype, shape):
    """The fused loss equals the formula evaluated on the op's own samples; grad to out only."""
    y, fy = make_input(shape, dtype, gen_seed=1), make_input(shape, dtype, gen_seed=2)
    out = make_input(shape, dtype, requires_grad=True)
    lam, seed = 1.75, 99
    loss = F.apr_loss(out, y, fy, seed, lam, backend=backend)
    h1f, h2f = F.apr_sample(fy.double(), seed, backend=backend)
    _, h2y = F.apr_sample(y.double(), seed, backend=backend)
    o = out.detach().double().requires_grad_(True)
    d = o - h2y
    expect = d.abs().mean() + lam * (d - (h1f - h2f)).abs().mean()
    expect.backward()
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(loss.double(), expect.detach(), **tol(dtype if dtype != torch.bfloat16 else torch.float32))
    loss.backward()
    torch.testing.assert_close(out.grad.double(), o.grad, **tol(dtype))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("grad_through_reg", [False, True])
def test_loss_backward_matches_reference(backend, layout, grad_through_reg):
    y = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=1)
    fy = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=2, requires_grad=True)
    out = make_input((2, 3, 8, 10), torch.float32, layout, requires_grad=True)
    o2, f2 = out.detach().clone().requires_grad_(True), fy.detach().clone().requires_grad_(True)
    loss = F.apr_loss(out, y, fy, 1, 4.0, grad_through_reg, backend=backend)
    ref = apr_loss_ref(o2, y, f2, 1, 4.0, grad_through_reg)
    torch.testing.assert_close(loss, ref)
    (3.0 * loss).backward()
    (3.0 * ref).backward()
    torch.testing.assert_close(out.grad, o2.grad)
    if grad_through_reg:
        torch.testing.assert_close(fy.grad, f2.grad)
    else:
        assert fy.grad is None and f2.grad is None


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("w", [10, 17, 18, 25, 40])
def test_loss_wide_rows(backend, w):
    """Rows wide enough for the CPU's eight-column window-select path (interior columns 1 .. W-2),
    with its scalar edges and tails, against the reference: value, grad to out and to fy."""
    shape = (2, 3, 5, w)
    y, fy = make_input(shape, gen_seed=1), make_input(shape, gen_seed=2, requires_grad=True)
    out = make_input(shape, requires_grad=True)
    o2, f2 = out.detach().clone().requires_grad_(True), fy.detach().clone().requires_grad_(True)
    loss = F.apr_loss(out, y, fy, 5, 4.0, True, backend=backend)
    ref = apr_loss_ref(o2, y, f2, 5, 4.0, True)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(out.grad, o2.grad)
    torch.testing.assert_close(fy.grad, f2.grad)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    x = make_input((1, 1, 4, 5)).expand(2, 3, 4, 5).clone().requires_grad_(True)
    h1, h2 = F.apr_sample(x, 0, backend=backend)
    h1.sum().backward()  # expanded (stride-0) incoming gradient; h2 gets none
    assert x.grad.sum().item() == pytest.approx(h1.numel())
    x.grad = None
    h1, h2 = F.apr_sample(x, 0, backend=backend)
    (h1.sum() + h2.sum()).backward()
    assert x.grad.sum().item() == pytest.approx(2 * h1.numel())


def test_module_matches_functional():
    y, fy = make_input((1, 3, 8, 8), gen_seed=1), make_input((1, 3, 8, 8), gen_seed=2)
    out = make_input((1, 3, 8, 8))
    m = APRLoss(lam=1.25, grad_through_reg=True)
    assert "lam=1.25" in repr(m) and "grad_through_reg=True" in repr(m)
    torch.testing.assert_close(m(out, y, fy, 3), F.apr_loss(out, y, fy, 3, 1.25, True))


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    def step(x, y, fy):
        h1, h2 = F.apr_sample(x, 4, backend=backend)
        return F.apr_loss(h1 * 2, y, fy * 1.5, 4, 4.0, True, backend=backend) + h2.mean()

    x = make_input((1, 2, 6, 5), requires_grad=True)
    y, fy = make_input((1, 2, 6, 5), gen_seed=1), make_input((1, 2, 6, 5), gen_seed=2, requires_grad=True)
    eager = step(x, y, fy)
    eager.backward()
    gx, gf = x.grad.clone(), fy.grad.clone()
    x.grad = fy.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x, y, fy)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(fy.grad, gf)


def test_invalid_inputs():
    x = torch.rand(1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="x must have shape"):
        F.apr_sample(x[0], 1)
    with pytest.raises(ValueError, match="H and W >= 1"):
        F.apr_sample(x[:, :, :0], 1)
    with pytest.raises(TypeError, match="x must be float"):
        F.apr_sample(x.to(torch.int32), 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        F.apr_sample(x, 1.5)
    with pytest.raises(ValueError, match="seed must be in"):
        F.apr_sample(x, -1)
    with pytest.raises(ValueError, match="out must have shape"):
        F.apr_loss(torch.rand(1, 3, 4, 4, device=DEVICE), x, x, 1)
    with pytest.raises(TypeError, match="fy must be float"):
        F.apr_loss(x, x, x.to(torch.int32), 1)
    with pytest.raises(ValueError, match="lam must be >="):
        F.apr_loss(x, x, x, 1, lam=-1)
    with pytest.raises(TypeError, match="grad_through_reg must be a bool"):
        F.apr_loss(x, x, x, 1, 4.0, "yes")
    with pytest.raises(ValueError, match="backend must be one of"):
        F.apr_sample(x, 1, backend="cuda")
