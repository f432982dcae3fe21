"""Stacks (one model in dataset mode over the slices), alpha kept, any channel count with every method, and the
API's refusal of NaN/Inf/empty/too-small inputs."""
import numpy as np
import pytest
import torch

import fastdenoise
from fastdenoise.methods import available
from fastdenoise.stacks import denoise_stack

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("CPU defaults and exact repeats of stack fits")]

TINY = {"p2n": {}, "nb2nb": {}, "zsn2n": {}, "noise2same": {"crop": 16, "batch": 1, "base": 8},
        "apr": {"crop": 16, "batch": 1, "rd_iters": 1, "base": 8, "head": 8, "stages": "apr+rd"},
        "blind2grad": {"n_samples": 1, "base": 8}}


def test_every_method_has_a_tiny_config():
    assert set(available()) <= set(TINY)


@pytest.mark.parametrize("method", sorted(TINY))
@pytest.mark.parametrize("channels", [2, 5])
def test_any_channel_count_every_method(method, channels):
    """Grayscale + extra planes and 5-channel images work with every method (P2N's RGB-pretrained network
    through RGB triples and single channels)."""
    y = np.random.default_rng(channels).random((20, 24, channels)).astype(np.float32)
    out = fastdenoise.denoise(y, method=method, iters=1, device="cpu", **TINY[method])
    assert out.shape == y.shape and out.dtype == y.dtype and np.isfinite(out).all()


def test_alpha_is_kept():
    y = np.random.default_rng(0).random((20, 24, 4)).astype(np.float32)
    out = fastdenoise.denoise(y, method="zsn2n", iters=2, device="cpu", alpha=True)
    np.testing.assert_array_equal(out[..., 3], y[..., 3])
    assert not np.array_equal(out[..., :3], y[..., :3])


@pytest.mark.parametrize("bad,match", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    (np.where(np.eye(8)[..., None] > 0, np.inf, 0.5).repeat(3, 2).astype(np.float32), "infinite"),
    (np.zeros((0, 8, 3), np.float32), "empty"),
    (np.zeros((1, 8, 3), np.float32), "too small"),
])
def test_api_refuses_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        fastdenoise.denoise(bad, method="zsn2n", iters=1, device="cpu")


def test_stack_one_model_same_kind_shape_dtype():
    """A stack is fitted once in dataset mode (crops of all slices) and every slice denoised with that model;
    NumPy (N, H, W, C) uint8 in, the same out; torch (N, C, H, W) float in, the same out."""
    rng = np.random.default_rng(0)
    base = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (36, 1))
    vol = np.stack([base + 0.1 * rng.standard_normal(base.shape).astype(np.float32) for _ in range(4)])[..., None]
    u8 = np.floor(np.clip(vol, 0, 1) * 255 + 0.5).astype(np.uint8)
    out, info = denoise_stack(u8, method="zsn2n", iters=30, device="cpu", return_info=True)
    assert out.shape == u8.shape and out.dtype == np.uint8
    assert info["slices"] == 4 and info["iters"] == 30 and info["crop"] == 36
    err_in = np.abs(u8.astype(float) / 255 - base[None, ..., None]).mean()
    err_out = np.abs(out.astype(float) / 255 - base[None, ..., None]).mean()
    assert err_out < err_in
    t = torch.from_numpy(vol).permute(0, 3, 1, 2).contiguous()
    o2 = denoise_stack(t, method="zsn2n", iters=3, device="cpu")
    assert isinstance(o2, torch.Tensor) and o2.shape == t.shape
    again = denoise_stack(t, method="zsn2n", iters=3, device="cpu")
    assert torch.equal(o2, again)                                   # seeded: the same stack, the same result
    with pytest.raises(ValueError, match="NaN"):
        denoise_stack(np.full((2, 8, 8, 1), np.nan, np.float32), method="zsn2n", iters=1, device="cpu")
