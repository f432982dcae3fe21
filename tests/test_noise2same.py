"""Noise2Same stratified mask sampler and fused loss: every backend against the reference, and the law."""
import math

import pytest
import torch
import torch.nn.functional as tF

import fastdenoise.functional as F
from common import ALL_BACKENDS
from common import DEVICE
from common import FLOAT_DTYPES
from common import chi2_uniform_ok
from common import kernel_backends
from common import make_input
from common import tol
from fastdenoise.nn import Noise2SameLoss
from fastdenoise.ops.noise2same import ops
from fastdenoise.ops.noise2same.reference import box_size
from fastdenoise.ops.noise2same.reference import gaussian_values
from fastdenoise.ops.noise2same.reference import mask_positions_ref
from fastdenoise.ops.noise2same.reference import noise2same_loss_ref
from fastdenoise.ops.noise2same.reference import standardize
from fastdenoise.ops.noise2same.reference import stratified_mask_ref

SHAPES = [(1, 1, 1, 1), (2, 1, 15, 29), (1, 4, 9, 10)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]
REPLACE = ["gaussian", "donut"]
DONUT_W = torch.tensor([[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]], dtype=torch.float64) / 6


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("replace", REPLACE)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, replace, dtype, shape):
    """Mask and replacements are bit-identical to the reference (small boxes: many masked pixels)."""
    x = make_input(shape, dtype)
    for perc in (0.5, 8.0):
        xm, m = F.stratified_mask(x, 7, perc, replace, backend=backend)
        rm, rmask = stratified_mask_ref(x, 7, box_size(perc), replace)
        assert xm.dtype == dtype and m.dtype == dtype
        assert torch.equal(m, rmask) and torch.equal(xm, rm)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("replace", REPLACE)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_backward_matches_reference(backend, replace, layout):
    x = make_input((2, 3, 9, 11), torch.float32, layout, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    xm, _ = F.stratified_mask(x, 3, 12.0, replace, backend=backend)
    rm, _ = stratified_mask_ref(xr, 3, box_size(12.0), replace)
    w = torch.randn_like(xm)
    (xm * w).sum().backward()
    (rm * w).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    fast = backend == "triton"  # the interpreter is slow: random-projection gradcheck
    for replace in REPLACE:
        x = make_input((1, 2, 5, 6), torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: F.stratified_mask(t, 11, 12.0, replace, backend=backend)[0], (x,),
                                        fast_mode=fast)
    f = make_input((2, 2, 5, 6), torch.float64, requires_grad=True)
    g = make_input((2, 2, 5, 6), torch.float64, gen_seed=1, requires_grad=True)
    x = make_input((2, 2, 5, 6), torch.float64, gen_seed=2)
    _, m = F.stratified_mask(x, 5, 12.0, backend=backend)
    assert torch.autograd.gradcheck(lambda a, b: F.noise2same_loss(a, b, x, m, 1.5, backend=backend), (f, g),
                                    fast_mode=fast)


@pytest.mark.parametrize("backend,layout", [(b, l) for b in kernel_backends() for l in ("contiguous", "noncontiguous")
                                            if b == "cpp" or l == "contiguous"])  # interpreter: one layout
def test_opcheck(backend, layout):
    x = make_input((2, 3, 6, 5), torch.float32, layout)
    for mode in (ops.GAUSSIAN, ops.DONUT):
        torch.library.opcheck(ops.noise2same_mask_fwd, (x, 9, 3, mode, 0.2, backend))
        m = ops.noise2same_mask_fwd(x, 9, 3, mode, 0.2, backend)[1]
        torch.library.opcheck(ops.noise2same_mask_bwd, (x * 2, m, 9, 3, mode, backend))
    f, g = make_input((2, 3, 6, 5), torch.float32, layout, gen_seed=1), make_input((2, 3, 6, 5), gen_seed=2)
    torch.library.opcheck(ops.noise2same_loss_fwd, (f, g, x, m, 2.0, 1e-12, backend))
    coef = torch.tensor([0.1, 0.3], dtype=torch.float64, device=x.device)
    torch.library.opcheck(ops.noise2same_loss_bwd, (coef, f, g, x, m, backend))


@pytest.mark.parametrize("backend", kernel_backends())
def test_seed_determinism_and_bit_identity(backend):
    """Same seed -> identical; a new seed -> different; identical to the reference stream."""
    x = make_input((2, 3, 16, 12))
    for replace in REPLACE:
        a = F.stratified_mask(x, 42, 4.0, replace, backend=backend)
        b = F.stratified_mask(x, 42, 4.0, replace, backend=backend)
        c = F.stratified_mask(x, 43, 4.0, replace, backend=backend)
        ref = F.stratified_mask(x, 42, 4.0, replace, backend="torch")
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(a[0], ref[0]) and torch.equal(a[1], ref[1])
        assert not torch.equal(a[1], c[1])


def test_box_law():
    """Exactly one masked position per full box and channel; fraction 1/s^2; positions uniform within the
    boxes (4 sigma); channels independent (coincidence rate 1/s^2, 4 sigma)."""
    assert box_size(0.5) == 14 and box_size(100.0) == 1 and box_size(4.0) == 5
    s = 5
    b, c, h, w = 4, 3, 100, 100
    rows, cols = mask_positions_ref(1234, (b, c, h, w), s)
    r_off, c_off = rows % s, cols % s
    assert chi2_uniform_ok(torch.bincount((r_off * s + c_off).flatten(), minlength=s * s))
    same = ((r_off[:, 0] == r_off[:, 1]) & (c_off[:, 0] == c_off[:, 1])).double()
    p, n = 1 / s**2, same.numel()
    assert abs(same.mean().item() - p) <= 4 * math.sqrt(p * (1 - p) / n)
    for backend in ALL_BACKENDS:
        x = make_input((2, 3, 23, 31))
        _, m = F.stratified_mask(x, 5, 4.0, backend=backend)
        full = m[:, :, :20, :30].reshape(2, 3, 4, 5, 6, 5).sum(dim=(3, 5))
        assert torch.equal(full, torch.ones_like(full))
        assert m.sum().item() <= 2 * 3 * 5 * 7 and set(m.unique().tolist()) <= {0.0, 1.0}
        _, m = F.stratified_mask(make_input((1, 2, 28, 42)), 6, backend=backend)  # s = 14: exact fraction
        assert m.mean().item() == pytest.approx(1 / 196)
        _, m = F.stratified_mask(make_input((1, 1, 3, 4)), 6, 100.0, backend=backend)
        assert torch.equal(m, torch.ones_like(m))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gaussian_moments(backend):
    """Replacement values at the masked positions are N(0, sigma_m): mean and std within 4 sigma."""
    sigma = 0.3
    z = gaussian_values(9, 100000, sigma, torch.float64)
    n = z.numel()
    assert abs(z.mean().item()) <= 4 * sigma / math.sqrt(n)
    assert abs(z.std().item() - sigma) <= 4 * sigma / math.sqrt(2 * n)
    x = torch.full((4, 4, 60, 60), 100.0, device=DEVICE)
    xm, m = F.stratified_mask(x, 9, 4.0, "gaussian", sigma, backend=backend)
    v = xm[m.bool()].double()
    assert torch.equal(xm[~m.bool()], x[~m.bool()])
    assert v.numel() == 4 * 4 * 144
    assert abs(v.mean().item()) <= 4 * sigma / math.sqrt(v.numel())
    assert abs(v.std().item() - sigma) <= 4 * sigma / math.sqrt(2 * v.numel())


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_donut_values_equal_formula(backend):
    """Donut replacement = 3x3 weighted mean of the neighbours (zero padding) per channel, computed by conv."""
    x = make_input((2, 3, 7, 9), torch.float64)
    xm, m = F.stratified_mask(x, 4, 25.0, "donut", backend=backend)  # s = 2: many border positions
    conv = tF.conv2d(x, DONUT_W.expand(3, 1, 3, 3).to(x.device), padding=1, groups=3)
    expect = torch.where(m.bool(), conv, x)
    torch.testing.assert_close(xm, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 1, 15, 29), (1, 4, 9, 10)])
