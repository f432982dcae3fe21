"""``denoise(pd=s)``: pixel-shuffle downsampling, each sub-image fitted on its own and put back."""
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
def test_pd_is_the_sub_images_denoised_alone_and_put_back(h, w):
    """Each of the s*s sub-images (offsets in row-major order, seed iter_seed(seed, k)) is exactly
    ``denoise`` of that sub-image, for sizes that s divides and sizes it does not."""
    y = _img(h, w)
    out, info = denoise(y, method="zsn2n", iters=2, seed=3, pd=2, return_info=True, device="cpu")
    assert out.shape == y.shape and out.dtype == y.dtype and info["pd"] == 2
    k = 0
    for dy in range(2):
        for dx in range(2):
            sub = np.ascontiguousarray(y[dy::2, dx::2])
            want = denoise(sub, method="zsn2n", iters=2, seed=iter_seed(3, k), device="cpu")
            np.testing.assert_array_equal(out[dy::2, dx::2], want)
            k += 1


def test_pd_1_is_the_plain_fit_and_bad_values_are_refused():
    y = _img()
    a = denoise(y, method="zsn2n", iters=1, device="cpu")
    b = denoise(y, method="zsn2n", iters=1, device="cpu", pd=1)
    np.testing.assert_array_equal(a, b)
    for bad in (0, -1, 1.5, True, "2"):
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
