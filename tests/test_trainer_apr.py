"""APR-RD trainer: tiny end-to-end runs (1x3x32x32, narrow BSN, a few iterations per stage)."""
import numpy as np
import pytest
import torch

from fastdenoise.methods import apr
from common import noisy_pair

TINY = {"base": 8, "head": 16, "crop": 32, "batch": 1, "device": "cpu"}


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("APR-RD's CPU defaults and exact repeats")]


_y = noisy_pair


def test_cosine_lr_and_config():
    assert apr.cosine_lr(3e-4, 0, 10) == 3e-4 and apr.cosine_lr(3e-4, 10, 10) == 0.0
    assert abs(apr.cosine_lr(3e-4, 5, 10) - 1.5e-4) < 1e-12
    cfg = apr.APRConfig()
    assert cfg.stages is None                       # the device's default:
    assert apr.build(**TINY).cfg.stages == "apr"    # the BSN alone on the CPU (module docstring)
    assert (cfg.lr, cfg.lam, cfg.s_train, cfg.s_infer, cfg.grad_through_reg) == (3e-4, 4.0, 5, None, False)
    assert apr.build(**TINY).cfg.s_infer == 0       # CPU: the BSN denoises without a blind spot
    assert apr.build(**TINY).tta_count() == apr.CPU_TTA == 4   # CPU: 4 rotations at inference
    assert apr.build(s_infer=1, **TINY).cfg.s_infer == 1
    with pytest.raises(ValueError, match="s_infer"):
        apr.build(s_infer=-1, **TINY)
    assert cfg.rd_shifts == (0, 1, 2, 3, 4, 5) and cfg.student == "1.00M" and cfg.student_init == "fresh"
    with pytest.raises(ValueError):
        apr.build(stages="rd", **TINY)              # RD alone needs a trained BSN
    with pytest.raises(ValueError):
        apr.build(stages="bsn", **TINY)


def test_single_image_apr_only_and_reinit():
    _, y = _y()
    tr = apr.build(iters=2, stages="apr", tta=1, s_infer=1, **TINY)
    a = tr.fit(y)
    assert a.output.shape == y.shape and a.iters == 2 and len(a.losses) == 2 and all(np.isfinite(a.losses))
    assert tr.run.done == ["apr"]                  # no RD stage
    assert tr.opt.param_groups[0]["lr"] == pytest.approx(apr.cosine_lr(3e-4, 1, 2))
    tr.fit(_y(1)[1])
    torch.testing.assert_close(tr.fit(y).output, a.output)
    with torch.no_grad():                          # BSN inference uses s_infer = 1
        torch.testing.assert_close(a.output, tr.model(y, s=1))


def test_reference_matches_fused_both_stages():
    _, y = _y(2)
    kw = dict(iters=2, rd_iters=2, stages="apr+rd", **TINY)
    fused = apr.fit(y, **kw)
    ref = apr.fit(y, reference=True, **kw)
    assert len(fused.losses) == 4 and fused.iters == 4
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.output, ref.output, rtol=1e-3, atol=1e-4)


def test_grad_through_reg_matches_reference():
    _, y = _y(3)
    kw = dict(iters=3, stages="apr", grad_through_reg=True, **TINY)
    fused = apr.fit(y, **kw)
    ref = apr.fit(y, reference=True, **kw)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-4, atol=1e-6)


def test_rd_alone_from_weights_and_bsn_init(tmp_path):
    _, y = _y(4)
    tr = apr.build(iters=1, stages="apr", **TINY)
    tr.fit(y)
    path = str(tmp_path / "bsn.pt")
    torch.save(tr.model.state_dict(), path)
    imgs = [y[0], _y(5, (1, 3, 24, 40))[1][0]]
    from fastdenoise.models.atbsn import BlindUNet
    from fastdenoise.models.atbsn import Student

    student = Student(3)
    student.unet = BlindUNet(3, 3, base=8, dec=16, blind=False)   # the tiny BSN's widths
    st = apr.distill(imgs, path, iters=2, student_init="bsn", student=student, **TINY)
    assert st.run.done == ["rd"] and len(st.run.losses) == 2 and st.run.t == 2
    torch.testing.assert_close(st.model.state_dict()["nin_c.weight"], tr.model.state_dict()["nin_c.weight"])  # BSN untouched
    out = st.denoise(imgs[1])
    assert out.shape == (1, 3, 24, 40) and torch.isfinite(out).all()
    # the student starts from the BSN's U-Net weights (except dec_conv1a/b); its fresh init is kept for reset
    st0 = apr.distill(imgs, path, iters=0, student_init="bsn", student=student, **TINY)
    s0, bsn = st0.parts["student"].model.state_dict(), tr.model.state_dict()
    torch.testing.assert_close(s0["unet.enc_conv1.weight"], bsn["unet.enc_conv1.weight"])
    assert not torch.equal(s0["unet.dec_conv1a.weight"], bsn["unet.dec_conv1a.weight"])
    assert not torch.equal(st0.parts["student"].init_state["unet.enc_conv1.weight"], bsn["unet.enc_conv1.weight"])


def test_dataset_mode_both_stages():
    imgs = [_y(s, (1, 3, 40, 48))[1][0] for s in range(2)] + [torch.rand(3, 20, 24)]
    tr = apr.train(imgs, iters=2, rd_iters=1, stages="apr+rd", **TINY)
    assert tr.run.done == ["apr", "rd"] and len(tr.run.losses) == 3 and tr.run.t == 1
    assert tr.denoise(imgs[0]).shape == (1, 3, 40, 48)
    assert tr.denoise(imgs[0], use_student=False).shape == (1, 3, 40, 48)


def test_denoise_api():
    import fastdenoise.api as api
    from fastdenoise.methods import available

    assert "apr" in available()
    _, y = _y(6)
    out, info = api.denoise(y[0], method="apr", iters=1, rd_iters=1, stages="apr+rd", return_info=True,
                           **TINY)
    api.clear_cache()
    assert out.shape == y[0].shape and info["iters"] == 2


def test_bsn_tiles_inference_and_teachers():
    """bsn_tile: the BSN's output (and the RD teachers) come from blended tiles; 0 = the whole input."""
    from fastdenoise.tiling import tiled

    g = torch.Generator().manual_seed(5)
    y = torch.rand(1, 3, 48, 40, generator=g)
    tr = apr.build(iters=0, stages="apr", tta=1, bsn_tile=16, s_infer=1, init="scratch", **TINY)
    out = tr.fit(y).output
    m = tr.run.parts["bsn"].model
    with torch.no_grad():
        want = tiled(lambda t: m(t, s=1), y, 16, 8)          # one window per call: the same blend
        whole = m(y, s=1)
        torch.testing.assert_close(out, want)
        assert (out - whole).abs().max() > 1e-4             # the tiles are not the whole-image pass
        # teachers through the same tiling: (J, B, C, H, W), each equal to the tiled pass at that shift
        got = tr.method.bsn_tiled(lambda t: torch.cat(m.teachers(t, (0, 2)), 1), y).unflatten(1, (2, 3))
        torch.testing.assert_close(got[:, 1], tiled(lambda t: m(t, s=2), y, 16, 8))
    tr0 = apr.build(iters=0, stages="apr", tta=1, bsn_tile=0, s_infer=1, init="scratch", **TINY)
    with torch.no_grad():
        torch.testing.assert_close(tr0.fit(y).output, tr0.run.parts["bsn"].model(y, s=1))
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="bsn_tile"):
            apr.build(bsn_tile=bad, **TINY)
