"""The engine every method plugs into: one registry, seeds per call, the caller's RNG left alone, no method
importing another, and a cached trainer giving the same bits as a fresh one for every method."""
import ast
import os

import numpy as np
import pytest
import torch

from common import noisy_pair
from fastdenoise.methods import available
from fastdenoise.methods import get_builder
from fastdenoise.methods import get_method

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("the engine's CPU defaults, bit-exact seeds and resumes (cuDNN gives no bit-exact repeats)")]

METHODS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "fastdenoise", "methods")

# each method's own networks from random weights (so the init depends on the seed), small enough for the CPU
TINY = {
    "p2n": {"init": "scratch", "iters": 2},
    "nb2nb": {"init": "scratch", "iters": 2},
    "noise2same": {"init": "scratch", "iters": 2, "base": 8, "crop": 16, "batch": 2},
    "apr": {"init": "scratch", "iters": 1, "rd_iters": 1, "base": 8, "head": 16, "crop": 32, "batch": 1,
            "stages": "apr+rd"},
    "blind2grad": {"init": "scratch", "iters": 2, "base": 8, "n_masks": 2, "n_samples": 2, "infer_batch": 2},
    "zsn2n": {"init": "scratch", "iters": 3},
}


def test_registry_lists_every_method_once():
    names = available()
    assert names == ["p2n", "nb2nb", "noise2same", "apr", "blind2grad", "zsn2n"]
    assert set(TINY) == set(names)                         # this test covers every registered method
    for name in names:
        assert get_method(name).name == name
        assert get_builder(name)(device="cpu", **TINY[name]).method.name == name


def test_registry_feeds_cli_eval_and_quality(monkeypatch):
    import fastdenoise.methods as methods
    from fastdenoise.cli import build_parser

    monkeypatch.setitem(methods.METHODS, "p2n_copy", "fastdenoise.methods.p2n")
    p = build_parser()
    a = p.parse_args(["denoise", "x.png", "-o", "out", "--method", "p2n_copy"])
    assert a.method == "p2n_copy"
    assert "p2n_copy" in p.format_help()
    from fastdenoise.evaluate import evaluate
    assert evaluate.__defaults__[2] is None                # methods=None: every registered method


def test_no_method_module_imports_another():
    mods = {n for n in available()}
    for fn in os.listdir(METHODS_DIR):
        if not fn.endswith(".py") or fn in ("__init__.py", "engine.py"):
            continue
        tree = ast.parse(open(os.path.join(METHODS_DIR, fn)).read())
        me = fn[:-3]
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                parts = n.split(".")
                if parts[:2] == ["fastdenoise", "methods"] and len(parts) > 2:
                    assert parts[2] in ("engine", me) or parts[2] not in mods, f"{fn} imports {n}"


@pytest.mark.parametrize("name", list(TINY))
def test_build_and_fit_leave_the_global_rng_alone(name):
    _, y = noisy_pair(0)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    tr = get_builder(name)(device="cpu", **TINY[name])
    assert torch.equal(torch.get_rng_state(), before)
    tr.fit(y, seed=3)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", list(TINY))
def test_cached_trainer_equals_fresh_for_the_same_seed(name):
    """A trainer reused for another seed re-draws everything (weights, crops, masks, dropout, every
    stage) and matches one built for that seed, bit for bit; the seed reaches APR's second stage."""
    _, y = noisy_pair(1)
    build = get_builder(name)
    cached = build(device="cpu", seed=0, **TINY[name])
    first = cached.fit(y)
    again = cached.fit(y, seed=7)
    fresh = build(device="cpu", seed=7, **TINY[name]).fit(y)
    assert torch.equal(again.output, fresh.output)
    assert again.losses == fresh.losses
    assert not torch.equal(first.output, again.output)      # the seed changed something
    back = cached.fit(y, seed=0)                             # and going back reproduces the first run
    assert torch.equal(back.output, first.output) and back.losses == first.losses
    if name == "apr":
        assert cached.run.done == ["apr", "rd"] and len(again.losses) == 2
        ref = build(device="cpu", seed=0, **TINY[name])
        r0 = ref.fit(y)
        r7 = ref.fit(y, seed=7)
        assert r0.losses[1] != r7.losses[1]                 # stage 2 sees the new seed


