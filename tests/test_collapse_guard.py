"""The collapse guard (engine.callbacks.CollapseGuard): a fit whose estimate falls towards its noisy input stops
and keeps the start; P2N's guard option, its device defaults, the API's report and the CLI flag."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import build
from fastdenoise.engine.callbacks import GUARD_GRACE

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.cpu_only("CPU defaults and exact repeats")]


@dataclass
class TowardsConfig(FitConfig):
    guard: float | None = 0.5


class TowardsInput(Method):
    """A fit that learns the identity (loss ||F(y) - y||^2) from a start that outputs y / 2: the residual
    energy falls from mean((y/2)^2) to 0, which is the collapse the guard is for."""

    name = "towards_input"
    Config = TowardsConfig
    batched = True

    def make_model(self, in_ch, part="model"):
        m = torch.nn.Conv2d(in_ch, in_ch, 1)
        with torch.no_grad():
            m.weight.copy_(0.5 * torch.eye(in_ch).reshape(in_ch, in_ch, 1, 1))
            m.bias.zero_()
        return m

    def step(self, run, y, t, total, seed):
        est = run.net(y)
        return (est - y).pow(2).mean(), est.detach()


def _y(k=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(k, 3, 16, 16, generator=g)


def _trainer(**kw):
    return build(TowardsInput, device="cpu", init="scratch", lr=0.01, ema=0.9, **kw)


def test_guard_stops_and_keeps_the_start(capsys):
    y = _y()
    tr = _trainer(iters=80)
    start = {k: v.clone() for k, v in tr.model.state_dict().items()}
    res = tr.fit(y)
    stop = tr.run.guard_stops[0]
    assert GUARD_GRACE <= stop < 79 and len(res.losses) <= stop + 1      # judged after the grace iterations
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, start[k]), k                     # the weights from before the first step
    torch.testing.assert_close(res.output, 0.5 * y)           # the start's own estimate, not the input
    torch.testing.assert_close(res.best, 0.5 * y)             # the output EMA is the start's estimate too
    err = capsys.readouterr().err
    assert f"at iteration {stop + 1}" in err and "keeps the start" in err and "guard 0.5" in err


def test_guard_off_lets_the_fit_reach_the_input():
    y = _y()
    for off in (0, 0.0):
        tr = _trainer(iters=80, guard=off)
        res = tr.fit(y)
        assert tr.run.guard_stops == {} and tr.collapse_guard() is None
        assert float((res.output - y).abs().max()) < 0.1     # without the guard the estimate became y


def test_guard_ratio_sets_when_it_stops(monkeypatch):
    from fastdenoise.engine import callbacks

    monkeypatch.setattr(callbacks, "GUARD_GRACE", 0)          # judge from the first step: the toy falls fast
    y = _y()
    stops = []
    for ratio in (0.9, 0.5, 0.1):
        tr = _trainer(iters=80, guard=ratio)
        tr.fit(y)
        stops.append(tr.run.guard_stops[0])
    assert stops[0] < stops[1] < stops[2], stops
    a, b = _trainer(iters=80).fit(y).output, _trainer(iters=80).fit(y).output
    assert torch.equal(a, b)                                   # deterministic


def test_guard_per_image_in_a_batched_fit(capsys):
    """fit_many watches each copy on its own image: the copy whose image collapses keeps its start, the
    other (a fit that stays away from its input) trains on."""
    y = _y(2)
    y[1] = 0.0                           # residual energy of image 2 starts at 0 and cannot fall below half of it
    tr = _trainer(iters=80)
    res = tr.fit_many(y)
    stops = tr.batched_trainer.run.guard_stops
    assert list(stops) == [0]
    torch.testing.assert_close(res.best[:1], 0.5 * y[:1])
    assert len(res.losses) == 80                              # the stage went on for the other copy
    model = tr.batched_trainer.parts["model"].model
    w0 = tr.model.state_dict()["weight"]
    assert torch.equal(model.copy(0)["weight"], w0) and not torch.equal(model.copy(1)["weight"], w0)
    assert "(image 1 of 2)" in capsys.readouterr().err


def test_guard_not_in_dataset_mode():
    tr = _trainer(iters=80)
    y = _y()
    tr.train_images([y[0]], crop=16, batch=1, iters=40)
    assert tr.run.dataset_mode and tr.run.guard_stops == {}
    with torch.no_grad():      # it went past the guard's ratio: the residual energy fell below half the start's
        assert float((tr.model(y) - y).pow(2).mean()) < 0.5 * float((y / 2).pow(2).mean())


def test_p2n_guard_option_and_defaults():
    from fastdenoise.methods import p2n

    assert p2n.build(device="cpu").collapse_guard() == 0.5                 # CPU, from the camera start
    assert p2n.build(device="cpu", start="gaussian").collapse_guard() == 0.5
    assert p2n.build(device="cpu", init="scratch").collapse_guard() is None  # scratch begins far from y
    assert p2n.build(device="cpu", guard=0).collapse_guard() is None
    assert p2n.build(device="cpu", guard=0.3).collapse_guard() == 0.3
    tr = p2n.build(device="cpu")
    assert tr.method.defaults(torch.device("cuda"), True)["guard"] is None  # the paper's protocol on CUDA
    for bad in (1, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="guard must be a number in"):
            p2n.build(device="cpu", guard=bad)


def _camera_crop(side=96):
    from fastdenoise.io import load_sample
    from fastdenoise.noise import add_camera

    clean = torch.from_numpy(load_sample("astronaut", 256)).permute(2, 0, 1)[None]
    c = (256 - side) // 2
    clean = clean[..., c:c + side, c:c + side].contiguous()
    return add_camera(clean, seed=0), clean


def test_p2n_guard_at_full_resolution_and_no_collapse_on_the_sub_images(capsys):
    """Camera noise (shared between neighbouring pixels), P2N's CPU default. Fitted at full resolution
    (``pd=1``) the fit falls towards the input and the guard stops it and returns the start's figure; fitted on
    the stride-2 sub-images (``pd="auto"``, the default, which reads the noise as correlated) the fit runs its
    50 iterations without falling and ends at least at its start (docs/methods/p2n.md)."""
    from fastdenoise import api
    from fastdenoise.metrics import psnr

    noisy, clean = _camera_crop()
    img = noisy[0].permute(1, 2, 0).numpy()
    ref = clean[0].permute(1, 2, 0).numpy()

    def score(a):
        return float(psnr(torch.from_numpy(a).permute(2, 0, 1)[None], torch.from_numpy(ref).permute(2, 0, 1)[None]))

    start = api.denoise(img, iters=0, device="cpu", pd=1)
    out, info = api.denoise(img, device="cpu", return_info=True, pd=1)
    free = api.denoise(img, device="cpu", guard=0, pd=1)
    assert "guard_stop" in info and info["guard_stop"] < 49
    np.testing.assert_allclose(out, start, atol=2e-2)
    assert score(out) > score(free) + 0.5 and score(out) > score(img) + 2
    assert "keeps the start" in capsys.readouterr().err
    sub_start = api.denoise(img, iters=0, device="cpu")
    sub, info = api.denoise(img, device="cpu", return_info=True)
    assert info["pd"] == 2 and "guard_stop" not in info and info["iters"] == 50
    assert score(sub) >= score(sub_start) - 0.05 and score(sub) > score(out)


def test_cli_guard_flag(tmp_path, capsys):
    from fastdenoise import cli

    img = tmp_path / "in.png"
    import imageio.v3 as iio
    iio.imwrite(img, (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8))
    assert cli.main(["denoise", str(img), "--outdir", str(tmp_path / "o"), "--method", "zsn2n", "--guard", "0.5"]) == 2
    assert cli.main(["denoise", str(img), "--outdir", str(tmp_path / "o"), "--guard", "1.5"]) == 2
    assert "--guard" in capsys.readouterr().err
    assert cli.main(["denoise", str(img), "--outdir", str(tmp_path / "o"), "--guard", "0", "--iters", "2"]) == 0
