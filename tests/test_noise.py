"""fastdenoise.noise: moments (4 sigma), determinism, no clipping, parsing, invalid inputs."""
import math

import numpy as np
import pytest
import torch

from fastdenoise import noise


def test_gaussian_moments_and_no_clipping():
    x = torch.full((2, 3, 64, 64), 0.5)
    sigma = 25.0
    d = (noise.add_gaussian(x, sigma, seed=3) - x).double() * 255.0
    n = d.numel()
    assert abs(d.mean().item()) < 4 * sigma / math.sqrt(n)
    var = d.var().item()
    assert abs(var - sigma**2) < 4 * sigma**2 * math.sqrt(2.0 / (n - 1))
    # no clipping at either end
    y0 = noise.add_gaussian(torch.zeros(1, 1, 32, 32), 25, seed=0)
    y1 = noise.add_gaussian(torch.ones(1, 1, 32, 32), 25, seed=0)
    assert y0.min() < 0 and y1.max() > 1


def test_gaussian_range_one_std_per_image():
    x = torch.zeros(6, 1, 64, 64)
    d = noise.add_gaussian(x, (5, 50), seed=1) * 255.0
    stds = d.flatten(1).std(dim=1)
    n = 64 * 64
    tol = 4 * 50 / math.sqrt(2 * (n - 1))
    assert ((stds > 5 - tol) & (stds < 50 + tol)).all()
    assert stds.max() - stds.min() > 1.0  # per image, not one std for the batch
    # the per-image stds are the first draws of the generator (documented order)
    g = torch.Generator().manual_seed(1)
    want = 5 + 45 * torch.rand(6, generator=g, dtype=torch.float64)
    assert torch.allclose(stds.double(), want, rtol=4 / math.sqrt(2 * (n - 1)))


def test_poisson_moments():
    lam = 30.0
    x = torch.full((2, 3, 64, 64), 0.4, dtype=torch.float64)
    y = noise.add_poisson(x, lam, seed=5)
    counts = y * lam
    assert torch.allclose(counts, counts.round(), atol=1e-9)  # Poisson(lam x) / lam
    n = y.numel()
    mean_sd = math.sqrt(0.4 / lam / n)
    assert abs(y.mean().item() - 0.4) < 4 * mean_sd
    var = y.var().item()
    # Var of the sample variance for a Poisson count: (mu4 - sigma^4) / n, mu4 = m(1 + 3m) for counts
    m = 0.4 * lam
    var_sd = math.sqrt((m * (1 + 3 * m) - m * m) / n) / lam**2
    assert abs(var - 0.4 / lam) < 4 * var_sd
    yr = noise.add_poisson(torch.full((4, 1, 32, 32), 0.5), (5, 50), seed=2)
    assert yr.shape == (4, 1, 32, 32) and (yr >= 0).all()


def test_determinism_and_types():
    x = torch.rand(2, 3, 16, 16)
    for fn, lv in ((noise.add_gaussian, 25), (noise.add_gaussian, (5, 50)), (noise.add_poisson, 30)):
        a, b, c = fn(x, lv, seed=7), fn(x, lv, seed=7), fn(x, lv, seed=8)
        assert torch.equal(a, b) and not torch.equal(a, c)
    xn = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    yn = noise.add_gaussian(xn, 25, seed=4)
    assert isinstance(yn, np.ndarray) and yn.dtype == np.float32 and yn.shape == xn.shape
    yt = noise.add_gaussian(torch.from_numpy(xn), 25, seed=4)
    np.testing.assert_array_equal(yn, yt.numpy())
    assert noise.add_gaussian(x.double(), 25, seed=1).dtype == torch.float64
    assert x.equal(x.clone())  # input untouched