@pytest.mark.parametrize("name", ["p2n", "zsn2n"])
def test_denoise_api_seed_per_call(name):
    import fastdenoise.api as api

    _, y = noisy_pair(2)
    img = y[0].permute(1, 2, 0).clamp(0, 1).numpy()
    kw = dict(method=name, device="cpu", **TINY[name])
    api.clear_cache()
    api.denoise(img, seed=0, **kw)
    cached = api.denoise(img, seed=5, **kw)
    api.clear_cache()
    fresh = api.denoise(img, seed=5, **kw)
    api.clear_cache()
    np.testing.assert_array_equal(cached, fresh)


def test_config_is_read_only_per_run():
    """A fit's seed lives in the run, not in the config; the method object holds only the config and
    what its networks were built from (fixed at build time)."""
    _, y = noisy_pair(3)
    tr = get_builder("blind2grad")(device="cpu", **TINY["blind2grad"])
    built_from = dict(tr.method.init_from)
    tr.fit(y, seed=9)
    assert tr.cfg.seed == 0 and tr.run.seed == 9
    assert set(vars(tr.method)) == {"cfg", "init_from"} and tr.method.init_from == built_from
    assert tr.run.state["x_m"] is not None


def test_resume_mid_second_stage(tmp_path):
    """One checkpoint holds every network and the run: an APR-RD run killed in stage 2 resumes there."""
    from fastdenoise.methods import apr

    _, y = noisy_pair(4)
    kw = dict(TINY["apr"], iters=2, rd_iters=2, device="cpu")
    full = apr.fit(y, **kw)
    ck = str(tmp_path / "apr.pt")
    tr = apr.build(checkpoint=ck, checkpoint_every=1, **kw)
    rd = tr.stages[1]
    step = rd.step

    def crash(run, yy, t, total, seed):
        if t == 1:
            raise KeyboardInterrupt
        return step(run, yy, t, total, seed)

    rd.step = crash
    with pytest.raises(KeyboardInterrupt):
        tr.fit(y)
    res = apr.build(checkpoint=ck, resume=True, **kw).fit(y)
    assert res.iters == 1                                     # only the missing RD iteration ran
    assert res.losses == full.losses
    assert torch.equal(res.output, full.output)


def test_zsn2n_network_and_reference():
    from fastdenoise.methods import zsn2n
    from fastdenoise.models.zsn2n import ZSN2NNet

    assert sum(p.numel() for p in ZSN2NNet(3).parameters()) == 22_275     # C = 3
    _, y = noisy_pair(5)
    fused = zsn2n.fit(y, iters=3, device="cpu")
    ref = zsn2n.fit(y, iters=3, device="cpu", reference=True)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused.output, ref.output, rtol=1e-4, atol=1e-5)
    tr = zsn2n.build(device="cpu", init="scratch")
    assert tr.total_iters(None) == zsn2n.CPU_ITERS
    if tr.method.start_path(3):                                        # from the shipped start: fewer
        assert zsn2n.build(device="cpu").total_iters(None) == zsn2n.CPU_ITERS_START
    assert tr.method.lr_at(0, 2000) == 1e-3 and tr.method.lr_at(1499, 2000) == 1e-3
    assert tr.method.lr_at(1500, 2000) == 5e-4                         # the reproduction's StepLR
    with pytest.raises(ValueError, match="decay_at"):
        zsn2n.build(device="cpu", decay_at=0)


