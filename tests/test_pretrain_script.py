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


def test_camera_noise_in_the_training_mix(pretrain):
    """A fourth ``--noise-mix`` weight gives crops with camera noise (a random camera per crop, seeded by the
    iteration): the same t gives the same batch, three weights leave camera noise out."""
    from fastdenoise.noise import add_camera

    clean = [torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    cam_only = pretrain.noisy_sampler(clean, 32, 3, 7, (0, 0, 0, 1))
    a, b = cam_only(5), cam_only(5)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, cam_only(6))
    assert float(a.min()) >= 0 and float(a.max()) <= 1          # the pipeline's sRGB output is clipped
    gauss_only = pretrain.noisy_sampler(clean, 32, 3, 7, (1, 0, 0))
    assert float(gauss_only(5).min()) < 0 or float(gauss_only(5).max()) > 1   # unclipped Gaussian noise
    # a camera crop is add_camera of the same crop of the sampler's clean stream (its seed drawn per crop)
    crops = pretrain.crop_sampler(clean, 32, 3, 7, augment=True)(5)
    noiseless = [add_camera(crops[i], 0, random=True, noiseless=True) for i in range(3)]
    for i in range(3):     # the noise-free rendering is close to the crop, the camera noise is not
        err = float((a[i] - crops[i]).pow(2).mean())
        assert err > 1e-5 and err > 0.5 * float((noiseless[i] - crops[i]).pow(2).mean())


def test_pretrain_rejects_a_bad_noise_mix(pretrain, tmp_path, capsys):
    base = ["--method", "zsn2n", "--iters", "0", "--dead-leaves", "0", "--out", str(tmp_path / "z.pt")]
    for mix in ("1,1", "1,1,1,1,1", "0,0,0", "1,-1,1"):
        with pytest.raises(SystemExit):
            pretrain.main([*base, "--noise-mix", mix])
        assert "--noise-mix" in capsys.readouterr().err


def test_p2n_pretraining_camera_pairs(monkeypatch):
    """pretrain_p2n's camera patches: noisy and noise-free renderings of the same random camera."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "scripts"))
    import pretrain_p2n

    from fastdenoise.noise import add_camera

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y, t = pretrain_p2n.camera_pairs(x, 11)
    assert y.dtype == t.dtype == torch.float32 and y.shape == t.shape == x.shape
    assert torch.equal(t, add_camera(x, 11, random=True, noiseless=True).float())
    assert not torch.equal(y, t)
    g = pretrain_p2n.camera_pairs(x[:, :1], 11)[0]
    assert g.shape == (2, 1, 32, 32)
