"""Blind2Grad trainer: tiny end-to-end runs (1x3x32x32, narrow network, a few iterations)."""
import numpy as np
import pytest
import torch

from fastdenoise.methods import blind2grad as b2g
from common import noisy_pair

TINY = {"base": 8, "n_masks": 2, "n_samples": 4, "infer_batch": 2, "device": "cpu"}


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("Blind2Grad's CPU defaults and exact repeats")]


_y = noisy_pair


def test_config_defaults():
    cfg = b2g.Blind2GradConfig()
    assert (cfg.rate, cfg.eps_g, cfg.omega, cfg.gamma) == (0.25, 40 / 255, 0.8, 0.5)
    assert b2g.build(base=8, device="cpu").cfg.lr == b2g.CPU_LR
    assert b2g.build(base=8, device="cpu", lr=2e-5).cfg.lr == 2e-5
    with pytest.raises(ValueError):
        b2g.build(infer="median", **TINY)


def test_single_image_ensemble_and_reinit():
    x, y = _y()
    tr = b2g.build(iters=3, refresh_every=2, **TINY)
    a = tr.fit(y, clean=x)
    assert a.output.shape == y.shape and a.iters == 3 and len(a.losses) == 3 and all(np.isfinite(a.losses))
    assert len(a.psnr) >= 1                            # whole-image estimates: PSNR logged
    assert tr.run.state["x_m"] is not None and not torch.equal(tr.run.state["x_m"], y)  # refreshed at t=2
    torch.testing.assert_close(tr.denoise(y), a.output)  # seeded ensemble: deterministic
    single = tr.denoise(y, n_samples=1)
    assert single.shape == y.shape and not torch.equal(single, a.output)
    tr.fit(_y(1)[1])
    torch.testing.assert_close(tr.fit(y).output, a.output)  # reset restores weights and x_m


def test_infer_cycles():
    """Each cycle is the ensemble with the previous cycle's output as x_m; the CPU default is 2 cycles."""
    _, y = _y(5)
    assert b2g.build(**TINY).cfg.infer_cycles == b2g.CPU_CYCLES == 2
    with pytest.raises(ValueError, match="infer_cycles"):
        b2g.build(infer_cycles=0, **TINY)
    tr = b2g.build(iters=2, refresh_every=1, infer_cycles=1, **TINY)
    one = tr.fit(y).output
    run = tr.run
    x_m = run.state["x_m"]
    run.model.net.set_mc_dropout(True)
    with torch.no_grad(), run.torch_rng(99991):      # the dropout RNG the engine's inference sets
        first = tr.method._ensemble(run, y, x_m, 4, run.seed + 99991)
        second = tr.method._ensemble(run, y, first, 4, run.seed + 99991 + 7919)
    run.model.net.set_mc_dropout(False)
    torch.testing.assert_close(one, first)
    tr.cfg.infer_cycles = 3
    three = tr.denoise(y)
    tr.cfg.infer_cycles = 2
    two = tr.denoise(y)
    torch.testing.assert_close(two, second)
    assert not torch.equal(two, one) and not torch.equal(three, two)


def test_crop_mode():
    _, y = _y(2, (1, 3, 40, 36))
    res = b2g.fit(y, iters=2, crop=16, **TINY)
    assert res.output.shape == y.shape and all(np.isfinite(res.losses))


def test_reference_matches_fused():
    _, y = _y(3)
    fused = b2g.fit(y, iters=3, **TINY)
    ref = b2g.fit(y, iters=3, reference=True, **TINY)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.output, ref.output, rtol=1e-3, atol=1e-4)


def test_dataset_mode():
    imgs = [_y(s, (1, 3, 40, 48))[1][0] for s in range(2)] + [torch.rand(3, 20, 24)]
    tr = b2g.train(imgs, iters=2, crop=16, batch=2, **TINY)
    assert tr.run.t == 2 and len(tr.run.losses) == 2 and tr.run.state["x_m"] is None
    assert tr.denoise(imgs[0]).shape == (1, 3, 40, 48)


def test_denoise_api():
    import fastdenoise.api as api
    from fastdenoise.methods import available

    assert "blind2grad" in available()
    _, y = _y(4)
    out, info = api.denoise(y, method="blind2grad", iters=2, return_info=True, **TINY)
    api.clear_cache()
    assert out.shape == y.shape and info["iters"] == 2


def _bn_stats(tr):
    return {k: v.clone() for k, v in tr.run.model.state_dict().items() if "running_" in k}


def test_freeze_bn_keeps_a_starts_statistics(tmp_path):
    """From a start, single-image training keeps its BatchNorm statistics (freeze_bn default); from random
    weights, with freeze_bn=False and in dataset mode they follow the batches (the papers' training)."""
    _, y = _y(6)
    scratch = b2g.build(iters=3, **TINY)
    assert not scratch.freeze_bn_active()
    before = _bn_stats(scratch)
    scratch.fit(y)
    assert any(not torch.equal(before[k], v) for k, v in _bn_stats(scratch).items())
    start = str(tmp_path / "start.pt")
    scratch.save_weights(start)
    saved = _bn_stats(b2g.build(weights=start, **TINY))
    tr = b2g.build(iters=3, weights=start, **TINY)
    assert tr.method.started and tr.freeze_bn_active()
    res = tr.fit(y)
    assert all(torch.equal(saved[k], v) for k, v in _bn_stats(tr).items())
    assert all(np.isfinite(res.losses)) and res.output.shape == y.shape
    torch.testing.assert_close(tr.denoise(y), res.output)       # inference leaves BatchNorm frozen too
    thawed = b2g.build(iters=3, weights=start, freeze_bn=False, **TINY)
    thawed.fit(y)
    assert any(not torch.equal(saved[k], v) for k, v in _bn_stats(thawed).items())
    ds = b2g.train([y[0], _y(7)[1][0]], iters=2, crop=16, batch=2, weights=start, **TINY)
    assert any(not torch.equal(saved[k], v) for k, v in _bn_stats(ds).items())
    with pytest.raises(ValueError, match="freeze_bn"):
        b2g.build(freeze_bn="yes", **TINY)


def test_rgb_weights_file_folds_for_a_grayscale_image(tmp_path):
    """``weights=`` RGB file on a grayscale image: folded like the shipped RGB starts; a file that fits no
    way (another width) is refused with the layer and shapes named."""
    from fastdenoise.engine import load_state
    from fastdenoise.engine import rgb_state_to_gray

    rgb = b2g.build(**TINY)
    path = str(tmp_path / "rgb.pt")
    rgb.save_weights(path)
    gray = b2g.build(in_ch=1, weights=path, **TINY)
    assert gray.method.started
    want = rgb_state_to_gray(load_state(path, "model"), gray.run.model.state_dict())   # the file: fp16
    for k, v in gray.run.model.state_dict().items():
        torch.testing.assert_close(v, want[k].to(v.dtype))
    with pytest.raises(ValueError, match="do not fit the 'model' network for 3-channel images"):
        b2g.build(weights=path, **{**TINY, "base": 12})