def test_zsn2n_denoises():
    """A few hundred iterations on a smooth noisy image reduce the error (tiny, CPU)."""
    from fastdenoise.methods import zsn2n

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([0.5 + 0.3 * torch.sin(6 * yy), 0.5 + 0.3 * torch.cos(5 * xx), 0.4 + 0.3 * yy * xx])[None]
    y = x + 0.1 * torch.randn(x.shape, generator=g)
    res = zsn2n.fit(y, iters=150, device="cpu")
    assert float(((res.output - x) ** 2).mean()) < 0.5 * float(((y - x) ** 2).mean())


def test_zsn2n_end_to_end_through_the_cli(tmp_path):
    """The sixth method reaches the CLI without CLI edits: denoise a PNG and evaluate it."""
    import imageio.v3 as iio

    from fastdenoise.cli import main

    x, y = noisy_pair(6)
    src = tmp_path / "noisy.png"
    iio.imwrite(src, (y[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8))
    assert main(["denoise", str(src), "-o", str(tmp_path / "out"), "--method", "zsn2n", "--iters", "5",
                 "--device", "cpu"]) == 0
    out = list((tmp_path / "out").iterdir())
    assert len(out) == 1 and "zsn2n" in out[0].name
    assert iio.imread(out[0]).shape == (32, 32, 3)


def test_time_budget_picks_the_iterations(capsys):
    from fastdenoise.methods import zsn2n

    _, y = noisy_pair(7)
    tight = zsn2n.fit(y, device="cpu", iters=50, time_budget=1e-6)
    assert tight.iters == 2 and len(tight.losses) == 2                # two timed iterations at least
    assert "time budget" in capsys.readouterr().err
    loose = zsn2n.fit(y, device="cpu", iters=5, time_budget=1e6)
    assert loose.iters == 5                                           # never more than the nominal count
    assert loose.losses == zsn2n.fit(y, device="cpu", iters=5).losses  # and then exactly the unbudgeted run


def test_no_time_cap_unless_asked(capsys):
    """Defaults are fixed iteration counts on every machine (no cap, nothing printed): the same image and seed
    give the same result whatever the load; ``time_budget=`` caps and says so; 0 is no cap."""
    from fastdenoise.methods import zsn2n

    _, y = noisy_pair(8)
    tr = zsn2n.build(device="cpu")
    assert tr.cfg.time_budget is None
    res = zsn2n.fit(y, device="cpu")
    assert res.iters == tr.total_iters(None) and "time budget" not in capsys.readouterr().err
    capped = zsn2n.fit(y, device="cpu", time_budget=1e-6)
    assert capped.iters == 2 and "time budget" in capsys.readouterr().err
    assert zsn2n.fit(y, device="cpu", iters=3, time_budget=0).iters == 3
    for bad in (-1, "10", True):
        with pytest.raises(ValueError, match="time_budget"):
            zsn2n.build(device="cpu", time_budget=bad)


def test_shipped_starts(tmp_path, monkeypatch):
    """init="start" (default) loads <method>_start[_gray].pt from the weights folder when it fits the network
    (every part, same layers and shapes), else keeps the random init; init="scratch" never loads; the
    trainer and denoise's info say what each network started from."""
    from fastdenoise import api
    from fastdenoise.engine import starts

    monkeypatch.setattr(starts, "WEIGHTS_DIR", str(tmp_path))
    src = get_builder("apr")(device="cpu", **TINY["apr"])
    with torch.no_grad():
        for p in src.parts.values():
            for w in p.model.parameters():
                w.add_(0.01)                                # weights no seed's init gives
    path = str(tmp_path / "apr_start.pt")
    src.save_weights(path, meta={"note": "test"})
    kw = {k: v for k, v in TINY["apr"].items() if k != "init"}
    tr = get_builder("apr")(device="cpu", **kw)
    assert tr.init_from == {"bsn": path, "student": path} and tr.method.started
    for n in ("bsn", "student"):
        want = {k: v.half().float() if v.is_floating_point() else v for k, v in src.parts[n].model.state_dict().items()}
        for k, v in tr.parts[n].model.state_dict().items():
            torch.testing.assert_close(v, want[k], rtol=0, atol=0)
    before = {k: v.clone() for k, v in tr.parts["bsn"].model.state_dict().items()}
    tr.reset(seed=7)                                        # a loaded start does not depend on the seed
    assert all(torch.equal(v, before[k]) for k, v in tr.parts["bsn"].model.state_dict().items())
    assert get_builder("apr")(device="cpu", **TINY["apr"]).init_from == {"bsn": "scratch", "student": "scratch"}
    assert get_builder("apr")(device="cpu", **dict(kw, base=16)).init_from["bsn"] == "scratch"   # other shapes
    gray = get_builder("apr")(device="cpu", in_ch=1, **kw)    # no _gray start: the RGB start folded
    assert gray.init_from["bsn"] == path and gray.parts["bsn"].model.in_ch == 1
    g1 = noisy_pair(5)[1][:, :1]
    assert gray.fit(g1).output.shape == g1.shape
    assert get_builder("apr")(device="cpu", in_ch=1, **TINY["apr"]).parts["bsn"].model.in_ch == 1   # scratch
    assert get_builder("apr")(device="cpu", in_ch=1, **dict(kw, base=16)).parts["bsn"].model.in_ch == 1  # no fit
    with pytest.raises(ValueError, match="init must be one of"):
        get_builder("apr")(device="cpu", init="pretrained")
    # the API reports it, and the start changes the result
    img = noisy_pair(3)[1][0].permute(1, 2, 0).clamp(0, 1).numpy()
    api.clear_cache()
    out, info = api.denoise(img, method="apr", device="cpu", return_info=True, **kw)
    assert info["init"] == {"bsn": "apr_start.pt", "student": "apr_start.pt"}
    out2, info2 = api.denoise(img, method="apr", device="cpu", return_info=True, **TINY["apr"])
    assert info2["init"] == {"bsn": "scratch", "student": "scratch"} and not np.array_equal(out, out2)
    api.clear_cache()


def test_tta_self_ensemble():
    """tta=n averages the inference over n dihedral transforms, each undone: the transforms invert exactly,
    non-square images keep their shape, tta=1 is the single pass, and a bad count is refused at build."""
    from fastdenoise.engine import dihedral
    from fastdenoise.engine import dihedral_inverse

    x = torch.rand(1, 2, 5, 7)
    for k in range(8):
        assert torch.equal(dihedral_inverse(dihedral(x, k), k), x)
    _, y = noisy_pair(4, shape=(1, 3, 24, 40))
    tr = get_builder("zsn2n")(device="cpu", tta=1, **TINY["zsn2n"])
    tr.fit(y, seed=0)
    one = tr.denoise(y)
    per = [dihedral_inverse(tr.denoise(dihedral(y, k).contiguous()), k) for k in range(8)]
    assert torch.equal(per[0], one)
    for n, ks in ((2, (0, 4)), (4, (0, 1, 2, 3)), (8, range(8))):
        tr.cfg = tr.cfg.replace(tta=n)
        tr.method.cfg = tr.cfg
        got = tr.denoise(y)
        assert got.shape == y.shape
        torch.testing.assert_close(got, torch.stack([per[k] for k in ks]).mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="tta must be one of"):
        get_builder("zsn2n")(device="cpu", tta=3)


def test_warmup_ramps_the_learning_rate(monkeypatch):
    """warmup=f: the lr rises linearly to the schedule's over the first f of each stage's iterations;
    out-of-range fractions are refused; APR with iters=0 trains neither network."""
    from fastdenoise.engine import Part

    seen = []
    orig = Part.set_lr
    monkeypatch.setattr(Part, "set_lr", lambda self, lr: (seen.append(lr), orig(self, lr))[1])
    _, y = noisy_pair(5)
    tr = get_builder("zsn2n")(device="cpu", **dict(TINY["zsn2n"], iters=10, warmup=0.5))
    tr.fit(y, seed=0)
    base = tr.cfg.lr
    assert seen[:5] == pytest.approx([base * k / 5 for k in range(1, 6)]) and seen[5] == pytest.approx(base)
    with pytest.raises(ValueError, match="warmup must be"):
        get_builder("zsn2n")(device="cpu", warmup=1.0)
    tr = get_builder("apr")(device="cpu", **dict(TINY["apr"], rd_iters=None))
    res = tr.fit(y, iters=0, seed=0)
    assert res.iters == 0 and tr.run.losses == []


def test_weight_ema_is_the_average_of_the_iterates(monkeypatch):
    """``weight_ema=d``: the network that leaves each stage is d-EMA of the weights after every step."""
    from fastdenoise import engine
    from fastdenoise.methods import zsn2n

    _, y = noisy_pair(5)
    d, seen = 0.6, []
    orig = engine.Trainer._iteration

    def spy(self, *a, **k):
        out = orig(self, *a, **k)
        seen.append({n: v.detach().clone() for n, v in self.run.part.model.state_dict().items()})
        return out

    tr = zsn2n.build(init="scratch", iters=4, weight_ema=d, seed=3)
    want = {n: v.detach().clone() for n, v in tr.parts["model"].model.state_dict().items()}
    monkeypatch.setattr(engine.Trainer, "_iteration", spy)
    tr.fit(y)
    assert len(seen) == 4
    for w in seen:
        for n in want:
            want[n] = d * want[n] + (1 - d) * w[n] if want[n].is_floating_point() else w[n]
    for n, v in tr.parts["model"].model.state_dict().items():
        torch.testing.assert_close(v, want[n])
    assert not torch.equal(tr.parts["model"].model.state_dict()["conv1.weight"], seen[-1]["conv1.weight"])
    # 0 is the last iterate, as without the option
    a = zsn2n.fit(y, init="scratch", iters=3, seed=3, weight_ema=0.0)
    b = zsn2n.fit(y, init="scratch", iters=3, seed=3)
    assert torch.equal(a.output, b.output)


def test_weight_ema_resumes_exactly(tmp_path):
    from fastdenoise.methods import zsn2n

    _, y = noisy_pair(4)
    kw = dict(init="scratch", iters=4, weight_ema=0.7, seed=1)
    full = zsn2n.fit(y, **kw)
    ck = str(tmp_path / "z.pt")
    tr = zsn2n.build(checkpoint=ck, checkpoint_every=1, **kw)
    step = tr.method.step

    def crash(run, yy, t, total, seed):
        if t == 2:
            raise KeyboardInterrupt
        return step(run, yy, t, total, seed)

    tr.method.step = crash
    with pytest.raises(KeyboardInterrupt):
        tr.fit(y)
    res = zsn2n.build(checkpoint=ck, resume=True, **kw).fit(y)
    assert res.iters == 2
    assert torch.equal(res.output, full.output)


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.9"])
def test_weight_ema_rejects_bad_values(bad):
    from fastdenoise.methods import zsn2n

    with pytest.raises(ValueError, match="weight_ema"):
        zsn2n.build(init="scratch", weight_ema=bad)


def test_noise2same_cpu_fine_tune_averages_weights():
    from fastdenoise.methods import noise2same

    assert noise2same.build(init="start").weight_ema_decay() == 0.97
    assert noise2same.build(init="scratch").weight_ema_decay() == 0.0


def test_config_declares_what_the_engine_reads():
    """A method mixing in CropTraining must declare crop/batch/augment in its config: build says so."""
    from dataclasses import dataclass

    from fastdenoise.engine import CropTraining
    from fastdenoise.engine import FitConfig
    from fastdenoise.engine import Method
    from fastdenoise.engine import build

    @dataclass
    class Bare(FitConfig):
        crop: int = 16

    class Cropped(CropTraining, Method):
        name = "cropped"
        Config = Bare

        def make_model(self, in_ch, part="model"):
            return torch.nn.Conv2d(in_ch, in_ch, 3, padding=1)

    with pytest.raises(TypeError, match=r"must declare \['batch', 'augment'\]"):
        build(Cropped, device="cpu", init="scratch")
