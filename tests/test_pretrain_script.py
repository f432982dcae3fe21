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
    from fastdenoise.methods.engine import Trainer

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
            "--out", out]
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
