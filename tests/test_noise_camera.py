"""fastdenoise.noise camera and microscopy models: raw shot/read statistics, the correlations the pipeline
makes, determinism, the noise-free round trip, microscopy moments, spec parsing."""
import math

import numpy as np
import pytest
import torch

from fastdenoise import noise


def _flat_patches(levels, side=64):
    """(1, 3, side, side * len(levels)) grey strips of the given sRGB levels."""
    return torch.cat([torch.full((1, 3, side, side), v, dtype=torch.float64) for v in levels], dim=3)


def test_raw_variance_is_shot_times_signal_plus_read():
    p = noise.CameraParams(shot=0.006, read=noise.read_from_shot(0.006))
    levels = (0.15, 0.3, 0.45, 0.6, 0.75)
    side = 96
    x = _flat_patches(levels, side)
    clean, noisy, cams = noise.camera_raw(x, seed=4, params=p)
    assert cams == [p]
    d = noisy - clean
    cfa = noise.bayer_cfa(*x.shape[-2:])
    for c, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 1))):          # R, G (red rows), B sites
        means, varis = [], []
        for i in range(len(levels)):
            sl = (slice(None), 0, slice(dy, None, 2), slice(i * side + dx, (i + 1) * side, 2))
            assert bool((cfa[0, c][sl[2:]] == 1).all())
            means.append(clean[sl].mean().item())
            varis.append(d[sl].var().item())
            assert clean[sl].std().item() < 1e-12                     # flat patch: one raw level per channel
        slope, icpt = np.polyfit(means, varis, 1)
        assert slope == pytest.approx(p.shot, rel=0.06)
        # the intercept is small next to the shot term; within 4 standard errors of the fit
        n = (side // 2) ** 2
        se = math.sqrt(2.0 / n) * max(varis)
        assert abs(icpt - p.read) < 4 * se
    # the noise has zero mean and is independent of the clean raw signal at a flat level
    assert abs(d.mean().item()) < 4 * math.sqrt(d.var().item() / d.numel())


def test_read_noise_alone_at_zero_signal():
    x = torch.zeros(1, 3, 128, 128, dtype=torch.float64)
    clean, noisy, _ = noise.camera_raw(x, seed=1, shot=0.004, read=1e-4)
    assert float(clean.abs().max()) < 1e-15
    v = noisy.var().item()
    n = noisy.numel()
    assert v == pytest.approx(1e-4, abs=4 * 1e-4 * math.sqrt(2.0 / n))


def test_random_noise_levels_follow_the_log_linear_relation():
    g = torch.Generator().manual_seed(0)
    cams = [noise.CameraParams.draw(g) for _ in range(4000)]
    ls = np.log([c.shot for c in cams])
    lr = np.log([c.read for c in cams])
    lo, hi = np.log(noise.SHOT_RANGE)
    assert ls.min() >= lo and ls.max() <= hi
    assert abs(ls.mean() - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * len(ls))
    slope, icpt = np.polyfit(ls, lr, 1)
    assert slope == pytest.approx(2.18, abs=0.03) and icpt == pytest.approx(1.20, abs=0.2)
    assert np.std(lr - (2.18 * ls + 1.20)) == pytest.approx(0.26, rel=0.06)
    gains = np.array([[c.rgb_gain, c.red_gain, c.blue_gain] for c in cams])
    assert (gains[:, 1] >= 1.9).all() and (gains[:, 1] <= 2.4).all()
    assert (gains[:, 2] >= 1.5).all() and (gains[:, 2] <= 1.9).all()
    assert np.median(1 / gains[:, 0]) == pytest.approx(0.8, abs=0.01)


def _linear_prediction(level: float, p: noise.CameraParams, h: int, w: int, draws: int, seed: int):
    """sRGB noise of a flat grey image by a first-order (linearised) model of the pipeline, written
    independently of add_camera: raw noise of the clean raw level's variance, gains, demosaicing, CCM and
    the tone curve's slope at the clean level (finite differences)."""
    x = torch.full((1, 3, h, w), level, dtype=torch.float64)
    cam = noise.camera_unprocess(x, p)[0, :, 0, 0]                       # linear camera RGB, per channel
    cfa = noise.bayer_cfa(h, w)
    raw_level = (cam.view(1, 3, 1, 1) * cfa).sum(1, keepdim=True)
    wb = torch.tensor([p.red_gain, 1.0, p.blue_gain], dtype=torch.float64) * p.rgb_gain
    cam2rgb = torch.linalg.inv(p.rgb_to_cam())
    lin = cam2rgb @ (cam * wb)                                           # linear sRGB of the clean level

    def tone(v):
        return noise._smoothstep(v.clamp_min(1e-8) ** (1 / 2.2))

    eps = 1e-6
    slope = (tone(lin + eps) - tone(lin - eps)) / (2 * eps)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(draws):
        z = torch.randn((1, 1, h, w), generator=g, dtype=torch.float64) * (p.shot * raw_level + p.read).sqrt()
        d = noise.bilinear_demosaic(z) * wb.view(1, 3, 1, 1)
        d = torch.einsum("ij,bjhw->bihw", cam2rgb, d)
        out.append(d * slope.view(1, 3, 1, 1))
    return torch.cat(out)


def _corrs(n: torch.Tensor) -> dict:
    """Correlations of a noise field (B, 3, H, W): horizontal and vertical neighbours per channel (averaged
    over the two column parities), and between channels at one pixel."""
    n = n[..., 4:-4, 4:-4]
    n = n - n.mean(dim=(0, 2, 3), keepdim=True)

    def c(a, b):
        return float((a * b).mean() / (a.pow(2).mean() * b.pow(2).mean()).sqrt())

    out = {}
    for ch in range(3):
        out[f"h{ch}"] = c(n[:, ch, :, :-1], n[:, ch, :, 1:])
        out[f"v{ch}"] = c(n[:, ch, :-1, :], n[:, ch, 1:, :])
    for a, b in ((0, 1), (0, 2), (1, 2)):
        out[f"x{a}{b}"] = c(n[:, a], n[:, b])
    return out


def test_srgb_noise_is_correlated_as_the_pipeline_predicts():
    p = noise.CameraParams(shot=2e-4, read=noise.read_from_shot(2e-4))    # small noise: the linear regime
    h = w = 96
    level = 0.45
    x = torch.full((8, 3, h, w), level, dtype=torch.float64)
    target = noise.add_camera(x, seed=0, params=p, noiseless=True)
    got = _corrs(noise.add_camera(x, seed=3, params=p) - target)
    want = _corrs(_linear_prediction(level, p, h, w, draws=8, seed=11))
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=0.04), k
    # demosaicing makes neighbours positively correlated in every channel (white noise: ~0)
    for ch in range(3):
        assert got[f"h{ch}"] > 0.3 and got[f"v{ch}"] > 0.3
    # and channels share noise: a clearly non-zero correlation between channels
    assert max(abs(got["x01"]), abs(got["x02"]), abs(got["x12"])) > 0.2
    white = _corrs(noise.add_gaussian(x, 10, seed=0) - x)
    assert all(abs(v) < 0.03 for v in white.values())


