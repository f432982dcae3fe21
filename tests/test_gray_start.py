"""Grayscale images and the shipped RGB starts: ``rgb_state_to_gray`` folds an RGB network into the exactly
equivalent 1-channel network, and a grayscale trainer with no grayscale start begins from that fold."""
import os

import pytest
import torch

from fastdenoise.methods import get_builder
from fastdenoise.engine import load_state
from fastdenoise.engine import rgb_state_to_gray

pytestmark = pytest.mark.cpu_only("grayscale starts checked bit for bit on the CPU")

# every method's 1-channel network begins from its grayscale start, else its RGB start folded (P2N ships a
# grayscale start; gray="replicate" folds its RGB start)
FOLDED = ("nb2nb", "noise2same", "blind2grad", "zsn2n", "apr")


def _models(name, init="scratch", **kw):
    t3 = get_builder(name)(in_ch=3, init=init, seed=1, **kw)
    t1 = get_builder(name)(in_ch=1, init="scratch", seed=2, **kw)
    return t3, t1


@pytest.mark.parametrize("name", FOLDED)
def test_fold_equals_rgb_net_on_replicated_gray(name):
    kw = {"stages": "apr+rd"} if name == "apr" else {}
    t3, t1 = _models(name, init="start", **kw)          # the shipped RGB starts: trained, realistic weights
    g = torch.Generator().manual_seed(0)
    for part in t3.parts:
        m3, m1 = t3.parts[part].model.float().eval(), t1.parts[part].model.float().eval()
        m1.load_state_dict(rgb_state_to_gray(m3.state_dict(), m1.state_dict()))
        x = torch.rand(2, 1, 40, 36, generator=g)       # not a multiple of the nets' padding
        z3, z1 = x.repeat(1, 3, 1, 1), x
        if name == "blind2grad":                          # the masked-input view: image, then visible mask
            for m in (m3, m1):      # exact up to the output sigmoid (averaged logits), deterministic standout
                m.net.out_activation = "none"
                for mod in m.modules():
                    if hasattr(mod, "mc_dropout"):
                        mod.mc_dropout = False
            vis = (torch.rand(2, 1, 40, 36, generator=g) > 0.25).float()
            z3, z1 = torch.cat([z3, vis], 1), torch.cat([z1, vis], 1)
        with torch.no_grad():
            want = m3(z3).mean(1, keepdim=True)
            got = m1(z1)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_fold_rejects_another_architecture():
    t3, _ = _models("nb2nb")
    _, t1 = _models("zsn2n")
    with pytest.raises(ValueError, match="different layers"):
        rgb_state_to_gray(t3.parts["model"].model.state_dict(), t1.parts["model"].model.state_dict())


@pytest.mark.parametrize("name", FOLDED)
def test_grayscale_trainer_starts_from_the_folded_rgb_start(name):
    kw = {"stages": "apr+rd"} if name == "apr" else {}
    tr = get_builder(name)(in_ch=1, init="start", seed=0, **kw)
    m = tr.method
    if m.start_path(1) is not None:                       # a trained grayscale start wins over the fold
        assert tr.method.init_from[m.parts()[0]] == m.start_path(1)
        return
    rgb = m.start_path(3)
    assert rgb is not None and os.path.exists(rgb)
    assert m.started and all(tr.method.init_from[p] == rgb for p in tr.parts)
    for part, p in tr.parts.items():
        want = rgb_state_to_gray(load_state(rgb, part), p.model.state_dict())
        for k, v in p.model.state_dict().items():
            torch.testing.assert_close(v.float(), want[k].float())
    # and a scratch trainer does not
    assert not get_builder(name)(in_ch=1, init="scratch", seed=0, **kw).method.started


def test_p2n_grayscale_start_or_the_fold():
    """P2N: its grayscale start (gray="native", the default), or the RGB start folded (gray="replicate")."""
    from fastdenoise.methods import p2n

    native = p2n.build(in_ch=1, device="cpu")
    assert native.init_from["model"] == p2n.GRAY_WEIGHTS and native.model.in_ch == 1
    folded = p2n.build(in_ch=1, device="cpu", gray="replicate")
    assert folded.init_from["model"] == p2n.DEFAULT_WEIGHTS and folded.model.in_ch == 1
    want = rgb_state_to_gray(load_state(p2n.DEFAULT_WEIGHTS), folded.model.state_dict())
    for k, v in folded.model.state_dict().items():
        torch.testing.assert_close(v.float(), want[k].float())


def test_other_channel_counts_meet_the_start_as_rgb_triples_and_single_channels():
    """A start takes 1 or 3 channels: building for 5 from the start says so, and denoise() fits RGB triples and
    single channels, each from the start; init='scratch' takes all 5 channels in one network."""
    from fastdenoise.api import trainers_for

    with pytest.raises(ValueError, match="1- or 3-channel"):
        get_builder("zsn2n")(in_ch=5, device="cpu")
    groups = trainers_for("zsn2n", 5, device="cpu")
    assert [(i, k) for i, k, _ in groups] == [(0, 3), (3, 1), (4, 1)]
    assert all(tr.method.started for _, _, tr in groups)
    (one,) = trainers_for("zsn2n", 5, device="cpu", init="scratch")
    assert one[1] == 5 and not one[2].method.started


@pytest.mark.parametrize("start", ["gaussian", "camera"])
def test_p2n_named_starts(start):
    """``start=`` picks one of P2N's shipped starts, RGB and grayscale; a bad name says what is known."""
    from fastdenoise.methods import p2n

    rgb, gray = (os.path.join(p2n.WEIGHTS_DIR, f) for f in p2n.STARTS[start])
    assert os.path.exists(rgb) and os.path.exists(gray)
    assert p2n.build(device="cpu", start=start).init_from["model"] == rgb
    assert p2n.build(in_ch=1, device="cpu", start=start).init_from["model"] == gray
    folded = p2n.build(in_ch=1, device="cpu", start=start, gray="replicate")
    assert folded.init_from["model"] == rgb


def test_p2n_start_names_are_checked():
    from fastdenoise.methods import p2n

    with pytest.raises(ValueError, match="start must be one of"):
        p2n.build(device="cpu", start="sidd")
    assert p2n.build(device="cpu").init_from["model"] == p2n.DEFAULT_WEIGHTS
