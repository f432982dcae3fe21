"""fastdenoise.compat.aprrd.APR against the official APR class (written here from the official
codes/utils/function.py): with the same per-pixel draws the four images are bit-identical, and the
official L1 loss and its gradients (through fy too) are equal with the fused apr_loss."""
import pytest
import torch

import fastdenoise.functional as F
from fastdenoise.compat.aprrd import APR

pytestmark = pytest.mark.cpu_only("the official APR sampler, compared on CPU tensors")


def official_window():
    """The official table: ((dx1, dy1), (dx2, dy2)) for dx1, dy1, dx2, dy2 in -1..1, identical pairs dropped."""
    r = range(-1, 2)
    w = torch.tensor([((a, b), (c, d)) for a in r for b in r for c in r for d in r])
    keep = ~((w[:, 0, 0] == w[:, 1, 0]) & (w[:, 0, 1] == w[:, 1, 1]))
    return w[keep]


def official_apply(y, fy, random_indices):
    """The official APR.apply with its randint replaced by ``random_indices`` (B, H, W)."""
    b, c, h, w = y.shape
    win = official_window()
    cols = torch.arange(w).repeat(h, 1).unsqueeze(0).expand(b, -1, -1)
    rows = torch.arange(h).unsqueeze(1).repeat(1, w).unsqueeze(0).expand(b, -1, -1)
    dx1 = torch.clamp(cols + win[random_indices, 0, 0], 0, w - 1)
    dy1 = torch.clamp(rows + win[random_indices, 0, 1], 0, h - 1)
    dx2 = torch.clamp(cols + win[random_indices, 1, 0], 0, w - 1)
    dy2 = torch.clamp(rows + win[random_indices, 1, 1], 0, h - 1)
    i1 = (dy1 * w + dx1).view(b, 1, -1).expand(-1, c, -1)
    i2 = (dy2 * w + dx2).view(b, 1, -1).expand(-1, c, -1)

    def g(t, i):
        return torch.gather(t.reshape(b, c, -1), 2, i).view(b, c, h, w)

    return g(y, i1), g(y, i2), g(fy, i1), g(fy, i2)


def test_table_translation_is_a_bijection():
    from fastdenoise.compat.aprrd import _TO_OFFICIAL

    assert sorted(_TO_OFFICIAL.tolist()) == list(range(72)) and len(official_window()) == 72


@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (1, 1, 3, 3), (1, 3, 16, 16)])
def test_same_draws_bit_identical(shape):
    """Given the adapter's draws (translated to the official table), the official four images equal the
    adapter's bit for bit, borders (clamping) included."""
    y, fy = torch.rand(shape), torch.rand(shape)
    apr = APR()
    ours = apr.apply(y, fy)
    theirs = official_apply(y, fy, apr.official_indices(y))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_loss_and_gradients_match_official():
    """The official loss mean|out - h2(y)| + 4 mean|out - h2(y) - (h1(fy) - h2(fy))| with gradients
    through fy, from the adapter's images and from the fused apr_loss with the adapter's seed."""
    y = torch.rand(2, 3, 12, 10)
    out = torch.randn(2, 3, 12, 10, requires_grad=True)
    fy = torch.rand(2, 3, 12, 10, requires_grad=True)
    apr = APR(generator=torch.Generator().manual_seed(2))
    _, h2_y, h1_fy, h2_fy = apr.apply(y, fy)
    loss = (out - h2_y).abs().mean() + 4 * (out - h2_y - (h1_fy - h2_fy)).abs().mean()
    g = torch.autograd.grad(loss, (out, fy))
    o2, f2 = out.detach().clone().requires_grad_(True), fy.detach().clone().requires_grad_(True)
    _, t2_y, t1_fy, t2_fy = official_apply(y, f2, apr.official_indices(y))
    ref = (o2 - t2_y).abs().mean() + 4 * (o2 - t2_y - (t1_fy - t2_fy)).abs().mean()
    gr = torch.autograd.grad(ref, (o2, f2))
    torch.testing.assert_close(loss, ref)
    for a, b in zip(g, gr):
        torch.testing.assert_close(a, b)
    o3, f3 = out.detach().clone().requires_grad_(True), fy.detach().clone().requires_grad_(True)
    fused = F.apr_loss(o3, y, f3, apr.seed, lam=4.0, grad_through_reg=True)
    torch.testing.assert_close(fused, ref)
    for a, b in zip(torch.autograd.grad(fused, (o3, f3)), gr):
        torch.testing.assert_close(a, b)


def test_draws_follow_torch_manual_seed():
    y = torch.rand(1, 1, 8, 8)
    torch.manual_seed(1)
    a = APR().apply(y, y)[0]
    torch.manual_seed(1)
    assert torch.equal(APR().apply(y, y)[0], a)
    with pytest.raises(ValueError, match="size=3"):
        APR(size=5)
