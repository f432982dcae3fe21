"""``denoise(pd=s)``: pixel-shuffle downsampling, the sub-images fitted together and put back."""
import numpy as np
import pytest
import torch

from fastdenoise.api import denoise
from fastdenoise.engine import iter_seed

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("exact repeats of CPU fits")]


def _img(h=20, w=18, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.2 * rng.standard_normal((h, w, c)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("h,w", [(20, 18), (21, 17)])
def test_pd_is_one_fit_of_the_sub_images_put_back(h, w):
    """The s*s sub-images (offsets in row-major order; an odd side reflected to even first) are fitted together
    as one batch, exactly ``denoise`` of that batch, and put back pixel for pixel."""
    from fastdenoise.api import pd_merge
    from fastdenoise.api import pd_split

    y = _img(h, w)
    out, info = denoise(y, method="zsn2n", iters=2, seed=3, pd=2, blend=1, return_info=True, device="cpu")
    assert out.shape == y.shape and out.dtype == y.dtype and info["pd"] == 2
    t = torch.from_numpy(y).permute(2, 0, 1)[None]
    subs = pd_split(t, 2)
    assert torch.equal(subs[3, :, : h // 2, : w // 2], t[0, :, 1::2, 1::2][:, : h // 2, : w // 2])
    want = denoise(subs, method="zsn2n", iters=2, seed=3, pd=1, blend=1, device="cpu")
    np.testing.assert_array_equal(out, pd_merge(want, 2, t.shape)[0].permute(1, 2, 0).clamp(0, 1).numpy())


def test_pd_1_is_the_plain_fit_and_bad_values_are_refused():
    y = _img()
    a, info = denoise(y, method="zsn2n", iters=1, device="cpu", return_info=True)
    assert info["pd"] == 1                                   # pd="auto": no correlated noise (and too small)
    b = denoise(y, method="zsn2n", iters=1, device="cpu", pd=1)
    np.testing.assert_array_equal(a, b)
    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(ValueError, match="pd must be an integer"):
            denoise(y, method="zsn2n", iters=1, device="cpu", pd=bad)
    with pytest.raises(ValueError, match="pd=10 needs an image of at least 20"):
        denoise(y, method="zsn2n", iters=1, device="cpu", pd=10)


def test_pd_keeps_layouts_and_grayscale():
    g = _img(c=1)[..., 0]
    out = denoise(g, method="zsn2n", iters=1, device="cpu", pd=2)
    assert out.shape == g.shape
    t = torch.from_numpy(_img()).permute(2, 0, 1)
    o = denoise(t, method="zsn2n", iters=1, device="cpu", pd=2)
    assert isinstance(o, torch.Tensor) and o.shape == t.shape