def test_loss_matches_formula(backend, dtype, shape):
    """The fused loss equals the formula evaluated on the op's own mask; gradients to both outputs."""
    x = make_input(shape, dtype, gen_seed=3)
    _, m = F.stratified_mask(x, 99, 100.0 if x.numel() == 1 else 8.0, backend=backend)
    f = make_input(shape, dtype, gen_seed=1, requires_grad=True)
    g = make_input(shape, dtype, gen_seed=2, requires_grad=True)
    lam = 1.7
    loss = F.noise2same_loss(f, g, x, m, lam, backend=backend)
    fd = f.detach().double().requires_grad_(True)
    gd = g.detach().double().requires_grad_(True)
    md, xd = m.double(), x.double()
    inv = (md * (fd - gd) ** 2).sum() / md.sum()
    expect = ((fd - xd) ** 2).mean() + lam * torch.sqrt(inv)
    expect.backward()
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    lt = tol(dtype if dtype != torch.bfloat16 else torch.float32)
    torch.testing.assert_close(loss.double(), expect.detach(), **lt)
    loss.backward()
    torch.testing.assert_close(f.grad.double(), fd.grad, **tol(dtype))
    torch.testing.assert_close(g.grad.double(), gd.grad, **tol(dtype))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
def test_loss_backward_matches_reference(backend, layout):
    x = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=1)
    _, m = F.stratified_mask(x, 2, 8.0, backend=backend)
    f = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=2, requires_grad=True)
    g = make_input((2, 3, 8, 10), torch.float32, layout, gen_seed=3, requires_grad=True)
    f2, g2 = f.detach().clone().requires_grad_(True), g.detach().clone().requires_grad_(True)
    (3.0 * F.noise2same_loss(f, g, x, m, 2.0, backend=backend)).backward()
    (3.0 * noise2same_loss_ref(f2, g2, x, m, 2.0)).backward()
    torch.testing.assert_close(f.grad, f2.grad)
    torch.testing.assert_close(g.grad, g2.grad)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_loss_empty_mask_and_zero_inv(backend):
    """sum(mask) == 0 -> inv = 0: loss = rec + lam sqrt(eps), finite gradients, none to out_masked."""
    x = make_input((1, 2, 4, 5), torch.float64, gen_seed=1)
    f = make_input((1, 2, 4, 5), torch.float64, requires_grad=True)
    g = make_input((1, 2, 4, 5), torch.float64, gen_seed=2, requires_grad=True)
    loss = F.noise2same_loss(f, g, x, torch.zeros_like(x), 2.0, 1e-12, backend=backend)
    rec = ((f.detach() - x) ** 2).mean()
    torch.testing.assert_close(loss, rec + 2.0 * 1e-6)
    loss.backward()
    torch.testing.assert_close(f.grad, 2 * (f.detach() - x) / x.numel())
    assert torch.equal(g.grad, torch.zeros_like(g))
    f.grad = g.grad = None
    _, m = F.stratified_mask(x, 1, 8.0, backend=backend)
    F.noise2same_loss(f, f.detach(), x, m, backend=backend).backward()  # inv = 0 exactly
    assert torch.isfinite(f.grad).all()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    x = make_input((1, 1, 4, 4)).expand(2, 3, 4, 4).clone().requires_grad_(True)
    xm, m = F.stratified_mask(x, 0, 25.0, "gaussian", backend=backend)
    xm.sum().backward()  # expanded (stride-0) incoming gradient
    assert torch.equal(x.grad, 1 - m)
    f = make_input((1, 3, 4, 4), requires_grad=True)
    loss = F.noise2same_loss(f, f.detach().expand(1, 3, 4, 4) * 0.5, x[:1].detach(), m[:1], backend=backend)
    loss.backward()
    assert torch.isfinite(f.grad).all()


