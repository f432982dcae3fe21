"""UNetNb2Nb, UNetNoise2Same and Blind2GradNet: parameter counts, shapes, gradients, determinism."""
import pytest
import torch
import torch.nn.functional as F

from fastdenoise.models.blind2grad_net import Blind2GradNet
from fastdenoise.models.blind2grad_net import PartialConv2d
from fastdenoise.models.blind2grad_net import TStandout
from fastdenoise.models.unet_nb2nb import UNetNb2Nb
from fastdenoise.models.unet_nb2nb import pad_to_multiple
from fastdenoise.models.unet_noise2same import UNetNoise2Same

pytestmark = pytest.mark.cpu_only("network shapes and initialisation on the CPU")


def _n(m):
    return sum(p.numel() for p in m.parameters())


def _small(name):
    return {"nb2nb": lambda: UNetNb2Nb(3, 3, 8), "n2s": lambda: UNetNoise2Same(3, 3, 8),
            "b2g": lambda: Blind2GradNet(3, 8)}[name]()


def _run(m, x):
    return m(x, (torch.rand_like(x[:, :1]) > 0.25).float()) if isinstance(m, Blind2GradNet) else m(x)


def test_parameter_counts():
    assert _n(UNetNb2Nb()) == 1_259_043  # C = 3
    assert _n(UNetNoise2Same(1, 1)) == 5_563_680  # C = 1
    assert _n(UNetNoise2Same()) == 5_565_600  # "about 5.57M" for C = 3
    assert _n(Blind2GradNet()) == 1_124_553  # our reconstruction (regression value)


@pytest.mark.parametrize("name", ["nb2nb", "n2s", "b2g"])
@pytest.mark.parametrize("shape", [(1, 3, 37, 45), (2, 3, 5, 70), (1, 3, 1, 3)])
def test_output_shape_any_size(name, shape):
    m = _small(name)
    if name == "n2s" and shape[0] == 1:
        m.eval()  # BatchNorm in training mode needs more than one value per channel
    if name == "b2g":
        m.eval()
    with torch.no_grad():
        assert _run(m, torch.rand(shape)).shape == shape


@pytest.mark.parametrize("name", ["nb2nb", "n2s", "b2g"])
def test_gradients_flow(name):
    m = _small(name).train()
    x = torch.rand(2, 3, 20, 28, requires_grad=True)
    _run(m, x).square().mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nb2nb", "n2s", "b2g"])
def test_eval_determinism(name):
    m = _small(name).eval()
    x = torch.rand(1, 3, 24, 19)
    mask = (torch.rand(1, 1, 24, 19) > 0.25).float()
    with torch.no_grad():
        a = m(x, mask) if name == "b2g" else m(x)
        b = m(x, mask) if name == "b2g" else m(x)
    assert torch.equal(a, b)


def test_blind2grad_mc_dropout_is_stochastic_in_eval():
    m = Blind2GradNet(3, 8, mc_dropout=True).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(m(x), m(x))
    m.set_mc_dropout(False)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))


def test_pad_to_multiple():
    x = torch.arange(15.0).view(1, 1, 3, 5)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 8)
    assert torch.equal(y[..., :3, :5], x)
    assert torch.equal(y[..., 3, :5], x[..., 1, :])  # reflect (no edge repeat)
    assert pad_to_multiple(x, 4, square=True).shape == (1, 1, 8, 8)
    assert pad_to_multiple(torch.rand(1, 2, 1, 3), 32).shape == (1, 2, 32, 32)
    assert pad_to_multiple(x, 1) is x


def test_nb2nb_init():
    m = UNetNb2Nb()
    w = m.dec[2][0].weight
    fan_in = w.shape[1] * 9
    assert abs(w.std().item() - 0.1 * (2.0 / fan_in) ** 0.5) < 0.01 * (2.0 / fan_in) ** 0.5 * 1.5
    assert all(float(c.bias.detach().abs().sum()) == 0 for c in m.modules() if isinstance(c, torch.nn.Conv2d))


def test_noise2same_bn_settings():
    bns = [b for b in UNetNoise2Same(1, 1).modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert bns and all(b.momentum == pytest.approx(0.003) and b.eps == 1e-5 for b in bns)


def test_partial_conv_ignores_hidden_pixels():
    pc = PartialConv2d(2, 4, 3, padding=1)
    x = torch.rand(1, 2, 9, 9)
    mask = (torch.rand(1, 1, 9, 9) > 0.3).float()
    out, new = pc(x, mask)
    out2, _ = pc(x + 5 * (1 - mask), mask)  # change only the hidden pixels
    assert torch.allclose(out, out2)
    full, _ = pc(x, torch.ones_like(mask))
    ref = F.conv2d(x, pc.weight, pc.bias, padding=1)
    assert torch.allclose(full[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)  # interior: a plain conv
    assert torch.allclose(full[..., 0, 0], (F.conv2d(x, pc.weight, None, padding=1) * 18 / 8)[..., 0, 0]
                          + pc.bias, atol=1e-6)  # corner renormalised by 18/8
    assert new.shape == (1, 1, 9, 9)
    lonely = torch.zeros_like(mask)
    lonely[..., 4, 4] = 1
    assert pc(x, lonely)[1].sum() == 9  # updated mask: windows that saw a visible pixel


def test_t_standout_protects_high_gradient_units():
    layer = TStandout(0.5, eps_s=0.1).train()
    checker = (torch.arange(16).view(4, 4) + torch.arange(16).view(4, 4).T) % 2
    x = checker.float().expand(1, 8, 4, 4).clone()
    x[..., -1, -1] = 0.0  # the last unit has zero forward differences (both are 0 there): droppable
    y = layer(x)
    prot = torch.ones(4, 4, dtype=torch.bool)
    prot[-1, -1] = False
    assert torch.equal(y[..., prot], x[..., prot])
    flat = layer(torch.full((1, 4, 64, 64), 0.7))
    kept = flat[flat != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1.4))  # inverted dropout scaling 1/(1-p)
    frac = (flat == 0).float().mean().item()
    n = flat.numel()
    assert abs(frac - 0.5) < 4 * (0.25 / n) ** 0.5
    assert torch.equal(layer.eval()(x), x)
