"""P2N trainer, UNetN2N and the denoise API: tiny end-to-end runs (1x3x32x32, a few iterations)."""
import numpy as np
import pytest
import torch

from fastdenoise.models.unet_n2n import UNetN2N
from common import noisy_pair


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("P2N's CPU defaults and exact repeats")]


def tiny(c=3):
    """A small conv net: engine behaviour (resume, re-init, reference vs fused) does not need the U-Net."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(c, 8, 3, padding=1), torch.nn.LeakyReLU(0.1),
                               torch.nn.Conv2d(8, c, 3, padding=1))


_y = noisy_pair


def test_unet_n2n_param_count_and_shapes():
    net = UNetN2N(3)
    assert sum(p.numel() for p in net.parameters()) == 991_203
    assert all(isinstance(m, torch.nn.Conv2d) for m in net.children())
    with torch.no_grad():
        assert net(torch.rand(1, 3, 37, 50)).shape == (1, 3, 37, 50)   # reflect-pad to 64 and crop back
        assert net(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)       # tiny input: replicate pad
    assert UNetN2N(1, 2)(torch.rand(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_p2n_single_image_scratch_and_ema():
    from fastdenoise.methods import p2n

    x, y = _y()
    res = p2n.fit(y, init="scratch", iters=3, device="cpu", ema=0.9, clean=x, log_every=1)
    assert res.output.shape == y.shape and res.iters == 3 and len(res.losses) == 3
    assert all(np.isfinite(res.losses)) and res.ema_output.shape == y.shape
    assert len(res.psnr) == 3


def test_p2n_pretrained_init_and_inplace_reinit():
    from fastdenoise.methods import p2n

    tr = p2n.build(iters=2, device="cpu", model=tiny())
    ptrs = [p.data_ptr() for p in tr.model.parameters()]
    _, y1 = _y(1)
    _, y2 = _y(2)
    a = tr.fit(y1).output
    tr.fit(y2)
    b = tr.fit(y1).output
    assert torch.equal(a, b)                                        # reset restores weights + optimiser
    assert ptrs == [p.data_ptr() for p in tr.model.parameters()]    # in place: same storage
    z = tr.fit(y1, iters=0).output                                  # 0 iterations = initial network
    with torch.no_grad():
        assert torch.allclose(z, tr.model(y1))


def test_p2n_reference_matches_fused():
    from fastdenoise.methods import p2n

    _, y = _y(3)
    fused = p2n.fit(y, trainer=p2n.build(model=tiny(), iters=3, device="cpu"))
    ref = p2n.fit(y, trainer=p2n.build(model=tiny(), iters=3, device="cpu", reference=True))
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.output, ref.output, rtol=1e-3, atol=1e-4)


def test_p2n_checkpoint_resume(tmp_path):
    from fastdenoise.methods import p2n

    _, y = _y(4)
    full = p2n.fit(y, trainer=p2n.build(model=tiny(), iters=4, device="cpu"))
    ck = str(tmp_path / "p2n.pt")
    tr = p2n.build(model=tiny(), iters=4, device="cpu", checkpoint=ck, checkpoint_every=2)
    step = tr.method.step

    def crash_at_2(trainer, yy, t, total, seed):
        if t == 2:
            raise KeyboardInterrupt
        return step(trainer, yy, t, total, seed)

    tr.method.step = crash_at_2
    with pytest.raises(KeyboardInterrupt):
        tr.fit(y)
    res = p2n.fit(y, trainer=p2n.build(model=tiny(), iters=4, device="cpu", checkpoint=ck, resume=True))
    assert res.iters == 2 and len(res.losses) == 4
    np.testing.assert_allclose(res.losses, full.losses, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(res.output, full.output)


def test_p2n_dataset_mode():
    from fastdenoise.methods import p2n

    imgs = [_y(s, (1, 3, 40, 48))[1][0] for s in range(2)] + [torch.rand(3, 20, 24)]
    tr = p2n.train(imgs, iters=2, crop=32, batch=2, trainer=p2n.build(model=tiny(), device="cpu"))
    assert tr.run.t == 2 and len(tr.run.losses) == 2
    assert tr.denoise(imgs[0]).shape == (1, 3, 40, 48)


def test_denoise_api_kinds_and_registry():
    import fastdenoise.api as api

    x, y = _y(5)
    img = y[0].permute(1, 2, 0).clamp(0, 1).numpy()
    u8 = api.denoise((img * 255).round().astype(np.uint8), iters=1, device="cpu")
    assert u8.dtype == np.uint8 and u8.shape == (32, 32, 3)
    gray, info = api.denoise(img[..., 0], iters=1, device="cpu", clean=x[0, 0].numpy(), return_info=True)
    assert gray.shape == (32, 32) and gray.dtype == np.float32 and info["iters"] == 1
    t = api.denoise(y[0], iters=1, device="cpu")
    assert isinstance(t, torch.Tensor) and t.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="unknown method"):
        api.denoise(img, method="bogus", device="cpu")


def test_p2n_fit_many_equals_single_fit_and_models_are_independent():
    """Throughput mode: K=1 reproduces Trainer.fit; with K=2 model 0 does not see image 1."""
    from fastdenoise.methods import p2n

    _, y = _y()
    tr = p2n.build(device="cpu", iters=2)
    single = tr.fit(y).best  # the output EMA (P2N's default ema=0.9)
    many = p2n.fit_many(y, trainer=tr)
    assert many.shape == y.shape
    torch.testing.assert_close(many, single, atol=2e-5, rtol=1e-4)
    tr_plain = p2n.build(device="cpu", iters=2, ema=None)
    res = tr_plain.fit(y)
    assert res.ema_output is None
    torch.testing.assert_close(p2n.fit_many(y, trainer=tr_plain), res.output, atol=2e-5, rtol=1e-4)
    a = p2n.fit_many(torch.cat([y, y.flip(-1)]), trainer=tr)
    b = p2n.fit_many(torch.cat([y, torch.rand_like(y)]), trainer=tr)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    # the trainer's own weights are untouched (fit_many works on stacked copies)
    torch.testing.assert_close(tr.fit(y).best, single)
    with pytest.raises(ValueError, match="images must be"):
        p2n.fit_many(y[0], trainer=tr)


def test_p2n_dataset_mode_keeps_no_output_ema():
    """The output EMA is a single-image feature: dataset mode sees different crops every iteration."""
    from fastdenoise.methods import p2n

    _, y = _y()
    tr = p2n.train([y[0]], crop=16, batch=2, iters=2, device="cpu", init="scratch")
    assert tr.cfg.ema == 0.9 and tr.ema is None
