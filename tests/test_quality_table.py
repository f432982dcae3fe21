"""benchmarks.quality --partial: the rows of an interrupted run become a table marked partial; nothing runs."""
import dataclasses
import json
import os

import pytest

from fastdenoise.evaluate import Row

pytestmark = pytest.mark.cpu_only("the quality script's table rendering")


def test_partial_renders_rows_without_computing(tmp_path, monkeypatch):
    from benchmarks import quality

    monkeypatch.setattr(quality, "HERE", str(tmp_path))
    monkeypatch.setattr(quality, "evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    monkeypatch.setattr(quality, "environment", lambda: {"device": "cpu (test)", "torch": "x", "date": "d"})
    os.makedirs(tmp_path / "results")
    rows = [Row("astronaut", "gaussian:25", "noisy", 20.83, 0.40),
            Row("astronaut", "gaussian:25", "p2n", 29.61, 0.86, iters=50, seconds=57.7, ref_psnr=29.61)]
    with open(tmp_path / "results" / "tq-cpu.partial.jsonl", "w") as f:
        f.writelines(json.dumps(dataclasses.asdict(r)) + "\n" for r in rows)
    out = tmp_path / "tq.md"
    assert quality.main(["--partial", "--images", "astronaut", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**PARTIAL** (2 of about 32 rows" in text and "| astronaut | gaussian:25 | p2n | 50 | 29.61 |" in text
    assert "`python -m benchmarks.quality --images astronaut --out" in text and text.count("--resume") == 2
    saved = json.loads((tmp_path / "results" / "tq-cpu.json").read_text())
    assert len(saved["rows"]) == 2
    # without partial rows it is an error naming the file
    (tmp_path / "results" / "tq-cpu.partial.jsonl").unlink()
    with pytest.raises(SystemExit):
        quality.main(["--partial", "--out", str(out)])



def _ramp(channels):
    import numpy as np

    rng = np.random.default_rng(0)
    clean = np.clip(rng.random((1, 96, 96)).cumsum(-1) / 48.0, 0, 1).astype(np.float32)
    return np.repeat(clean, channels, 0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("noise", ["poisson:30", "gaussian:10-30"])
def test_bm3d_sigma_is_estimated_for_grayscale_too(channels, noise):
    """The BM3D rows get the estimated noise std for non-fixed noise; an (H, W, 1) grayscale array once gave ~0
    (skimage read it as a volume one voxel deep), so BM3D returned the noisy image (+0.00 dB on camera)."""
    import numpy as np
    import torch

    pytest.importorskip("pywt", reason="skimage's estimate_sigma needs PyWavelets (a dev requirement)")
    from fastdenoise.evaluate import bm3d_noise
    from fastdenoise.noise import add_noise

    clean = _ramp(channels)
    noisy = add_noise(torch.from_numpy(clean)[None], noise, seed=0)[0].numpy()
    true_std = float((noisy - clean).std())
    sigma = bm3d_noise(np.moveaxis(noisy, 0, -1), noise)
    assert 0.7 * true_std < sigma < 1.3 * true_std, (sigma, true_std)
    assert bm3d_noise(np.moveaxis(noisy, 0, -1), "gaussian:25") == pytest.approx(25 / 255)


@pytest.mark.parametrize("kernel", [None, 5])
def test_bm3d_gets_the_psd_of_correlated_noise(kernel):
    """Correlated noise: BM3D is given the noise PSD in the bm3d package's convention (|FFT2 k|^2 * H * W, which
    is E|FFT2 n|^2 for n = k * white), so it removes the noise a std alone would leave (the wavelet estimate sees
    a quarter of the std of 3x3-filtered noise)."""
    import numpy as np
    import torch

    from fastdenoise.evaluate import bm3d_noise
    from fastdenoise.noise import add_noise

    spec = "correlated:25" + ("" if kernel is None else f":{kernel}")
    clean = np.zeros((3, 64, 48), np.float32)
    psd = bm3d_noise(np.moveaxis(clean, 0, -1), spec)
    assert psd.shape == (64, 48) and psd.mean() / psd.size == pytest.approx((25 / 255) ** 2, rel=1e-9)
    per = np.mean([np.abs(np.fft.fft2(add_noise(torch.from_numpy(clean)[None], spec, seed=s)[0].numpy())) ** 2
                   for s in range(40)], axis=(0, 1))              # periodogram over 40 seeds x 3 channels
    assert np.corrcoef(per.ravel(), psd.ravel())[0, 1] > 0.95
    assert per.mean() == pytest.approx(psd.mean(), rel=0.05)


def test_anscombe_inverse_is_unbiased():
    """The inverse of the mean transformed count E[2 sqrt(c + 3/8)] is the Poisson mean, down to 1 count (the
    algebraic inverse is biased there)."""
    import numpy as np

    from fastdenoise.evaluate import anscombe_inverse

    rng = np.random.default_rng(0)
    for mean in (1.0, 3.0, 10.0, 30.0):
        d = (2 * np.sqrt(rng.poisson(mean, 400_000) + 0.375)).mean()
        assert anscombe_inverse(np.array([d]))[0] == pytest.approx(mean, rel=0.02)
