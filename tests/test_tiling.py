"""Bounded memory: blended tiles (no seams), tiled vs whole-image inference within 0.05 dB, the memory plan."""
import math

import numpy as np
import pytest
import torch

from fastdenoise import tiling
from fastdenoise.methods import get_builder
from fastdenoise.engine import Trainer
from fastdenoise.metrics import psnr

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("tile-exact inference checked bit for bit on the CPU")]


def _pair(side=192, seed=0):
    from fastdenoise.io import load_sample

    clean = torch.from_numpy(load_sample("astronaut", side)).permute(2, 0, 1)[None]
    g = torch.Generator().manual_seed(seed)
    return clean + 25 / 255 * torch.randn(clean.shape, generator=g), clean


def test_tile_starts_cover_and_windows_sum_to_one():
    for n, tile, ov in ((200, 96, 32), (97, 96, 32), (64, 96, 16), (1000, 160, 64)):
        starts = tiling.tile_starts(n, tile, ov)
        cover = np.zeros(n)
        for a in starts:
            cover[a:a + min(tile, n)] += 1
        assert cover.min() >= 1 and starts[-1] + min(tile, n) == n
    x = torch.rand(2, 3, 200, 300)
    torch.testing.assert_close(tiling.tiled(lambda t: t * 2, x, 96, 32), 2 * x)   # partition of unity
    w = tiling.window(96, 32, 32, None)
    assert float(w.min()) > 0 and float(w[40]) == 1.0
    torch.testing.assert_close(w[-32:] + w[:32], torch.ones(32))   # fall of one tile + rise of the next


def test_overlap_capped_at_half_a_tile():
    """A tile no wider than the overlap (tile=64 at the trainers' default overlap of 64) steps half a tile,
    not one pixel: 3x3 windows for 128x128, where an uncapped step of 1 made 65x65 (the Blind2Grad ensemble
    then ran 4225 times)."""
    for n, tile, ov in ((128, 64, 64), (128, 32, 64), (100, 33, 40)):
        starts = tiling.tile_starts(n, tile, ov)
        assert len(starts) <= math.ceil(2 * n / tile) and starts[-1] + tile == n
        assert min(b - a for a, b in zip(starts, starts[1:])) >= tile - tile // 2 - 1
    calls = []
    x = torch.rand(1, 3, 128, 128)
    torch.testing.assert_close(tiling.tiled(lambda t: calls.append(1) or t + 1, x, 64, 64), x + 1)
    assert len(calls) == 9


