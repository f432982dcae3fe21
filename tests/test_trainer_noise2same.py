"""Noise2Same trainer: tiny end-to-end runs (1x3x32x32, narrow U-Net, a few iterations)."""
import numpy as np
import pytest
import torch

from fastdenoise.methods import noise2same as n2s

TINY = {"base": 8, "crop": 16, "batch": 2, "device": "cpu"}


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("Noise2Same's CPU defaults and exact repeats")]


def _smooth(seed=0, shape=(1, 3, 32, 32), sigma=0.1):
    g = torch.Generator().manual_seed(seed)
    h, w = shape[-2:]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * torch.sin(6 * yy), 0.2 + 0.5 * xx * yy])[None]
    x = x[:, : shape[1]].expand(shape[0], -1, -1, -1).contiguous()
    return x, x + sigma * torch.randn(x.shape, generator=g)


def test_helpers():
    from fastdenoise.functional import standardize
    from fastdenoise.engine import crop_sampler
    from fastdenoise.engine import dihedral
    from fastdenoise.engine import staircase_lr

    x = torch.rand(2, 3, 8, 9) * 3 + 1
    xs, mean, std = standardize(x)
    torch.testing.assert_close(xs.mean(dim=(-2, -1)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(xs.std(dim=(-2, -1), correction=0), torch.ones(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(xs * std + mean, x)
    assert staircase_lr(4e-4, 4999, 5000, 0.5) == 4e-4 and staircase_lr(4e-4, 10000, 5000, 0.5) == 1e-4
    s = crop_sampler([torch.rand(3, 20, 24), torch.rand(3, 10, 12)], 16, 5, seed=1, augment=True)
    assert s(3).shape == (5, 3, 16, 16) and torch.equal(s(3), s(3)) and not torch.equal(s(3), s(4))
    im = torch.arange(16.0).view(1, 4, 4)
    assert len({tuple(dihedral(im, k).flatten().tolist()) for k in range(8)}) == 8


def test_single_image_and_inplace_reinit():
    _, y = _smooth()
    tr = n2s.build(iters=2, **TINY)
    ptrs = [p.data_ptr() for p in tr.model.parameters()]
    a = tr.fit(y)
    assert a.output.shape == y.shape and a.iters == 2 and len(a.losses) == 2 and all(np.isfinite(a.losses))
    tr.fit(_smooth(1)[1])
    b = tr.fit(y)
    torch.testing.assert_close(a.output, b.output)              # reset: weights, BN stats, optimiser
    assert ptrs == [p.data_ptr() for p in tr.model.parameters()]
    assert tr.cfg.lr == 4e-4 and tr.cfg.lam == 2.0 and tr.cfg.mask_replace == "gaussian"
    # output is un-standardised: the zero-iteration network maps back to the image's range
    z = tr.fit(y, iters=0).output
    assert abs(float(z.mean()) - float(y.mean())) < 0.5


def test_reference_matches_fused():
    _, y = _smooth(2)
    fused = n2s.fit(y, iters=3, **TINY)
    ref = n2s.fit(y, iters=3, reference=True, **TINY)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.output, ref.output, rtol=1e-3, atol=1e-4)


def test_donut_and_running_bn():
    _, y = _smooth(3)
    res = n2s.fit(y, iters=2, mask_replace="donut", lam=0.95, bn_infer="running", **TINY)
    assert res.output.shape == y.shape and all(np.isfinite(res.losses))
    with pytest.raises(ValueError):
        n2s.build(mask_replace="zeros", **TINY)


def test_dataset_mode():
    imgs = [_smooth(s, (1, 3, 40, 48))[1][0] for s in range(2)] + [torch.rand(3, 12, 14)]
    tr = n2s.train(imgs, iters=2, **TINY)
    assert tr.run.t == 2 and len(tr.run.losses) == 2
    from fastdenoise.engine import crop_sampler

    tr.fit_dataset(crop_sampler(imgs, 16, 2), iters=3)      # raw crops (the CLI path): standardised per crop
    assert tr.run.t == 3 and np.isfinite(tr.run.losses).all()
    assert tr.denoise(imgs[0]).shape == (1, 3, 40, 48)


def test_quality_smoke():
    """A few dozen iterations on a smooth noisy image reduce the error."""
    x, y = _smooth(4, sigma=0.15)
    res = n2s.fit(y, iters=40, base=8, crop=32, batch=2, device="cpu", lr=2e-3)
    assert float(((res.output - x) ** 2).mean()) < 0.7 * float(((y - x) ** 2).mean())


def test_denoise_api():
    import fastdenoise.api as api
    from fastdenoise.methods import available

    assert "noise2same" in available()
    _, y = _smooth(5)
    img = y[0].permute(1, 2, 0).clamp(0, 1).numpy()
    out, info = api.denoise(img, method="noise2same", iters=2, return_info=True, **TINY)
    api.clear_cache()
    assert out.shape == img.shape and out.dtype == img.dtype and info["iters"] == 2
