"""scripts/pretrain.py end to end on the smallest network (ZS-N2N): a weight-EMA run ships the average, and so
does ``--export`` of a run stopped mid-stage."""
import os
import shutil

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def pretrain(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "scripts"))
    import pretrain

    return pretrain


def test_weight_ema_run_and_export_of_a_stopped_run(pretrain, tmp_path, capsys, monkeypatch):
    from fastdenoise.engine import Trainer

    out = str(tmp_path / "zs.pt")
    saved = []
    real_save = Trainer.save_checkpoint

    def save(self, path):                    # keep the first (mid-stage) checkpoint aside
        real_save(self, path)
        if not saved:
            saved.append(shutil.copy(path, path + ".mid"))

    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    args = ["--method", "zsn2n", "--iters", "4", "--crop", "32", "--batch", "2", "--dead-leaves", "0",
            "--checkpoint-every", "2", "--log-every", "2", "--weight-ema", "0.5", "--init", "start", "--lr", "1e-5",
            "--accept", "noisy", "--out", out]
    assert pretrain.main(args) == 0
    done = torch.load(out, weights_only=False)
    assert done["meta"]["iters"] == 4 and saved
    mid = torch.load(saved[0], weights_only=False)
    assert mid["run"]["t"] == 2 and mid["run"]["wema"] is not None
    wema = {k: v.half() for k, v in mid["run"]["wema"].items()}
    live = {k: v.half() for k, v in mid["parts"]["model"]["model"].items()}
    assert any(not torch.equal(wema[k], live[k]) for k in wema)   # the average is not the live network
    os.replace(saved[0], out + ".ckpt")      # the run "stopped" at iteration 2
    os.remove(out)
    assert pretrain.main([*args, "--export"]) == 0
    assert "the weight EMA of the stopped stage (2 iterations)" in capsys.readouterr().out
    exported = torch.load(out, weights_only=False)
    assert exported["meta"]["exported"] and exported["meta"]["iters"] == 2
    for k, v in exported["parts"]["model"]["model"].items():
        assert torch.equal(v, wema[k]), k     # the export ships the average, not the live network


def test_weights_option_begins_from_a_weights_file(pretrain, tmp_path, capsys):
    """``--weights FILE`` begins from that file (not the shipped start), and bad values say so."""
    first, second = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    base = ["--method", "zsn2n", "--crop", "32", "--batch", "2", "--dead-leaves", "0", "--log-every", "1"]
    assert pretrain.main([*base, "--iters", "0", "--init", "scratch", "--seed", "3", "--out", first]) == 0
    assert pretrain.main([*base, "--iters", "0", "--weights", first, "--out", second]) == 0
    a = torch.load(first, weights_only=False)["parts"]["model"]["model"]
    b = torch.load(second, weights_only=False)["parts"]["model"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)   # the scratch init of seed 3, not the shipped start
    capsys.readouterr()
    with pytest.raises(SystemExit):
        pretrain.main([*base, "--weights", str(tmp_path / "missing.pt"), "--out", second])
    assert "--weights: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pretrain.main([*base, "--channels", "1", "--init", "rgb", "--weights", first, "--out", second])
    assert "exclude each other" in capsys.readouterr().err


def test_a_run_that_does_not_beat_the_shipped_start_is_rejected(pretrain, tmp_path, capsys):
    """The default ``--accept start``: a result below the shipped start's held-out PSNR is not written to OUT."""
    out = str(tmp_path / "zs.pt")
    args = ["--method", "zsn2n", "--iters", "2", "--crop", "32", "--batch", "2", "--dead-leaves", "0",
            "--log-every", "1", "--init", "scratch", "--out", out]
    assert pretrain.main(args) == 1
    assert not os.path.exists(out) and os.path.exists(out + ".rejected")
    assert "is not above the shipped start" in capsys.readouterr().out
