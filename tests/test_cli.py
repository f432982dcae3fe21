"""The fastdenoise command line on tiny PNGs (Nb2Nb, 1 iteration), including a bad file."""
import os

import numpy as np
import torch
import pytest

from fastdenoise import cli

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("the CLI's CPU defaults and exact repeats")]


def _png(path, seed, noisy=True):
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    x = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))[..., None].repeat(3, 2)
    if noisy:
        x = x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    iio.imwrite(path, np.floor(np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))
    return str(path)


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "p2n" in out and "Examples" in out and "denoise" in out


def test_denoise_reports_bad_file_and_continues(tmp_path, capsys):
    good = _png(tmp_path / "a.png", 0)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    clean = _png(tmp_path / "clean.png", 0, noisy=False)
    out = tmp_path / "out"
    rc = cli.main(["denoise", good, str(bad), "-o", str(out), "--method", "nb2nb", "--iters", "1",
                   "--device", "cpu", "--plot"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "bad.png" in err
    assert os.path.exists(out / "a_nb2nb.png") and os.path.exists(out / "a_nb2nb_compare.png")
    assert not list(out.glob("*tmp*"))
    rc = cli.main(["denoise", good, "-o", str(out), "--method", "nb2nb", "--iters", "1", "--device", "cpu",
                   "--clean", clean, "--overwrite"])
    assert rc == 0 and "PSNR" in capsys.readouterr().out


def test_denoise_missing_weights_fails_cleanly(tmp_path, capsys):
    """A missing weights file is reported per input, nothing is written, and the exit code says so."""
    good = _png(tmp_path / "a.png", 1)
    rc = cli.main(["denoise", good, "-o", str(tmp_path), "--method", "p2n", "--device", "cpu",
                   "--weights", str(tmp_path / "missing.pt"), "--iters", "1"])
    assert rc == 1 and "missing.pt" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "a_p2n.png")


def test_train_checkpoint_and_resume(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for s in range(2):
        _png(data / f"{s}.png", s)
    ck = str(tmp_path / "nb.pt")
    base = ["train", "--method", "nb2nb", "--data", str(data), "--out", ck, "--crop", "32", "--batch", "1",
            "--device", "cpu", "--quiet"]
    assert cli.main(base + ["--iters", "1"]) == 0 and os.path.exists(ck)
    assert cli.main(base + ["--iters", "2", "--resume"]) == 0
    assert "2 iterations (1 in this run" in capsys.readouterr().out


def test_eval_prints_table_and_json(capsys):
    """eval: noisy row + method row on a tiny crop (1 iteration); --json is machine readable."""
    import json

    args = ["eval", "--method", "nb2nb", "--images", "astronaut", "--crop", "32", "--iters", "1", "--device", "cpu"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| astronaut | gaussian:25 | noisy |" in out and "| astronaut | gaussian:25 | nb2nb | 1 |" in out
    assert cli.main(args + ["--json", "--reference"]) == 0
    data = json.loads(capsys.readouterr().out)
    methods = [r["method"] for r in data["rows"]]
    assert methods[0] == "noisy" and "nb2nb" in methods
    row = data["rows"][methods.index("nb2nb")]
    assert row["ref_psnr"] is not None and abs(row["delta"]) < 0.05


# ------------------------------------------------------------------ real inputs (issue table rows + bad data)
def _fast(monkeypatch):
    """Tiny fits: ZS-N2N for 2 iterations unless a test asks for another method."""
    return ["--method", "zsn2n", "--iters", "2", "--device", "cpu"]


def _snapshot(folder):
    return {os.path.join(d, f): (open(os.path.join(d, f), "rb").read(), os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, fs in os.walk(folder) for f in fs}


def test_folder_walk_mirror_resume_and_inputs_untouched(tmp_path, capsys, monkeypatch):
    """A folder input (table row 3): walked (-r), outputs mirror the tree, the output folder inside the input
    folder is not walked, a re-run skips finished outputs (a killed run resumes), --overwrite redoes them,
    and no input byte or mtime changes."""
    data = tmp_path / "in"
    (data / "a" / "b").mkdir(parents=True)
    _png(data / "top.png", 0)
    _png(data / "a" / "mid.png", 1)
    _png(data / "a" / "b" / "deep.png", 2)
    (data / "notes.txt").write_text("not an image, not listed")
    before = _snapshot(data)
    out = data / "out"                       # inside the input folder
    rc = cli.main(["denoise", str(data), "-o", str(out)] + _fast(monkeypatch))
    assert rc == 0 and sorted(os.listdir(out)) == ["top_zsn2n.png"]     # not recursive
    rc = cli.main(["denoise", str(data), "-r", "-o", str(out)] + _fast(monkeypatch))
    text = capsys.readouterr().out
    assert rc == 0 and "2 denoised, 1 skipped (already done), 0 failed of 3 file(s)" in text
    assert os.path.exists(out / "a" / "mid_zsn2n.png") and os.path.exists(out / "a" / "b" / "deep_zsn2n.png")
    os.remove(out / "a" / "mid_zsn2n.png")                               # as if killed before it
    assert cli.main(["denoise", str(data), "-r", "-o", str(out)] + _fast(monkeypatch)) == 0
    assert "1 denoised, 2 skipped" in capsys.readouterr().out
    assert cli.main(["denoise", str(data), "-r", "-o", str(out), "--overwrite"] + _fast(monkeypatch)) == 0
    assert "3 denoised, 0 skipped" in capsys.readouterr().out
    after = {k: v for k, v in _snapshot(data).items() if not k.startswith(str(out))}
    assert after == before
    assert cli.main(["denoise", str(tmp_path / "nothing_here"), "-o", str(out)] + _fast(monkeypatch)) == 1


def test_bad_files_each_named_others_still_run(tmp_path, capsys, monkeypatch):
    """All-NaN .npy (table row 6), Inf, empty, too small, undecodable, unsupported dtype: one line each
    naming the file and the problem, nothing written for them, the good file still done, exit code 1."""
    data = tmp_path / "in"
    data.mkdir()
    _png(data / "good.png", 0)
    np.save(data / "nan.npy", np.full((16, 16), np.nan, np.float32))
    np.save(data / "inf.npy", np.where(np.eye(16) > 0, np.inf, 0.5).astype(np.float32))
    np.save(data / "empty.npy", np.zeros((0, 16), np.float32))
    np.save(data / "tiny.npy", np.zeros((1, 9), np.float32))
    np.save(data / "cplx.npy", np.zeros((8, 8), np.complex64))
    (data / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    rc = cli.main(["denoise", str(data), "-o", str(out)] + _fast(monkeypatch))
    cap = capsys.readouterr()
    assert rc == 1
    lines = [ln for ln in cap.err.splitlines() if "FAILED" in ln]
    want = {"nan.npy": "256 NaN", "inf.npy": "16 infinite", "empty.npy": "empty", "tiny.npy": "too small",
            "cplx.npy": "unsupported dtype", "broken.png": "cannot read"}
    assert len(lines) == len(want)
    for name, problem in want.items():
        assert any(name in ln and problem in ln for ln in lines), (name, lines)
    assert os.listdir(out) == ["good_zsn2n.png"]
    assert "1 denoised, 0 skipped (already done), 6 failed of 7 file(s)" in cap.err


def test_outputs_follow_the_umask(tmp_path, monkeypatch):
    """Table row 7: outputs are 0644 under umask 022 (not the temporary file's 0600)."""
    good = _png(tmp_path / "a.png", 0)
    old = os.umask(0o022)
    try:
        assert cli.main(["denoise", good, "-o", str(tmp_path / "o")] + _fast(monkeypatch)) == 0
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "o" / "a_zsn2n.png").st_mode & 0o777 == 0o644


def test_16bit_gray_tiff_keeps_uint16(tmp_path):
    """Table row 2: a 16-bit grayscale TIFF comes back 16-bit grayscale (P2N through its gray handling)."""
    import tifffile

    src = tmp_path / "g16.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 65536, (40, 44), dtype=np.uint16))
    assert cli.main(["denoise", str(src), "-o", str(tmp_path / "o"), "--iters", "1", "--device", "cpu"]) == 0
    out = tifffile.imread(tmp_path / "o" / "g16_p2n.tif")
    assert out.dtype == np.uint16 and out.shape == (40, 44)


def test_tiff_stack_one_model_same_shape_and_dtype(tmp_path, capsys, monkeypatch):
    """Table row 4: a 16-bit TIFF of 5 slices of 64x64 is a stack (the guess is printed), fitted with one
    model, written with the same shape and dtype; --axes overrides the guess."""
    import tifffile

    raw = np.random.default_rng(0).integers(0, 65536, (5, 64, 64), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", raw)
    assert cli.main(["denoise", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "o")] + _fast(monkeypatch)) == 0
    text = capsys.readouterr().out
    assert "axes ZYX (guessed, --axes to override): 5 slice(s) of 64x64" in text and "one model" in text
    out = tifffile.imread(tmp_path / "o" / "stack_zsn2n.tif")
    assert out.dtype == np.uint16 and out.shape == raw.shape
    assert not np.array_equal(out, raw)
    np.save(tmp_path / "v.npy", raw.transpose(1, 2, 0).astype(np.float32) / 65535)      # (Y, X, Z)
    assert cli.main(["denoise", str(tmp_path / "v.npy"), "-o", str(tmp_path / "o"), "--axes", "YXZ"]
                    + _fast(monkeypatch)) == 0
    assert "axes YXZ (given): 5 slice(s) of 64x64" in capsys.readouterr().out
    assert np.load(tmp_path / "o" / "v_zsn2n.npy").shape == (64, 64, 5)


def test_rgba_png_with_p2n_keeps_alpha(tmp_path):
    """Table row 5: an RGBA PNG with P2N (RGB-pretrained) denoises the colour and keeps alpha unchanged."""
    import imageio.v3 as iio

    rgba = (np.random.default_rng(0).random((32, 36, 4)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "x.png", rgba)
    assert cli.main(["denoise", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--iters", "1",
                     "--device", "cpu"]) == 0
    out = iio.imread(tmp_path / "o" / "x_p2n.png")
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])


def test_large_image_on_a_budget_prints_the_plan(tmp_path, capsys, monkeypatch):
    """Table row 1 in small: an image over the --max-memory budget is fitted on crops and denoised in tiles
    (the 12-megapixel measurement is in docs/INPUTS.md)."""
    import imageio.v3 as iio

    from fastdenoise.engine import Trainer

    monkeypatch.setattr(Trainer, "SMALL_PIXELS", 0)
    big = tmp_path / "big.png"
    iio.imwrite(big, (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8))
    rc = cli.main(["denoise", str(big), "-o", str(tmp_path / "o"), "--max-memory", "2M", "--iters", "1",
                   "--device", "cpu", "--method", "zsn2n"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fitted on 1 crop(s) of 32x32 per iteration (a whole-image step exceeds the 2 MiB budget)" in text
    assert "denoised in 160x160 tiles" in text


def test_train_walks_subfolders_and_stack_slices(tmp_path, capsys):
    """train -r: images in sub-folders too; a stack contributes each of its slices."""
    import tifffile

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    _png(data / "a.png", 0)
    tifffile.imwrite(data / "sub" / "s.tif", (np.random.default_rng(0).random((3, 32, 32, 3)) * 255).astype(np.uint8))
    base = ["train", "--method", "zsn2n", "--data", str(data), "--out", str(tmp_path / "ck.pt"), "--crop", "16",
            "--batch", "1", "--device", "cpu", "--quiet", "--iters", "1"]
    assert cli.main(base) == 0 and "on 1 images" in capsys.readouterr().out
    assert cli.main(base + ["-r"]) == 0 and "on 4 images" in capsys.readouterr().out


def test_batch_fits_same_size_images_together(tmp_path, capsys):
    """--batch K (P2N): same-size images are fitted K at a time (fit_many), the others alone; every output is
    written once, in the input's shape and dtype, and matches one-by-one denoising in quality; a corrupt
    file among them is named and the rest still run."""
    import imageio.v3 as iio

    from fastdenoise.io import load_sample
    from fastdenoise.metrics import psnr

    clean = np.asarray(load_sample("astronaut", crop=48), np.float32)
    rng = np.random.default_rng(0)
    data = tmp_path / "in"
    data.mkdir()
    for i in range(3):
        noisy = np.clip(clean + 25 / 255 * rng.standard_normal(clean.shape), 0, 1)
        iio.imwrite(data / f"s{i}.png", np.floor(noisy * 255 + 0.5).astype(np.uint8))
    _png(data / "other.png", 3)                                        # 32x32: its own group
    (data / "zbad.png").write_text("not an image")
    args = ["--iters", "3", "--device", "cpu", "--seed", "1"]
    rc = cli.main(["denoise", str(data), "-o", str(tmp_path / "b"), "--batch", "2"] + args)
    io = capsys.readouterr()
    assert rc == 1 and "zbad.png" in io.err and "4 denoised, 0 skipped (already done), 1 failed of 5" in io.err
    assert io.out.count("fitted with 1 other(s) at once") == 2 and io.out.count("alone") == 2
    assert cli.main(["denoise", str(data), "-o", str(tmp_path / "b"), "--batch", "2"] + args) == 1
    assert "4 skipped" in capsys.readouterr().err                       # resumable as without --batch
    cli.main(["denoise", str(data), "-o", str(tmp_path / "one")] + args)
    for i in range(3):
        b = iio.imread(tmp_path / "b" / f"s{i}_p2n.png")
        o = iio.imread(tmp_path / "one" / f"s{i}_p2n.png")
        assert b.shape == o.shape == clean.shape and b.dtype == np.uint8
        assert abs(float(psnr(b, clean)[0]) - float(psnr(o, clean)[0])) < 0.3
    assert cli.main(["denoise", str(data), "-o", str(tmp_path / "x"), "--batch", "0"]) == 2


def test_denoise_many_api():
    """denoise_many: one batched fit for P2N; other methods (and mismatched inputs) as denoise would."""
    from fastdenoise import api

    rng = np.random.default_rng(2)
    imgs = [rng.random((24, 24, 3)).astype(np.float32) for _ in range(2)]
    outs, info = api.denoise_many(imgs, method="p2n", iters=2, device="cpu", return_info=True)
    assert info["batched"] and len(outs) == 2 and all(o.shape == (24, 24, 3) and o.dtype == np.float32 for o in outs)
    outs, info = api.denoise_many(imgs, method="zsn2n", iters=2, device="cpu", return_info=True)
    assert not info["batched"]
    np.testing.assert_array_equal(outs[1], api.denoise(imgs[1], method="zsn2n", iters=2, device="cpu"))
    with pytest.raises(ValueError, match="share shape"):
        api.denoise_many([imgs[0], imgs[1][:20]], iters=1, device="cpu")
    with pytest.raises(ValueError, match="non-empty list"):
        api.denoise_many([], device="cpu")


@pytest.mark.parametrize("method", ["noise2same", "zsn2n"])
def test_train_cli_and_api_train_the_same_weights(tmp_path, method):
    """``fastdenoise train --method M`` and ``M.train()`` are one engine entry (Trainer.train_images): the same
    crops, standardisation and augmentation, so the same weights for the same seed."""
    from fastdenoise.engine import load_state
    from fastdenoise.io import read_stack
    data = tmp_path / "data"
    data.mkdir()
    for s in range(2):
        _png(data / f"{s}.png", s)
    ck = str(tmp_path / "m.pt")
    assert cli.main(["train", "--method", method, "--data", str(data), "--out", ck, "--iters", "2", "--seed", "3",
                     "--device", "cpu", "--quiet", "--init", "scratch"]) == 0
    imgs = [torch.from_numpy(read_stack(str(data / f"{s}.png"))[0][0].transpose(2, 0, 1).copy()) for s in range(2)]
    mod = __import__(f"fastdenoise.methods.{method}", fromlist=["train"])
    tr = mod.train(imgs, iters=2, seed=3, device="cpu", init="scratch")
    saved = load_state(ck)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(saved[k], v.float()), k


def test_denoise_start_option(tmp_path, capsys):
    """``--start camera`` fits P2N from its camera start and says so; another method's --start is an error."""
    src = _png(tmp_path / "n.png", 0)
    assert cli.main(["denoise", src, "-o", str(tmp_path / "o"), "--iters", "1", "--start", "camera"]) == 0
    assert "unet_n2n_camera.pt" in capsys.readouterr().out
    assert cli.main(["denoise", src, "-o", str(tmp_path / "x"), "--method", "nb2nb", "--start", "camera"]) == 2
    assert "--start picks one of P2N's shipped starts" in capsys.readouterr().err


def test_denoise_pd_option(tmp_path, capsys):
    """``--pd 2`` fits the 4 pixel-shuffled sub-images and says so (with --batch too: one by one); bad values
    are refused; ``--blend`` is passed on."""
    src = _png(tmp_path / "n.png", 0)
    assert cli.main(["denoise", src, "-o", str(tmp_path / "o"), "--method", "nb2nb", "--iters", "1",
                     "--pd", "2"]) == 0
    assert "on its 4 pixel-shuffled sub-images (pd 2)" in capsys.readouterr().out
    assert cli.main(["denoise", src, _png(tmp_path / "m.png", 1), "-o", str(tmp_path / "x"), "--pd", "2",
                     "--batch", "2", "--iters", "1"]) == 0
    assert cli.main(["denoise", src, "-o", str(tmp_path / "x"), "--pd", "0"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["denoise", src, "-o", str(tmp_path / "x"), "--pd", "two"])
    assert cli.main(["denoise", src, "-o", str(tmp_path / "y"), "--iters", "1", "--blend", "0"]) == 0
    assert cli.main(["denoise", src, "-o", str(tmp_path / "y"), "--blend", "2"]) == 2
