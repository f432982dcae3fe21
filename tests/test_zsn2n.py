"""ZS-N2N pair downsampler and fused loss: every backend against the reference and the upstream formula."""
import pytest
import torch
import torch.nn.functional as nnf

import fastdenoise.functional as F
from common import ALL_BACKENDS
from common import DEVICE
from common import FLOAT_DTYPES
from common import kernel_backends
from common import make_input
from common import tol
from fastdenoise.nn import PairDownsampler
from fastdenoise.nn import ZSN2NLoss
from fastdenoise.ops.zsn2n import ops
from fastdenoise.ops.zsn2n.reference import pair_downsample_ref
from fastdenoise.ops.zsn2n.reference import zsn2n_loss_ref

SHAPES = [(1, 1, 2, 2), (2, 3, 5, 7), (1, 2, 8, 6), (2, 1, 9, 36)]
LAYOUTS = ["contiguous", "channels_last", "noncontiguous"]


def _half(shape):
    b, c, h, w = shape
    return (b, c, h // 2, w // 2)


def _loss_inputs(shape, dtype=torch.float32, layout="contiguous", requires_grad=True, grad_y=False):
    y = make_input(shape, dtype, layout, gen_seed=1, requires_grad=grad_y)
    n_y = make_input(shape, dtype, layout, gen_seed=2, requires_grad=requires_grad)
    n1 = make_input(_half(shape), dtype, layout, gen_seed=3, requires_grad=requires_grad)
    n2 = make_input(_half(shape), dtype, layout, gen_seed=4, requires_grad=requires_grad)
    return y, n_y, n1, n2


def _upstream_pair(x):
    """The official downsampler: two depthwise stride-2 convolutions with the diagonal filters."""
    c = x.shape[1]
    f1 = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]]], dtype=x.dtype, device=x.device).repeat(c, 1, 1, 1)
    f2 = torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]], dtype=x.dtype, device=x.device).repeat(c, 1, 1, 1)
    return nnf.conv2d(x, f1, stride=2, groups=c), nnf.conv2d(x, f2, stride=2, groups=c)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, dtype, shape):
    """(a + b) * 0.5 in the compute dtype on every backend: bit-identical (bfloat16 under the Triton
    interpreter: within 1 ulp, its float32 -> bfloat16 store truncates)."""
    x = make_input(shape, dtype)
    d1, d2 = F.pair_downsample(x, backend=backend)
    r1, r2 = pair_downsample_ref(x)
    assert d1.dtype == dtype and d1.shape == _half(shape) and d1.is_contiguous()
    if dtype == torch.bfloat16 and backend == "triton":
        torch.testing.assert_close(d1, r1, atol=0, rtol=2**-7)
        torch.testing.assert_close(d2, r2, atol=0, rtol=2**-7)
    else:
        assert torch.equal(d1, r1) and torch.equal(d2, r2)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 5)])
def test_backward_matches_reference(backend, layout, shape):
    """grad_x bit for bit, zeros in a dropped odd row/column."""
    x = make_input(shape, torch.float32, layout, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    d1, d2 = F.pair_downsample(x, backend=backend)
    r1, r2 = pair_downsample_ref(xr)
    w1, w2 = torch.randn_like(d1), torch.randn_like(d2)
    ((d1 * w1).sum() + (d2 * w2).sum()).backward()
    ((r1 * w1).sum() + (r2 * w2).sum()).backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=0)
    if shape[2] % 2:
        assert not x.grad[:, :, -1].any()
    if shape[3] % 2:
        assert not x.grad[..., -1].any()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck(backend):
    x = make_input((1, 2, 5, 6), torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.pair_downsample(t, backend=backend), (x,))
    inputs = _loss_inputs((1, 2, 5, 4), torch.float64, grad_y=True)  # odd H: the dropped row gets 0
    assert torch.autograd.gradcheck(lambda *t: F.zsn2n_loss(*t, backend=backend), inputs)


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_opcheck(backend, layout):
    x = make_input((2, 3, 6, 5), torch.float32, layout)
    torch.library.opcheck(ops.pair_downsample_fwd, (x, backend))
    g = make_input((2, 3, 3, 2), torch.float32, layout)
    torch.library.opcheck(ops.pair_downsample_bwd, (g, g * 2, 6, 5, backend))
    y, n_y, n1, n2 = _loss_inputs((2, 3, 6, 5), layout=layout, requires_grad=False)
    for flags in [(True, True, True, True), (False, True, True, True), (False, False, False, False)]:
        torch.library.opcheck(ops.zsn2n_loss_fwd, (y, n_y, n1, n2, *flags, backend))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 5, 7)])
def test_loss_matches_formula(backend, dtype, shape):
    """The fused loss equals the upstream formula (F.conv2d downsampler, separate mse calls) in float64,
    gradients to n_y, n1, n2 included; float32 result for half inputs."""
    y, n_y, n1, n2 = _loss_inputs(shape, dtype)
    loss = F.zsn2n_loss(y, n_y, n1, n2, backend=backend)
    ins = [t.detach().double().requires_grad_(True) for t in (y, n_y, n1, n2)]
    yd, nyd, n1d, n2d = ins
    d1, d2 = _upstream_pair(yd)
    p1, p2 = d1 - n1d, d2 - n2d
    e1, e2 = _upstream_pair(yd - nyd)
    mse = nnf.mse_loss
    expect = 0.5 * (mse(d1, p2) + mse(d2, p1)) + 0.5 * (mse(p1, e1) + mse(p2, e2))
    expect.backward()
    opmath = torch.float64 if dtype == torch.float64 else torch.float32
    assert loss.dtype == opmath
    torch.testing.assert_close(loss.double(), expect.detach(), **tol(opmath))  # half inputs, float32 math
    loss.backward()
    for t, r in zip((n_y, n1, n2), ins[1:]):
        torch.testing.assert_close(t.grad.double(), r.grad, **tol(dtype))


