"""Scoring on noisy/clean pairs (``fastdenoise.pairs``, ``fastdenoise eval --pairs``): layouts, errors, rows."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from fastdenoise import cli
from fastdenoise.pairs import evaluate_pairs
from fastdenoise.pairs import find_pairs
from fastdenoise.pairs import load_pair
from fastdenoise.pairs import summarize

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.cpu_only("CPU fits of tiny images")]


def _png(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8)).save(path)


def _pair(seed=0, size=32, sigma=0.1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.4 + 0.3 * xx * yy], -1)
    return np.clip(clean + sigma * rng.standard_normal(clean.shape), 0, 1), clean


def _folders(root, names=("a", "b"), clean_dir="clean"):
    for i, n in enumerate(names):
        noisy, clean = _pair(i)
        _png(os.path.join(root, "noisy", n + ".png"), noisy)
        _png(os.path.join(root, clean_dir, n + ".png"), clean)


def test_folder_layout_pairs_by_name(tmp_path):
    _folders(str(tmp_path), names=("b", "a", "sub/c"))
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a", "b", "sub/c"]
    assert all(p.noisy.endswith(p.name.split("/")[-1] + ".png") and "clean" in p.clean for p in pairs)
    assert [p.name for p in find_pairs(tmp_path, recursive=False)] == ["a", "b"]


@pytest.mark.parametrize("clean_dir", ["gt", "GT", "target"])
def test_folder_layout_clean_folder_names(tmp_path, clean_dir):
    _folders(str(tmp_path), clean_dir=clean_dir)
    assert len(find_pairs(tmp_path)) == 2


def test_flat_layout_role_words_and_sidd_names(tmp_path):
    n, c = _pair()
    for stem_n, stem_c in [("x_noisy", "x_clean"), ("y-NOISY", "y-gt"), ("0001_NOISY_SRGB_010", "0001_GT_SRGB_010")]:
        _png(str(tmp_path / f"{stem_n}.png"), n)
        _png(str(tmp_path / f"{stem_c}.png"), c)
    _png(str(tmp_path / "notes_noisyish.png"), n)            # no role word on its own: not a pair file
    pairs = find_pairs(tmp_path)
    assert sorted(p.name for p in pairs) == ["0001_SRGB_010", "x", "y"]
    for p in pairs:
        assert "oisy" in os.path.basename(p.noisy) or "OISY" in os.path.basename(p.noisy)


def test_unpaired_duplicate_and_missing_are_named(tmp_path):
    _folders(str(tmp_path))
    n, _ = _pair()
    _png(str(tmp_path / "noisy" / "lonely.png"), n)
    with pytest.raises(ValueError, match=r"1 noisy file\(s\) without a clean partner.*lonely.png"):
        find_pairs(tmp_path)
    os.remove(tmp_path / "noisy" / "lonely.png")
    _png(str(tmp_path / "clean" / "extra.png"), n)
    with pytest.raises(ValueError, match=r"clean file\(s\) without a noisy partner.*extra.png"):
        find_pairs(tmp_path)
    os.remove(tmp_path / "clean" / "extra.png")
    _png(str(tmp_path / "noisy" / "a.jpg"), n)
    with pytest.raises(ValueError, match="more than one file.*'a'"):
        find_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match="pairs folder does not exist"):
        find_pairs(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no noisy/clean image pairs"):
        find_pairs(empty)
    os.makedirs(tmp_path / "gt")
    with pytest.raises(ValueError, match="2 clean folders"):
        find_pairs(tmp_path)


def test_mismatched_shapes_and_unreadable_files_are_named(tmp_path):
    _folders(str(tmp_path))
    n, _ = _pair(size=40)
    _png(str(tmp_path / "clean" / "a.png"), n)
    pairs = find_pairs(tmp_path)
    with pytest.raises(ValueError, match=r"pair 'a'.*\(32, 32, 3\).*\(40, 40, 3\)"):
        load_pair(pairs[0])
    with open(tmp_path / "clean" / "b.png", "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ValueError, match="cannot read image.*b.png"):
        load_pair(pairs[1])


def test_rows_means_and_resume(tmp_path):
    _folders(str(tmp_path))
    seen = []
    rows = evaluate_pairs(tmp_path, ["zsn2n"], iters=1, baselines=("noisy",), progress=None, on_row=seen.append)
    assert [(r.image, r.method) for r in rows] == [("a", "noisy"), ("a", "zsn2n"), ("b", "noisy"), ("b", "zsn2n")]
    assert len(seen) == 4 and rows[1].iters == 1 and rows[1].options == "iters=1"
    assert {"pd", "blend", "noise"} <= set(rows[1].info)
    means = {d["method"]: d for d in summarize(rows)}
    assert means["zsn2n"]["images"] == 2 and "gain" in means["zsn2n"]
    assert means["noisy"]["psnr"] == pytest.approx(np.mean([r.psnr for r in rows if r.method == "noisy"]), abs=1e-3)
    again = evaluate_pairs(tmp_path, ["zsn2n"], iters=1, baselines=("noisy",), progress=None, done=rows,
                           on_row=lambda r: pytest.fail("a done row was recomputed"))
    assert [r.psnr for r in again] == [r.psnr for r in rows]
    with pytest.raises(ValueError, match="unknown method"):
        evaluate_pairs(tmp_path, ["nope"], progress=None)


def test_curve_records_the_estimate_along_the_fit(tmp_path):
    _folders(str(tmp_path), names=("a",))
    rows = evaluate_pairs(tmp_path, ["p2n"], iters=3, baselines=(), curve=(1, 3), options={"pd": 1},
                          progress=None)
    assert [t for t, _ in rows[0].info["curve"]] == [1, 3]


def test_cli_eval_pairs_json_and_errors(tmp_path, capsys):
    _folders(str(tmp_path / "d"))
    out = tmp_path / "res.json"
    assert cli.main(["eval", "--pairs", str(tmp_path / "d"), "--method", "zsn2n", "--iters", "1",
                     "--baselines", "noisy", "--json-out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| zsn2n |" in text and "better than noisy" in text
    data = json.loads(out.read_text())
    assert {"environment", "pairs", "rows", "means"} <= set(data)
    assert len(data["rows"]) == 4 and data["pairs"].endswith("d")
    n, _ = _pair()
    _png(str(tmp_path / "d" / "noisy" / "z.png"), n)
    assert cli.main(["eval", "--pairs", str(tmp_path / "d"), "--method", "zsn2n"]) == 2
    assert "without a clean partner" in capsys.readouterr().err


def test_real_noise_benchmark_runs_resumes_and_skips_without_data(tmp_path, capsys):
    from benchmarks import real_noise

    assert real_noise.main(["--data", str(tmp_path / "absent")]) == 0
    assert "nothing to measure" in capsys.readouterr().out
    _folders(str(tmp_path / "d"), names=("a",))
    out = str(tmp_path / "rows.jsonl")
    args = ["--data", str(tmp_path / "d"), "--out", out, "--methods", "zsn2n", "--threads", "1"]
    assert real_noise.main(args + ["--phases", "base,start,clean,variants,low", "--variants", "zsn2n:iters=0,pd=1",
                                   "--low-iters", "0", "--clean-iters", "0"]) == 0
    rows = real_noise.load_rows(out)
    assert {(r["phase"], r["method"]) for r in rows} >= {("base", "noisy"), ("base", "wavelet"), ("start", "zsn2n"),
                                                          ("clean", "zsn2n"), ("variants", "zsn2n"), ("low", "noisy"),
                                                          ("low", "zsn2n")}
    assert all(r["env"]["threads"] == 1 and r["env"]["date"] for r in rows)
    n = len(rows)
    assert real_noise.main(args + ["--phases", "base,start"]) == 0 and len(real_noise.load_rows(out)) == n
    assert real_noise.main(args + ["--phases", "noise"]) == 0
    noise = real_noise.load_rows(out)[-1]
    assert noise["phase"] == "noise" and noise["info"]["true"]["std255"] > 0 and "correlation" in noise["info"]["estimate"]
    assert real_noise.main(args + ["--phases", "curve", "--curve-iters", "0,1,2"]) == 0
    assert [t for t, _ in real_noise.load_rows(out)[-1]["info"]["curve"]] == [1, 2]
    capsys.readouterr()
    assert real_noise.main(["--out", out, "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "| start | zsn2n | iters=0 | 1 |" in text and "The ground truth denoised" in text
    assert "| zsn2n | iters=0 | 1 |" in text.split("The ground truth denoised")[1]
    assert "| zsn2n | iters=2 | a |" in text.split("Curves")[1] and "The noise of the 1 blocks" in text