def test_srgb_noise_std_against_the_signal_matches_the_pipeline():
    """Signal dependence in sRGB: shot noise grows with the signal, the tone curve's slope falls; the measured
    per-channel std at each grey level matches the linearised pipeline, and differs between levels."""
    p = noise.CameraParams(shot=2e-4, read=noise.read_from_shot(2e-4))
    stds = []
    for level in (0.05, 0.3, 0.5, 0.85):
        x = torch.full((4, 3, 64, 64), level, dtype=torch.float64)
        d = noise.add_camera(x, seed=1, params=p) - noise.add_camera(x, seed=1, params=p, noiseless=True)
        got = d.std(dim=(0, 2, 3))
        want = _linear_prediction(level, p, 64, 64, draws=4, seed=5).std(dim=(0, 2, 3))
        assert torch.allclose(got, want, rtol=0.05), (level, got, want)
        stds.append(got)
    assert float(stds[2][1] / stds[0][1]) > 1.5 and float(stds[2][1] / stds[3][1]) > 1.2


def test_determinism_types_and_shapes():
    rng = np.random.default_rng(0)
    xa = rng.random((32, 48, 3)).astype(np.float32)
    a = noise.add_noise(xa, "camera", seed=5)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == xa.shape
    assert np.array_equal(a, noise.add_noise(xa, "camera", seed=5))
    assert not np.array_equal(a, noise.add_noise(xa, "camera", seed=6))
    assert 0.0 <= a.min() and a.max() <= 1.0
    xt = torch.from_numpy(xa).permute(2, 0, 1).contiguous()
    b = noise.add_noise(xt, "camera", seed=5)
    assert isinstance(b, torch.Tensor) and b.shape == xt.shape
    assert torch.allclose(b.permute(1, 2, 0), torch.from_numpy(a), atol=1e-6)
    g = noise.add_noise(xa[..., :1], "camera", seed=5)                    # grey: replicated, averaged back
    assert g.shape == (32, 48, 1)
    with pytest.raises(ValueError, match="channels"):
        noise.add_camera(rng.random((16, 16, 2)).astype(np.float32), seed=0)
    # random cameras: one per image, reproducible, recorded
    xb = torch.rand(3, 3, 16, 16)
    y1, c1 = noise.parse_noise("camera:random").apply(xb, seed=2, return_params=True)
    y2, c2 = noise.parse_noise("camera:random").apply(xb, seed=2, return_params=True)
    assert torch.equal(y1, y2) and c1 == c2 and len(c1) == 3 and c1[0] != c1[1]
    assert set(c1[0]) == {"shot", "read", "ccm_weights", "rgb_gain", "red_gain", "blue_gain"}
    _, c3 = noise.parse_noise("camera:random,shot=0.01").apply(xb, seed=2, return_params=True)
    assert all(c["shot"] == 0.01 for c in c3) and c3[0]["red_gain"] == c1[0]["red_gain"]


