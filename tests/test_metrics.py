"""fastdenoise.metrics against skimage.metrics.

What is compared, precisely:
* PSNR: ``peak_signal_noise_ratio(gt_u8, pred_u8, data_range=255)`` on the 8-bit images each convention
  produces (floor(v*255+0.5) for "p2n", np.round for "skimage"); equal to 1e-10 dB (the only
  difference is the float64 summation order).
* SSIM: ``structural_similarity(gt_u8, pred_u8, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=2)``. skimage filters the whole image with
  reflect padding and crops (11-1)//2 = 5 pixels of the SSIM map on every side before averaging; the
  pixels it keeps never see the padding, so its value equals our MATLAB "valid" SSIM. We assert 1e-9
  (the brief asks 1e-3).
"""
import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from fastdenoise import metrics

pytestmark = pytest.mark.cpu_only("metrics on CPU arrays")


def _pair(name="astronaut", sigma=25.0, seed=0, crop=(slice(100, 164), slice(120, 197))):
    img = getattr(data, name)()[crop]
    if img.ndim == 2:
        img = img[:, :, None]
    x = img.astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    y = (x + rng.normal(0, sigma / 255.0, x.shape)).astype(np.float32)  # leaves [0, 1]: not clipped
    return y, x


def _u8_half_up(v):
    return np.floor(np.clip(v, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)


def _u8_half_even(v):
    return np.round(np.clip(v, 0, 1) * np.float32(255)).astype(np.uint8)


def _sk_ssim(a, b, **kw):
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255) | kw
    if a.ndim == 3 and a.shape[2] > 1:
        kw["channel_axis"] = 2
    return sk_ssim(a.squeeze(), b.squeeze(), **kw)


@pytest.mark.parametrize("name", ["astronaut", "camera"])
@pytest.mark.parametrize("convention,quant", [("p2n", _u8_half_up), ("skimage", _u8_half_even)])
def test_psnr_ssim_match_skimage(name, convention, quant):
    y, x = _pair(name)
    p8, t8 = quant(y), quant(x)
    ref_psnr = sk_psnr(t8, p8, data_range=255)
    ref_ssim = _sk_ssim(t8, p8)
    got_psnr = metrics.psnr(y, x, convention=convention)
    got_ssim = metrics.ssim(y, x, convention=convention)
    assert got_psnr.shape == (1,) and got_psnr.dtype == torch.float64
    assert abs(got_psnr.item() - ref_psnr) < 1e-10
    assert abs(got_ssim.item() - ref_ssim) < 1e-9
    # uint8 inputs are used as they are
    assert abs(metrics.psnr(p8, t8, convention=convention).item() - ref_psnr) < 1e-10
    assert abs(metrics.ssim(p8, t8, convention=convention).item() - ref_ssim) < 1e-9


def test_float_convention_matches_skimage_float():
    y, x = _pair(sigma=15.0)
    ref_p = sk_psnr(x.astype(np.float64), y.astype(np.float64), data_range=1.0)
    ref_s = _sk_ssim(x.astype(np.float64), y.astype(np.float64), data_range=1.0)
    assert abs(metrics.psnr(y, x, convention="float").item() - ref_p) < 1e-9
    assert abs(metrics.ssim(y, x, convention="float").item() - ref_s) < 1e-9
    # data_range scales consistently
    assert abs(metrics.psnr(y * 2, x * 2, convention="float", data_range=2.0).item() - ref_p) < 1e-6


def test_y_convention_is_luma_ssim():
    y, x = _pair(sigma=10.0)

    def luma(v):
        v = v.astype(np.float64)
        return 16.0 + 65.481 * v[..., 0] + 128.553 * v[..., 1] + 24.966 * v[..., 2]

    ref = sk_ssim(luma(x), luma(y), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert abs(metrics.ssim(y, x, convention="y").item() - ref) < 1e-9
    ref_p = sk_psnr(x.astype(np.float64), y.astype(np.float64), data_range=1.0)
    assert abs(metrics.psnr(y, x, convention="y").item() - ref_p) < 1e-9


def test_minmax_convention_undoes_affine_change():
    _, x = _pair()
    x = (x - x.min()) / (x.max() - x.min())
    pred = 0.3 * x + 0.1
    assert metrics.psnr(pred, x, convention="minmax").item() > 100  # exact up to float32 rounding
    assert abs(metrics.ssim(pred, x, convention="minmax").item() - 1.0) < 1e-6
    assert metrics.psnr(pred, x).item() < 20  # the default does not normalise


def test_batched_torch_matches_per_image_numpy():
    pairs = [_pair(seed=s) for s in range(3)]
    pred = torch.stack([torch.from_numpy(p).permute(2, 0, 1) for p, _ in pairs])
    tgt = torch.stack([torch.from_numpy(t).permute(2, 0, 1) for _, t in pairs])
    for conv in metrics.CONVENTIONS:
        bp = metrics.psnr(pred, tgt, convention=conv)
        bs = metrics.ssim(pred, tgt, convention=conv)
        assert bp.shape == bs.shape == (3,)
        for i, (p, t) in enumerate(pairs):
            assert abs(bp[i].item() - metrics.psnr(p, t, convention=conv).item()) < 1e-9
            assert abs(bs[i].item() - metrics.ssim(p, t, convention=conv).item()) < 1e-9
    # (C, H, W) and (H, W) tensors are single images; batched numpy (B, H, W, C) works too
    assert metrics.psnr(pred[0], tgt[0]).shape == (1,)
    assert metrics.ssim(pred[0, 0], tgt[0, 0]).shape == (1,)
    np_b = metrics.ssim(np.stack([p for p, _ in pairs]), np.stack([t for _, t in pairs]))
    assert torch.allclose(np_b, metrics.ssim(pred, tgt), atol=1e-12, rtol=0)
    assert abs(metrics.mean(bp) - bp.mean().item()) < 1e-12


def test_identical_and_quantisation():
    _, x = _pair()
    assert torch.isinf(metrics.psnr(x, x)).all()
    assert abs(metrics.ssim(x, x).item() - 1.0) < 1e-12
    # p2n rounds half up: 0.5 -> 1, 2.5 -> 3 (the half-even rule gives 0 and 2)
    v = torch.tensor([0.5, 2.5, 254.5], dtype=torch.float64) / 255.0
    v = v.clamp(0, 1)
    up = metrics.quantize_uint8(v)
    assert up.tolist() == [1.0, 3.0, 255.0]
    assert metrics.quantize_uint8(v, rounding="half_even").tolist() == [0.0, 2.0, 254.0]
    # the prediction is clamped before quantisation
    assert metrics.quantize_uint8(torch.tensor([-0.3, 1.7])).tolist() == [0.0, 255.0]


def test_invalid_inputs():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="pred and target"):
        metrics.psnr(a, torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match="convention"):
        metrics.psnr(a, a, convention="matlab")
    with pytest.raises(TypeError, match="pred"):
        metrics.psnr(a.long(), a)
    with pytest.raises(TypeError, match="target"):
        metrics.psnr(a, [1, 2])
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(a, a, convention="float", data_range=0)
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(torch.rand(1, 1, 10, 30), torch.rand(1, 1, 10, 30))
    with pytest.raises(ValueError, match="pred"):
        metrics.psnr(torch.rand(1, 1, 1, 4, 4), torch.rand(1, 1, 1, 4, 4))
