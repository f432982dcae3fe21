"""benchmarks.quality --partial: the rows of an interrupted run become a table marked partial; nothing runs."""
import dataclasses
import json
import os

import pytest

from fastdenoise.evaluate import Row


def test_partial_renders_rows_without_computing(tmp_path, monkeypatch):
    from benchmarks import quality

    monkeypatch.setattr(quality, "HERE", str(tmp_path))
    monkeypatch.setattr(quality, "evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    monkeypatch.setattr(quality, "environment", lambda: {"device": "cpu (test)", "torch": "x", "date": "d"})
    os.makedirs(tmp_path / "results")
    rows = [Row("astronaut", "gaussian:25", "noisy", 20.83, 0.40),
            Row("astronaut", "gaussian:25", "p2n", 29.61, 0.86, iters=50, seconds=57.7, ref_psnr=29.61)]
    with open(tmp_path / "results" / "tq-cpu.partial.jsonl", "w") as f:
        f.writelines(json.dumps(dataclasses.asdict(r)) + "\n" for r in rows)
    out = tmp_path / "tq.md"
    assert quality.main(["--partial", "--images", "astronaut", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**PARTIAL** (2 of about 32 rows" in text and "| astronaut | gaussian:25 | p2n | 50 | 29.61 |" in text
    assert "`python -m benchmarks.quality --images astronaut --out" in text and text.count("--resume") == 2
    saved = json.loads((tmp_path / "results" / "tq-cpu.json").read_text())
    assert len(saved["rows"]) == 2
    # without partial rows it is an error naming the file
    (tmp_path / "results" / "tq-cpu.partial.jsonl").unlink()
    with pytest.raises(SystemExit):
        quality.main(["--partial", "--out", str(out)])
