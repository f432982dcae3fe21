"""``fastdenoise.noise.estimate_noise`` and what ``denoise`` decides from it: ``pd="auto"`` and ``blend="auto"``."""
import numpy as np
import pytest
import torch

from fastdenoise.api import auto_blend
from fastdenoise.api import denoise
from fastdenoise.api import denoise_many
from fastdenoise.api import pd_merge
from fastdenoise.api import pd_split
from fastdenoise.io import load_sample
from fastdenoise.metrics import psnr
from fastdenoise.noise import add_correlated
from fastdenoise.noise import add_gaussian
from fastdenoise.noise import estimate_noise

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.cpu_only("CPU fits and CPU defaults")]


def _flat(size=128, c=3):
    return np.full((size, size, c), 0.5, np.float32)


def test_white_noise_level_and_no_correlation():
    for sigma in (5, 25):
        est = estimate_noise(add_gaussian(_flat(), sigma, seed=1))
        assert np.allclose(est.sigma, sigma / 255, rtol=0.08) and np.allclose(est.sigma_full, sigma / 255, rtol=0.08)
        assert est.correlation < 0.1 and est.pd == 1
        assert est.level * 255 == pytest.approx(sigma, rel=0.08)


def test_correlated_noise_reads_as_correlated_with_its_whole_level():
    y = add_correlated(_flat(), 25, seed=2)
    est = estimate_noise(y)
    assert est.correlation > 0.6 and est.pd == 2
    assert est.level * 255 == pytest.approx(25, rel=0.2)          # the stride-2 estimate sees most of it
    assert max(est.sigma_full) < 0.6 * min(est.sigma)             # the finest scale sees a part


def test_inputs_and_errors():
    y = add_gaussian(_flat(64, 1), 10, seed=0)
    a = estimate_noise(y)
    b = estimate_noise(torch.from_numpy(y).permute(2, 0, 1))
    c = estimate_noise((np.clip(y, 0, 1) * 255).round().astype(np.uint8))
    assert a.sigma == pytest.approx(b.sigma) and c.sigma[0] == pytest.approx(a.sigma[0], rel=0.05)
    assert set(a.as_dict()) == {"sigma", "sigma_full", "level255", "correlation", "pd"}
    with pytest.raises(ValueError, match="at least 8 x 8"):
        estimate_noise(np.zeros((4, 16), np.float32))
    with pytest.raises(ValueError, match="one image"):
        estimate_noise(torch.zeros(2, 3, 16, 16))


@pytest.mark.parametrize("h,w", [(32, 32), (33, 30), (9, 15)])
def test_pd_split_merge_round_trip(h, w):
    x = torch.rand(2, 3, h, w)
    subs = pd_split(x, 2)
    assert subs.shape == (8, 3, (h + 1) // 2, (w + 1) // 2)
    assert torch.equal(subs[1], x[0, :, 0::2, 1::2][:, :subs.shape[-2], :subs.shape[-1]]) or w % 2
    assert torch.equal(pd_merge(subs, 2, x.shape), x)


def test_auto_pd_follows_the_noise():
    clean = load_sample("astronaut", crop=128)
    _, white = denoise(add_gaussian(clean, 25, seed=0), method="zsn2n", iters=0, return_info=True)
    _, corr = denoise(add_correlated(clean, 25, seed=0), method="zsn2n", iters=0, return_info=True)
    assert white["pd"] == 1 and corr["pd"] == 2
    assert corr["noise"]["correlation"] > 0.5 > white["noise"]["correlation"]
    _, small = denoise(add_correlated(clean[:48, :48], 25, seed=0), method="zsn2n", iters=0, return_info=True)
    assert small["pd"] == 1                                     # under 64 pixels a side
    _, forced = denoise(add_gaussian(clean, 25, seed=0), method="zsn2n", iters=0, return_info=True, pd=2)
    assert forced["pd"] == 2


def test_pd_fits_the_sub_images_together():
    """``pd=2`` is one fit of the four sub-images as a batch, put back pixel for pixel."""
    y = add_correlated(load_sample("astronaut", crop=64), 25, seed=0)
    out = denoise(y, method="zsn2n", iters=2, seed=3, pd=2, blend=1)
    t = torch.from_numpy(y).permute(2, 0, 1)[None]
    want = denoise(pd_split(t, 2), method="zsn2n", iters=2, seed=3, pd=1, blend=1)
    np.testing.assert_array_equal(out, pd_merge(want, 2, t.shape)[0].permute(1, 2, 0).clamp(0, 1).numpy())


def test_blend_keeps_a_denoiser_that_removed_only_noise():
    clean = load_sample("astronaut", crop=128)
    y = add_gaussian(clean, 25, seed=0)
    est = estimate_noise(y)
    t = torch.from_numpy(y).permute(2, 0, 1)[None]
    c = torch.from_numpy(clean).permute(2, 0, 1)[None]
    assert auto_blend(t, c, est) == 1.0                          # the clean image itself: removed just the noise
    smooth = torch.full_like(c, float(c.mean()))                # removed everything
    assert auto_blend(t, smooth, est) < 0.5
    assert auto_blend(t, t, est) == 1.0                          # removed nothing


def test_a_clean_image_comes_back_nearly_unchanged():
    """A clean, detailed photo through a start trained on strong noise: where the start removed more than twice
    the energy the image reads as noise, the blend gives most of the photo back (the Noise2Same start alone
    smooths the astronaut crop's fine texture; blended, 39.6 dB against itself). The fine texture also reads
    as noise (the estimate's limit): P2N's start removes less than twice that and keeps weight 1."""
    clean = load_sample("astronaut", crop=128)
    out, info = denoise(clean, method="noise2same", iters=0, return_info=True)
    off = denoise(clean, method="noise2same", iters=0, blend=1)
    p_out, p_off = float(psnr(out, clean)[0]), float(psnr(off, clean)[0])
    assert info["blend"] < 0.5 and p_out >= 38.0 and p_out >= p_off + 3, (info["blend"], p_out, p_off)


def test_blend_values_and_errors():
    y = add_gaussian(load_sample("astronaut", crop=64), 25, seed=0)
    a, info = denoise(y, method="zsn2n", iters=0, blend=0.0, return_info=True)
    np.testing.assert_allclose(a, np.clip(y, 0, 1), atol=1e-6)
    assert info["blend"] == 0.0
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="blend must be"):
            denoise(y, method="zsn2n", iters=0, blend=bad)
    with pytest.raises(ValueError, match="pd must be"):
        denoise(y, method="zsn2n", iters=0, pd="two")


def test_denoise_many_blends_per_image_and_sends_correlated_noise_one_by_one():
    clean = load_sample("astronaut", crop=64)
    ys = [clean, add_gaussian(clean, 25, seed=0)]
    outs, info = denoise_many(ys, method="p2n", iters=1, pd=1, return_info=True)
    assert info["batched"] and len(info["blend"]) == 2 and all(0 < b <= 1 for b in info["blend"])
    outs, info = denoise_many(ys, method="p2n", iters=1, pd=1, blend=0.0, return_info=True)
    assert info["blend"] == [0.0, 0.0]
    for o, y in zip(outs, ys):
        np.testing.assert_allclose(o, np.clip(y, 0, 1), atol=1e-6)
    cor = load_sample("astronaut", crop=128)
    _, info = denoise_many([add_correlated(cor, 25, seed=0), add_correlated(cor, 25, seed=1)], method="p2n",
                           iters=1, return_info=True)
    assert not info["batched"]