def test_noise_free_round_trip():
    p = noise.CameraParams.draw(torch.Generator().manual_seed(7))
    x = 0.05 + 0.65 * torch.rand(2, 3, 40, 40, dtype=torch.float64)     # below the highlight roll-off
    back = noise.camera_process(noise.camera_unprocess(x, p), p)
    assert float((back - x).abs().max()) < 1e-6
    # with the mosaic and demosaicing: exact where the image is smooth (a linear ramp in the linear domain
    # is interpolated exactly by bilinear demosaicing)
    ramp = torch.linspace(0.2, 0.5, 40, dtype=torch.float64).view(1, 1, 1, -1).expand(1, 3, 40, 40)
    lin = noise.camera_unprocess(ramp, p)
    cfa = noise.bayer_cfa(40, 40)
    dem = noise.bilinear_demosaic((lin * cfa).sum(1, keepdim=True))
    assert float((dem - lin)[..., 2:-2, 2:-2].abs().max()) < 1e-4     # gamma makes the ramp slightly curved
    flat = torch.full((1, 3, 20, 20), 0.4, dtype=torch.float64)
    y = noise.parse_noise("camera").target(flat, seed=0)
    assert float((y - flat).abs().max()) < 1e-6


def test_demosaic_keeps_measured_values_and_fills_means():
    raw = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    rgb = noise.bilinear_demosaic(raw)
    cfa = noise.bayer_cfa(8, 8)
    assert torch.allclose((rgb * cfa).sum(1, keepdim=True), raw)
    # green at a red site: mean of its 4 green neighbours; red at a blue site: mean of its 4 diagonals
    assert rgb[0, 1, 2, 2].item() == pytest.approx(raw[0, 0, [1, 3, 2, 2], [2, 2, 1, 3]].mean().item())
    assert rgb[0, 0, 3, 3].item() == pytest.approx(raw[0, 0, [2, 2, 4, 4], [2, 4, 2, 4]].mean().item())


