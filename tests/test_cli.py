"""The fastdenoise command line on tiny PNGs (Nb2Nb, 1 iteration), including a bad file."""
import os

import numpy as np
import pytest

from fastdenoise import cli


pytestmark = pytest.mark.usefixtures("one_thread")


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
