"""Nb2Nb trainer: tiny end-to-end runs with the fused sub-sampler and loss."""
import numpy as np
import pytest
import torch
from common import noisy_pair


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("Nb2Nb's CPU defaults and exact repeats")]


def tiny(c=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(c, 8, 3, padding=1), torch.nn.LeakyReLU(0.2),
                               torch.nn.Conv2d(8, c, 3, padding=1))


_y = noisy_pair


def test_nb2nb_single_image_unet():
    from fastdenoise.methods import nb2nb

    x, y = _y()
    res = nb2nb.fit(y, iters=2, device="cpu", clean=x, ema=0.9, log_every=1)
    assert res.output.shape == y.shape and res.iters == 2 and all(np.isfinite(res.losses))
    assert res.ema_output is not None and len(res.psnr) == 2


def test_nb2nb_default_iters_per_device():
    from fastdenoise.methods import nb2nb

    tr = nb2nb.build(device="cpu", model=tiny())
    assert tr.total_iters(None) == nb2nb.CPU_ITERS == 400
    assert nb2nb.Nb2Nb(nb2nb.Nb2NbConfig()).defaults(torch.device("cuda"), True)["iters"] == nb2nb.CUDA_ITERS
    assert (tr.cfg.lr, tr.cfg.init_scale, tr.cfg.ema) == (nb2nb.CPU_LR, nb2nb.CPU_INIT_SCALE, 0.98)
    assert nb2nb.build(device="cpu", model=tiny(), lr=2e-4).cfg.lr == 2e-4


def test_nb2nb_init_scale():
    from fastdenoise.methods import nb2nb

    def conv_std(scale):
        net = nb2nb.build(device="cpu", init="scratch", init_scale=scale).model   # the random init
        return float(next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).weight.std())

    assert conv_std(0.3) == pytest.approx(3 * conv_std(0.1), rel=1e-5)
    assert conv_std(None) == pytest.approx(conv_std(0.3), rel=1e-6)  # the CPU default   # same seed, same draws
    for bad in (0, -1.0, float("nan"), float("inf"), "0.3", True):
        with pytest.raises(ValueError, match="init_scale"):
            nb2nb.build(device="cpu", model=tiny(), init_scale=bad)


def test_nb2nb_loss_lambda_ramp(monkeypatch):
    import fastdenoise.functional as F
    from fastdenoise.methods import nb2nb

    seen = []
    real = F.nb2nb_loss
    monkeypatch.setattr(F, "nb2nb_loss", lambda *a, **k: (seen.append(a[4]), real(*a, **k))[1])
    nb2nb.fit(_y()[1], trainer=nb2nb.build(model=tiny(), iters=4, device="cpu"))
    assert seen == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_nb2nb_reference_matches_fused():
    from fastdenoise.methods import nb2nb

    _, y = _y(1)
    fused = nb2nb.fit(y, trainer=nb2nb.build(model=tiny(), iters=3, device="cpu"))
    ref = nb2nb.fit(y, trainer=nb2nb.build(model=tiny(), iters=3, device="cpu", reference=True))
    assert ref.iters == 3
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.output, ref.output, rtol=1e-3, atol=1e-4)


def test_nb2nb_checkpoint_resume(tmp_path):
    from fastdenoise.methods import nb2nb

    imgs = [_y(s, (1, 3, 36, 40))[1][0] for s in range(3)]
    full = nb2nb.train(imgs, iters=4, crop=16, batch=2, trainer=nb2nb.build(model=tiny(), device="cpu"))
    ck = str(tmp_path / "nb.pt")
    first = nb2nb.build(model=tiny(), device="cpu", checkpoint=ck, checkpoint_every=2)
    step = first.method.step

    def crash_at_2(trainer, yy, t, total, seed):  # an interrupted 4-iteration run
        if t == 2:
            raise KeyboardInterrupt
        return step(trainer, yy, t, total, seed)

    first.method.step = crash_at_2
    with pytest.raises(KeyboardInterrupt):
        nb2nb.train(imgs, iters=4, crop=16, batch=2, trainer=first)
    tr = nb2nb.train(imgs, iters=4, crop=16, batch=2,
                     trainer=nb2nb.build(model=tiny(), device="cpu", checkpoint=ck, resume=True))
    assert tr.run.t == 4
    np.testing.assert_allclose(tr.run.losses, full.run.losses, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tr.denoise(imgs[0]), full.denoise(imgs[0]))
    assert tr.denoise(imgs[1]).shape == (1, 3, 36, 40)