def test_microscopy_moments_and_blur():
    lam, read = 20.0, 3.0
    x = torch.full((4, 1, 64, 64), 0.4, dtype=torch.float64)
    y = noise.add_microscopy(x, seed=0, lam=lam, read=read)
    n = y.numel()
    want = 0.4 / lam + (read / 255) ** 2
    assert abs(y.mean().item() - 0.4) < 4 * math.sqrt(want / n)
    assert y.var().item() == pytest.approx(want, rel=4 * math.sqrt(2.0 / n) + 0.01)
    # signal dependence: variance grows with the signal by 1 / lam
    y2 = noise.add_microscopy(torch.full_like(x, 0.8), seed=1, lam=lam, read=read)
    assert (y2.var() - y.var()).item() == pytest.approx(0.4 / lam, rel=0.1)
    # blur: the PSF acts on the signal (a step edge becomes smooth) before the noise; target is the blur
    step = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    step[..., 16:] = 1.0
    b = noise.psf_blur(step, 1.5)
    assert 0.0 < b[0, 0, 5, 15].item() < 0.5 < b[0, 0, 5, 16].item() < 1.0
    assert b.sum().item() == pytest.approx(step.sum().item(), rel=1e-6)
    spec = noise.parse_noise("microscopy:lam=1000,read=0,psf=1.5")
    assert torch.allclose(spec.target(step, seed=0), b)
    ys = spec(step, seed=0)
    assert float((ys - b).abs().mean()) < 0.03
    assert torch.equal(noise.add_microscopy(x, seed=3), noise.add_microscopy(x, seed=3))


def test_parsing():
    s = noise.parse_noise("camera")
    assert s.kind == "camera" and s.level == noise.CAMERA_SHOT and str(s) == "camera"
    s = noise.parse_noise(" Camera:shot=0.01, read=2e-5 ,gain=1.2,red=2,blue=1.6,ccm=1 ")
    assert dict(s.options) == {"shot": 0.01, "read": 2e-5, "rgb_gain": 1.2, "red_gain": 2.0, "blue_gain": 1.6,
                               "ccm": 1.0}
    assert noise.parse_noise(str(s)) == s
    r = noise.parse_noise("camera:random")
    assert r.level == noise.SHOT_RANGE and str(r) == "camera:random"
    m = noise.parse_noise("microscopy:30:2:1.5")
    assert m == noise.parse_noise("microscopy:lam=30,read=2,psf=1.5") and m.level == 30.0
    assert noise.parse_noise(str(m)) == m
    assert noise.parse_noise("microscopy").level == noise.MICROSCOPY_DEFAULT["lam"]
    assert noise.parse_noise("gaussian:25") == noise.NoiseSpec("gaussian", 25.0)
    assert noise.split_noises("gaussian:25,camera:shot=0.01,read=2e-5,random,poisson:30,camera") == [
        "gaussian:25", "camera:shot=0.01,read=2e-5,random", "poisson:30", "camera"]
    assert noise.split_noises("gaussian:5,50, microscopy:30") == ["gaussian:5,50", "microscopy:30"]


@pytest.mark.parametrize("spec, word", [
    ("camera:shot=abc", "shot"), ("camera:shot=0", "shot"), ("camera:read=-1", "read"),
    ("camera:iso=100", "iso"), ("camera:shot=0.01,shot=0.02", "shot"), ("camera:ccm=7", "ccm"),
    ("camera:gain=0", "gain"), ("microscopy:lam=0", "lam"), ("microscopy:psf=x", "psf"),
    ("microscopy:1:2:3:4", "LAM:READ:PSF"), ("microscopy:foo=1", "foo"), ("cam:1", "camera"),
])
def test_parsing_errors_name_the_argument(spec, word):
    with pytest.raises(ValueError, match=word):
        noise.parse_noise(spec)


def test_camera_params_validation():
    with pytest.raises(ValueError, match="shot"):
        noise.CameraParams(shot=-1.0)
    with pytest.raises(ValueError, match="ccm_weights"):
        noise.CameraParams(ccm_weights=(1.0, 0.0))
    with pytest.raises(ValueError, match="unknown camera parameter"):
        noise.add_camera(torch.rand(3, 8, 8), seed=0, iso=100)
    with pytest.raises(ValueError, match="psf"):
        noise.add_microscopy(torch.rand(1, 8, 8), seed=0, psf=5.0)