def test_chunked_tiles_equal_one_by_one():
    """chunk > 1 stacks windows on the batch axis: the same blend as one call per window, fewer calls."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 70, 53, generator=g)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        return conv(t) * (1 + t.mean(dim=(1, 2, 3), keepdim=True))   # per-entry, tile-dependent
    with torch.no_grad():
        one = tiling.tiled(fn, x, 32, 16)
        n_one = len(calls)
        calls.clear()
        many = tiling.tiled(fn, x, 32, 16, chunk=5)
    torch.testing.assert_close(many, one)
    assert len(calls) == math.ceil(n_one / 5) and calls[0] == 5 * x.shape[0]
    with torch.no_grad():
        torch.testing.assert_close(tiling.tiled(fn, x[:, :, :20, :20], 32, 16, chunk=4), fn(x[:, :, :20, :20]))

def test_blend_has_no_seams():
    """A per-tile constant offset (the worst case of a network's tile-dependence) blends into a smooth ramp:
    neighbouring pixels differ by at most about pi/2 * step / overlap, not by the whole step."""
    x = torch.zeros(1, 1, 64, 400)
    calls = []

    def fn(t):
        calls.append(1)
        return torch.full_like(t, float(len(calls)))

    y = tiling.tiled(fn, x, 128, 64)
    jump = float((y[..., 1:] - y[..., :-1]).abs().max())
    assert len(calls) >= 5 and jump <= math.pi / 2 / 64 * 1.5


def test_parse_size_and_budget():
    assert tiling.parse_size("6G") == 6 << 30 and tiling.parse_size("512M") == 512 << 20
    assert tiling.parse_size("1.5GB") == int(1.5 * (1 << 30)) and tiling.parse_size(1000) == 1000
    with pytest.raises(ValueError, match="memory size"):
        tiling.parse_size("lots")
    assert tiling.budget(0, torch.device("cpu")) == math.inf
    assert tiling.budget(None, torch.device("cpu")) >= tiling.MIN_AUTO


def test_activation_probe_leaves_model_alone():
    """The probe changes no weight, BatchNorm buffer or global RNG state (Noise2Same has BatchNorm)."""
    tr = get_builder("noise2same")(in_ch=3, device="cpu")
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    rng = torch.get_rng_state()
    per = tiling.activation_bytes(tr.model, 3)
    assert per > 100
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("method,iters,opts,tol", [("p2n", 2, {"start": "gaussian"}, 0.05), ("zsn2n", 30, {}, 0.05),
                                                  ("nb2nb", 5, {}, 0.05), ("p2n", 2, {"start": "camera"}, 0.3)])
def test_tiled_matches_whole_image(method, iters, opts, tol):
    """Where the whole image fits, inference in blended 96x96 tiles (overlap 32) is within 0.05 dB of it.
    (Noise2Same normalises with batch statistics: its tiles share statistics summed over the image, which
    matched within 0.01 dB after 100 iterations but differ by 0.2-1.2 dB while it is barely trained; see
    docs/INPUTS.md. P2N's camera start, supervised further on 64x64 crops, uses more of its context: on
    Gaussian noise its 96x96 tiles score 0.16-0.22 dB above the whole 192x192 image, 0.01-0.02 dB for the
    Gaussian start.)"""
    noisy, clean = _pair(192)
    tr = get_builder(method)(in_ch=3, device="cpu", tile_overlap=32, **opts)
    tr.fit(noisy, iters=iters)
    whole = tr.denoise(noisy, tile=0)
    tiled = tr.denoise(noisy, tile=96)
    assert tr.plan["tile"] == 96
    d = float(psnr(tiled, clean).mean()) - float(psnr(whole, clean).mean())
    assert abs(d) < tol, d


def test_small_images_run_whole_without_probe(monkeypatch):
    """An image within SMALL_PIXELS never tiles and never probes: results are exactly the unbudgeted ones."""
    tr = get_builder("zsn2n")(in_ch=3, device="cpu", max_memory=1)
    monkeypatch.setattr(tiling, "activation_bytes", lambda *a, **k: pytest.fail("probed"))
    y = torch.rand(1, 3, 64, 64)
    a = tr.fit(y, iters=2).output
    assert tr.plan == {"tile": None}
    b = get_builder("zsn2n")(in_ch=3, device="cpu", max_memory=0).fit(y, iters=2).output
    assert torch.equal(a, b)


def test_memory_plan_for_a_large_photo():
    """A 2048x2048 P2N fit under a 1 GiB budget trains on crops and infers in tiles (no fit is run)."""
    tr = get_builder("p2n")(in_ch=3, device="cpu", max_memory="1G")
    x = torch.zeros(1, 3, 2048, 2048)
    plan = tr.memory_plan(x, tr.method.batches(tr.run, x))
    assert plan["crop"] == 128 and 1 <= plan["batch"] <= 4
    tile = tr.infer_tile(x)
    assert tile is not None and tile % 32 == 0 and tile < 2048
    assert 0.5 * tr.per_pixel(3) * tile * tile <= (1 << 30)
    big = get_builder("p2n")(in_ch=3, device="cpu", max_memory=0)
    assert big.memory_plan(x, big.method.batches(big.run, x)) == {} and big.infer_tile(x) is None


def test_crop_fit_on_a_budget(monkeypatch):
    """Over budget, single-image mode fits on crops (dataset mode, no output EMA) and denoises in tiles; the
    result still denoises."""
    monkeypatch.setattr(Trainer, "SMALL_PIXELS", 0)
    noisy, clean = _pair(160)
    tr = get_builder("zsn2n")(in_ch=3, device="cpu", max_memory="8M", tile_overlap=16)
    res = tr.fit(noisy, iters=40)
    assert tr.plan["crop"] is not None and tr.plan["tile"] is not None and tr.run.dataset_mode
    assert res.ema_output is None and res.output.shape == noisy.shape
    assert float(psnr(res.output, clean).mean()) > float(psnr(noisy, clean).mean()) + 1.0


def test_free_memory_respects_an_address_space_limit():
    """Under ``ulimit -v`` the automatic budget comes from what the limit leaves, not from MemAvailable."""
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (12 << 30, resource.RLIM_INFINITY)); "
            "import torch; from fastdenoise.tiling import free_memory; print(free_memory(torch.device('cpu')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) < 12 << 30
