"""The main job, ``make demo`` (scripts/demo.py), end to end on a few iterations, and the classical blind
denoiser it shows beside P2N."""
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wavelet_jinv_denoises_and_checks_its_input():
    pytest.importorskip("pywt")
    from fastdenoise.evaluate import wavelet_jinv
    from fastdenoise.metrics import psnr

    rng = np.random.default_rng(0)
    clean = np.clip(np.linspace(0, 1, 64)[None, :, None] * np.ones((64, 64, 3)), 0, 1).astype(np.float32)
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    out = wavelet_jinv(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert float(psnr(out, clean)[0]) > float(psnr(noisy, clean)[0]) + 3
    assert wavelet_jinv(noisy[..., :1]).shape == (64, 64, 1)
    with pytest.raises(ValueError, match="noisy must be"):
        wavelet_jinv(noisy[..., :2])


@pytest.mark.cpu_only("the demo's CPU path, two iterations")
def test_demo_on_camera_noise(tmp_path, capsys, monkeypatch):
    pytest.importorskip("pywt")
    monkeypatch.syspath_prepend(os.path.join(ROOT, "scripts"))
    import demo

    assert demo.main(["--iters", "2", "--threads", "1", "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "noise camera" in out and "J-invariant wavelet" in out and "P2N Gaussian start alone" in out
    assert "P2N camera start alone" in out and "P2N fitted from it (" in out
    for name in ("reference", "noisy", "wavelet", "gaussian_start", "camera_start", "p2n_fit", "compare"):
        assert os.path.exists(tmp_path / f"{name}.png"), name