@pytest.mark.parametrize("backend", kernel_backends())
@pytest.mark.parametrize("layout", LAYOUTS)
def test_loss_backward_matches_reference(backend, layout):
    """Every gradient (y included when it requires grad) matches the reference under a non-unit
    incoming gradient."""
    ins = _loss_inputs((2, 3, 7, 21), layout=layout, grad_y=True)  # 10 cells a row: 8 vector + 2 scalar
    ref = [t.detach().clone().requires_grad_(True) for t in ins]
    (3.0 * F.zsn2n_loss(*ins, backend=backend)).backward()
    (3.0 * zsn2n_loss_ref(*ref)).backward()
    for t, r in zip(ins, ref):
        torch.testing.assert_close(t.grad, r.grad)


def test_loss_backends_bit_identical():
    """cpp (AVX2 and scalar cells) and triton compute the gradients with the same float operations (no FMA):
    equal bit for bit."""
    backends = kernel_backends()
    if len(backends) < 2:
        pytest.skip("needs both the cpp and the triton backend (C++ extension and TRITON_INTERPRET=1)")
    grads = []
    for be in backends:
        ins = _loss_inputs((2, 3, 7, 37), grad_y=True)  # 18 cells a row: two 8-cell vectors + 2 scalar
        F.zsn2n_loss(*ins, backend=be).backward()
        grads.append([t.grad for t in ins])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_loss_partial_grads(backend):
    """Only the inputs that require grad get one; a data y gets none, a y that requires grad gets one."""
    y, n_y, n1, n2 = _loss_inputs((1, 2, 6, 6), requires_grad=False)
    n1.requires_grad_(True)
    F.zsn2n_loss(y, n_y, n1, n2, backend=backend).backward()
    assert n1.grad is not None and n_y.grad is None and n2.grad is None and y.grad is None
    y.requires_grad_(True)
    F.zsn2n_loss(y, n_y, n1, n2, backend=backend).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_and_expanded_grad(backend):
    x = make_input((1, 1, 4, 4)).expand(2, 3, 4, 4).clone().requires_grad_(True)
    d1, d2 = F.pair_downsample(x, backend=backend)
    (d1.sum() + d2.sum()).backward()  # expanded (stride-0) incoming gradients
    assert torch.equal(x.grad, torch.full_like(x, 0.5))
    y = make_input((1, 1, 4, 4)).expand(2, 3, 4, 4)  # stride-0 data
    base = make_input((1, 1, 2, 2), gen_seed=5, requires_grad=True)
    n = base.expand(2, 3, 2, 2)  # one expanded tensor as both n1 and n2
    loss = F.zsn2n_loss(y, y * 0.1, n, n, backend=backend)
    (grad,) = torch.autograd.grad(loss, base)
    ref = zsn2n_loss_ref(y, y * 0.1, n, n)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grad, torch.autograd.grad(ref, base)[0])


def test_module_matches_functional():
    y, n_y, n1, n2 = _loss_inputs((1, 3, 8, 8), requires_grad=False)
    m = ZSN2NLoss()
    assert "backend=None" in repr(m)
    torch.testing.assert_close(m(y, n_y, n1, n2), F.zsn2n_loss(y, n_y, n1, n2))
    a, b = PairDownsampler()(y)
    ra, rb = F.pair_downsample(y)
    assert torch.equal(a, ra) and torch.equal(b, rb)


@pytest.mark.parametrize("backend", kernel_backends())
def test_compile(backend):
    """A ZS-N2N step with a stand-in noise 'network' (x * w): downsampler and loss, forward + backward."""
    def step(y, w):
        d1, d2 = F.pair_downsample(y, backend=backend)
        return F.zsn2n_loss(y, y * w, d1 * w, d2 * w, backend=backend)

    y = make_input((1, 2, 6, 6), requires_grad=True)
    w = torch.tensor(0.3, requires_grad=True)
    eager = step(y, w)
    eager.backward()
    gy, gw = y.grad.clone(), w.grad.clone()
    y.grad = w.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(y, w)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(y.grad, gy)
    torch.testing.assert_close(w.grad, gw)


def test_invalid_inputs():
    y = torch.rand(1, 3, 8, 8, device=DEVICE)
    n = torch.rand(1, 3, 4, 4, device=DEVICE)
    with pytest.raises(ValueError, match="x must have shape"):
        F.pair_downsample(y[0])
    with pytest.raises(ValueError, match="x must have H and W >= 2"):
        F.pair_downsample(y[:, :, :1])
    with pytest.raises(TypeError, match="x must be float"):
        F.pair_downsample(y.to(torch.int32))
    with pytest.raises(ValueError, match="y must have H and W >= 2"):
        F.zsn2n_loss(y[..., :1], y[..., :1], n[..., :0], n[..., :0])
    with pytest.raises(ValueError, match="n_y must have shape"):
        F.zsn2n_loss(y, y[..., :7], n, n)
    with pytest.raises(ValueError, match="n1 must have shape"):
        F.zsn2n_loss(y, y, y, n)
    with pytest.raises(ValueError, match="n2 must have shape"):
        F.zsn2n_loss(y, y, n, n[:, :2])
    with pytest.raises(TypeError, match="n2 must be float"):
        F.zsn2n_loss(y, y, n, n.to(torch.int32))
    with pytest.raises(TypeError, match="n_y must be a torch.Tensor"):
        F.zsn2n_loss(y, 0.5, n, n)
    with pytest.raises(ValueError, match="backend must be one of"):
        F.pair_downsample(y, backend="cuda")