def test_evaluate_scores_camera_noise_against_the_noise_free_rendering():
    from fastdenoise.evaluate import _metrics
    from fastdenoise.evaluate import evaluate
    from fastdenoise.io import load_sample

    rows = evaluate(["astronaut"], noise.split_noises("gaussian:25,camera:shot=0.004,read=2e-5"), [], crop=32,
                    seed=3, progress=None)
    noisy = [r for r in rows if r.method == "noisy"]
    assert [r.noise for r in noisy] == ["gaussian:25", "camera:shot=0.004,read=2e-5"]
    x = load_sample("astronaut", crop=32)
    spec = noise.parse_noise("camera:shot=0.004,read=2e-5")
    y = np.asarray(spec(x, seed=4), np.float32)           # the second noise: seed + 1
    assert noisy[1].psnr == pytest.approx(_metrics(y, np.asarray(spec.target(x, seed=4), np.float32))[0])
    assert noisy[1].psnr != pytest.approx(_metrics(y, x)[0], abs=0.1)


def test_camera_sweep_markdown_and_quality_section(tmp_path, monkeypatch):
    """camera_sweep --markdown renders the JSONL rows (computing nothing) into quality.md's camera section,
    which benchmarks.quality keeps when it rewrites the table."""
    import json
    import os

    from benchmarks import camera_sweep
    from benchmarks import quality

    rows = [{"image": "astronaut", "method": "noisy", "phase": "base", "iters_asked": None, "psnr": 23.86,
             "ssim": 0.5, "psnr_orig": 21.6, "noise_params": [{"shot": 0.004, "read": 2e-5}], "git": {"head": "abc"}},
            {"image": "astronaut", "method": "p2n", "phase": "1x", "iters_asked": 50, "iters": 50, "psnr": 27.0,
             "ssim": 0.7, "psnr_orig": 24.0, "seconds": 80.0},
            {"image": "astronaut", "method": "apr", "phase": "1x", "iters_asked": 120, "error": "boom"}]
    jl = tmp_path / "rows.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qmd = tmp_path / "quality.md"
    qmd.write_text("# Quality table\n\nold table\n")
    monkeypatch.setattr(camera_sweep, "HERE", str(tmp_path))
    assert camera_sweep.main(["--markdown", "--quality", "--out", str(jl), "--md", str(tmp_path / "c.md")]) == 0
    text = qmd.read_text()
    assert text.startswith("# Quality table\n\nold table\n") and camera_sweep.SECTION in text
    assert "| astronaut | p2n | 50 | 27.00 | 0.7000 | 24.00 | 80.0 |" in text
    assert "| p2n | 50 | 1 | 27.00 | 0.7000 | +3.14 | +3.14 | – |" in text and "apr 1x" in text
    # rewriting the section replaces it; the quality table keeps it
    assert camera_sweep.main(["--markdown", "--quality", "--out", str(jl), "--md", str(tmp_path / "c.md")]) == 0
    assert qmd.read_text().count(camera_sweep.SECTION) == 1
    monkeypatch.setattr(quality, "HERE", str(tmp_path))
    monkeypatch.setattr(quality, "environment", lambda: {"device": "cpu (test)", "torch": "x", "date": "d"})
    os.makedirs(tmp_path / "results")
    with open(tmp_path / "results" / "quality-cpu.partial.jsonl", "w") as f:
        f.write(json.dumps({"image": "astronaut", "noise": "camera", "method": "noisy", "psnr": 23.86,
                            "ssim": 0.5}) + "\n")
    assert quality.main(["--partial", "--images", "astronaut", "--noise", "camera", "--out", str(qmd)]) == 0
    text = qmd.read_text()
    assert "| astronaut | camera | noisy |" in text and text.count(camera_sweep.SECTION) == 1
    assert "| astronaut | p2n | 50 | 27.00 |" in text


def test_camera_sweep_method_specs():
    """``--methods p2n:start=gaussian``: the method and the config fields it is run with; bad specs say why."""
    from benchmarks import camera_sweep

    assert camera_sweep.method_spec("p2n") == ("p2n", {})
    assert camera_sweep.method_spec("p2n:start=gaussian:lr=3e-5") == ("p2n", {"start": "gaussian", "lr": 3e-5})
    with pytest.raises(ValueError, match="unknown method"):
        camera_sweep.method_spec("bm4d:x=1")
    with pytest.raises(ValueError, match="key=value"):
        camera_sweep.method_spec("p2n:gaussian")
