"""AT-BSN (rotation-free and rotated), RD teachers and students: parameter counts, equivalence, exact
blind spot."""
import pytest
import torch

from fastdenoise.models import ATBSN
from fastdenoise.models import ATBSNRotated
from fastdenoise.models import Student
from fastdenoise.ops.blindspot.api import s_shift

pytestmark = pytest.mark.cpu_only("the AT-BSN network's blind-spot structure, exact on the CPU")


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_param_counts():
    assert _count(ATBSN(3)) == 1_268_547
    assert _count(ATBSNRotated(3)) == 1_268_547
    assert _count(Student(3, "1.00M")) == 1_003_011
    assert _count(Student(3, "1.02M")) == 1_021_107
    assert list(ATBSN().state_dict()) == list(ATBSNRotated().state_dict())


def _pair(dtype=torch.float32, in_ch=3, base=48, head=96):
    """The same weights in both formulations (narrow widths keep the slow tests fast: the blind-spot
    and rotation structure does not depend on them)."""
    torch.manual_seed(0)
    m = ATBSN(in_ch, base, head).to(dtype)
    r = ATBSNRotated(in_ch, base, head).to(dtype)
    r.load_state_dict(m.state_dict())
    return m, r


@pytest.mark.parametrize("s", [0, 1, 2, 5])
def test_rotation_free_matches_rotated(s):
    m, r = _pair()
    x = torch.rand(1, 3, 32, 32)
    a, b = m(x, s), r(x, s)
    assert a.shape == x.shape
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_rotation_free_matches_rotated_grads():
    """Same loss -> same parameter gradients (checks the weight rotation's backward), float64."""
    m, r = _pair(torch.float64, base=8, head=12)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    m(x, 1).square().mean().backward()
    r(x, 1).square().mean().backward()
    for (n, p), q in zip(m.named_parameters(), r.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=n)


def test_shift_cat_matches_cat_of_shifts():
    feats = [torch.randn(1, 2, 5, 7) for _ in range(4)]
    for s in (0, 1, 3, 6):
        expect = torch.cat([s_shift(f, min(s, 5 if k % 2 == 0 else 7), k) for k, f in enumerate(feats)], 1)
        assert torch.equal(ATBSN.shift_cat(feats, s), expect)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (1, 1, 64, 48)])
def test_blind_spot_exact(shape):
    """d out[r, c] / d x[r', c'] is exactly 0 inside the (2s-1)^2 hole; the pixels at distance s
    straight up/down/left/right (and for s=0 the centre) are seen."""
    torch.manual_seed(1)
    m = ATBSN(1, base=8, head=8).double()
    h, w = shape[-2:]
    pix = [(0, 0), (h // 2, w // 2), (h - 1, 3), (5, w - 2)]
    # one image copy per probed pixel on the batch axis: one backward gives every pixel's gradient
    x = torch.rand(*shape, dtype=torch.float64).expand(len(pix), 1, h, w).clone().requires_grad_(True)
    for s in (0, 1, 2, 5):
        out = m(x, s)
        (grads,) = torch.autograd.grad(sum(out[n, 0, r, c] for n, (r, c) in enumerate(pix)), x)
        for n, (r, c) in enumerate(pix):
            g = grads[n, 0]
            if s == 0:
                assert g[r, c] != 0
                continue
            hole = g[max(r - s + 1, 0):r + s, max(c - s + 1, 0):c + s]
            assert hole.numel() > 0 and torch.count_nonzero(hole) == 0, (s, r, c)
            for rr, cc in ((r - s, c), (r + s, c), (r, c - s), (r, c + s)):
                if 0 <= rr < h and 0 <= cc < w:
                    assert g[rr, cc] != 0, (s, r, c, rr, cc)


def test_non_square_and_odd_sizes():
    m = ATBSN(3, 16, 16)
    for shape in [(1, 3, 40, 72), (2, 3, 17, 33)]:
        x = torch.rand(*shape)
        y = m(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="square"):
        ATBSNRotated()(torch.rand(1, 3, 32, 64))


def test_teachers_match_forward():
    m, r = _pair(base=16, head=16)
    x = torch.rand(1, 3, 32, 40)
    shifts = (0, 1, 2, 3, 4, 5)
    with torch.no_grad():
        ts = m.teachers(x, shifts)
        for s, t in zip(shifts, ts):
            torch.testing.assert_close(t, m(x, s), rtol=0, atol=0)
        xs = x[..., :32]
        for s, t in zip(shifts, r.teachers(xs, shifts)):
            torch.testing.assert_close(t, r(xs, s), rtol=0, atol=0)


def test_students():
    x = torch.rand(2, 3, 20, 36)
    a = Student(3, "1.00M")
    b = Student(3, "1.02M")
    ya, yb = a(x), b(x)
    assert ya.shape == x.shape and yb.shape == x.shape
    assert (ya >= -0.1 * ya.abs().max()).all()  # LeakyReLU output
    # AT-BSN's distiller seeds the student from the BSN's U-Net (all but dec_conv1b)
    bsn = ATBSN(3).unet.state_dict()
    sd = {k: v for k, v in bsn.items() if not k.startswith("dec_conv1b")}
    missing = a.unet.load_state_dict(sd, strict=False).missing_keys
    assert sorted(missing) == ["dec_conv1b.bias", "dec_conv1b.weight"]
    with pytest.raises(ValueError, match="variant must be one of"):
        Student(3, "2M")


def test_invalid_inputs():
    m = ATBSN()
    with pytest.raises(ValueError, match="s must be >= 0"):
        m(torch.rand(1, 3, 32, 32), -1)
    with pytest.raises(TypeError, match="s must be an int"):
        m(torch.rand(1, 3, 32, 32), 1.5)
    with pytest.raises(ValueError, match="3 channels"):
        m(torch.rand(1, 1, 32, 32))