def test_module_matches_functional():
    x = make_input((1, 3, 8, 8))
    _, m = F.stratified_mask(x, 3, 8.0)
    f, g = make_input((1, 3, 8, 8), gen_seed=1), make_input((1, 3, 8, 8), gen_seed=2)
    mod = Noise2SameLoss(lam=0.95)
    assert "lam=0.95" in repr(mod)
    torch.testing.assert_close(mod(f, g, x, m), F.noise2same_loss(f, g, x, m, 0.95))


def test_standardize():
    x = make_input((2, 3, 8, 8)) * 3 + 1
    xs, mean, std = F.standardize(x)
    torch.testing.assert_close(xs.mean(dim=(-2, -1)), torch.zeros(2, 3, device=x.device), atol=1e-5, rtol=0)
    torch.testing.assert_close(xs.std(dim=(-2, -1), correction=0), torch.ones(2, 3, device=x.device))
    torch.testing.assert_close(xs * std + mean, x)


def test_standardize_eps():
    """eps = 1e-6 (the trainer's value, the one definition's default): a constant image maps to zeros, and
    float32 round-off of almost constant images (the mean of a constant is off by an ulp, or values differ
    by 1e-9) stays far below O(1), which a clamp of 1e-12 would blow up to O(1) and more."""
    assert F.standardize is standardize
    xs, mean, std = F.standardize(torch.full((2, 3, 8, 8), 0.5, device=DEVICE))
    assert torch.isfinite(xs).all() and (xs == 0).all()
    assert (std == 1e-6).all()
    g = torch.Generator().manual_seed(0)
    wiggle = (1e-3 + 1e-9 * torch.randn(1, 3, 16, 16, generator=g, dtype=torch.float64)).float()
    for x in [torch.full((2, 3, 64, 64), v) for v in (0.1, 0.2, 0.3, 1 / 3, 0.7)] + [wiggle]:
        x = x.to(DEVICE)
        xs, mean, std = F.standardize(x)
        assert torch.isfinite(xs).all()
        assert xs.abs().max() < 0.25, xs.abs().max()
        torch.testing.assert_close(xs * std + mean, x, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    def step(x, w):
        xm, m = F.stratified_mask(x, 4, 12.0, "donut", backend=backend)
        return F.noise2same_loss(x * w, xm * w, x.detach(), m, 2.0, backend=backend)

    x = make_input((1, 2, 6, 7), requires_grad=True)
    w = make_input((1, 2, 6, 7), gen_seed=1)
    eager = step(x, w)
    eager.backward()
    ge = x.grad.clone()
    x.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x, w)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x.grad, ge)