def test_parse_noise():
    assert noise.parse_noise("gaussian:25") == noise.NoiseSpec("gaussian", 25.0)
    assert noise.parse_noise("poisson:30") == noise.NoiseSpec("poisson", 30.0)
    assert noise.parse_noise("gaussian:5-50") == noise.NoiseSpec("gaussian", (5.0, 50.0))
    assert noise.parse_noise("gauss5_50").level == (5.0, 50.0)
    assert noise.parse_noise(" Poisson30 ").kind == "poisson"
    assert str(noise.parse_noise("gaussian:5-50")) == "gaussian:5-50"
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(noise.add_noise(x, "gaussian:25", 1), noise.add_gaussian(x, 25, 1))
    for bad in ("salt:3", "gaussian", "gaussian:50-5", "poisson:0", "gaussian:-3"):
        with pytest.raises(ValueError, match="spec"):
            noise.parse_noise(bad)


def test_invalid_inputs():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(TypeError, match="x"):
        noise.add_gaussian(x.to(torch.uint8), 25, 0)
    with pytest.raises(ValueError, match="sigma"):
        noise.add_gaussian(x, -1, 0)
    with pytest.raises(ValueError, match="sigma"):
        noise.add_gaussian(x, (1, 2, 3), 0)
    with pytest.raises(ValueError, match="lam"):
        noise.add_poisson(x, 0, 0)
    with pytest.raises(ValueError, match="x must be >= 0"):
        noise.add_poisson(x - 2, 30, 0)
    with pytest.raises(TypeError, match="seed"):
        noise.add_gaussian(x, 25, 1.5)


def test_correlated_noise_law_and_layouts():
    add_correlated = noise.add_correlated

    x = np.full((96, 96, 3), 0.5, np.float32)
    y = noise.add_noise(x, "correlated:25", seed=1)
    n = (y - x).astype(np.float64) * 255
    assert abs(n.std() - 25) < 25 * 0.05                           # per-pixel std kept by the normalised kernel
    rho = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    assert abs(rho - 4 / 6) < 0.05                                 # [1 2 1] x [1 2 1]: lag-1 correlation 4/6
    assert abs(np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]) < 0.05   # channels independent
    np.testing.assert_array_equal(noise.add_noise(x, "correlated:25", seed=1), y)     # seeded
    t = torch.from_numpy(x.transpose(2, 0, 1).copy())
    np.testing.assert_allclose(add_correlated(t, 25, 1).numpy().transpose(1, 2, 0), y)  # (C, H, W) tensor
    white = add_correlated(x, 25, 1, kernel=1) - x
    assert abs(np.corrcoef(white[:, :-1, 0].ravel(), white[:, 1:, 0].ravel())[0, 1]) < 0.05
    with pytest.raises(ValueError, match="kernel"):
        add_correlated(x, 25, 1, kernel=4)


def test_demosaic_noise():
    add_demosaic = noise.add_demosaic

    x = np.full((64, 64, 3), 0.4, np.float32)
    y = noise.add_noise(x, "demosaic:30:2", seed=2)
    n = (y - x).astype(np.float64)
    assert abs(n.mean()) < 0.01 and 0.02 < n.std() < 0.2           # ~sqrt(0.4/30) = 0.115 on measured sites, less where interpolated
    assert np.corrcoef(n[:, :-1, 1].ravel(), n[:, 1:, 1].ravel())[0, 1] > 0.2     # interpolation correlates
    np.testing.assert_array_equal(add_demosaic(x, 30, 2, read=2.0), y)
    with pytest.raises(ValueError, match="RGB"):
        add_demosaic(x[..., :1], 30, 2)


def test_parse_correlated_specs():
    assert str(noise.parse_noise("correlated:25")) == "correlated:25"
    assert str(noise.parse_noise("correlated:25:5")) == "correlated:25:5"
    assert str(noise.parse_noise("demosaic:30:2")) == "demosaic:30:2"
    with pytest.raises(ValueError, match="odd"):
        noise.parse_noise("correlated:25:4")
    with pytest.raises(ValueError, match="third field"):
        noise.parse_noise("gaussian:25:3")