def test_invalid_inputs():
    x = torch.rand(1, 3, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="x must have shape"):
        F.stratified_mask(x[0], 1)
    with pytest.raises(TypeError, match="x must be float"):
        F.stratified_mask(x.to(torch.int32), 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        F.stratified_mask(x, 1.5)
    with pytest.raises(ValueError, match="seed must be in"):
        F.stratified_mask(x, -1)
    for perc in (0, -1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="perc must be"):
            F.stratified_mask(x, 1, perc)
    with pytest.raises(ValueError, match="replace must be one of"):
        F.stratified_mask(x, 1, 0.5, "zero")
    with pytest.raises(ValueError, match="sigma_m must be >="):
        F.stratified_mask(x, 1, 0.5, "gaussian", -0.1)
    with pytest.raises(ValueError, match="out_masked must have shape"):
        F.noise2same_loss(x, x[:, :2], x, x)
    with pytest.raises(TypeError, match="mask must be float32"):
        F.noise2same_loss(x, x, x, x.to(torch.int32))
    # mixed floating dtypes (autocast: bf16 network outputs, f32 data) are promoted, as the reference computes
    torch.testing.assert_close(F.noise2same_loss(x.bfloat16(), x, x, x), F.noise2same_loss(x.bfloat16().float(), x, x, x))
    with pytest.raises(ValueError, match="lam must be >="):
        F.noise2same_loss(x, x, x, x, lam=-1)
    with pytest.raises(ValueError, match="eps must be >"):
        F.noise2same_loss(x, x, x, x, eps=0.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        F.stratified_mask(x, 1, backend="cuda")
