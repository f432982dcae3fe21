"""scripts/gpu_check.py end to end on the CPU (``--dry-run``: tiny shapes, a few tests per file), so that the
one GPU window's script is itself tested: every step runs and is recorded, the JSON is complete after each
step, test counts are parsed, and a time-out is a failure."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.cpu_only("runs the GPU-check script in its CPU dry-run mode")


def test_parse_counts_reads_the_closing_line_even_after_an_interrupt():
    text = "....\n!!!!!! KeyboardInterrupt !!!!!!\n= 3 passed, 1 failed, 2 skipped, 1 error in 9.1s ="
    assert gpu_check.parse_counts(text) == {"passed": 3, "failed": 1, "skipped": 2, "errors": 1}
    assert gpu_check.parse_counts("no summary") == {}


def test_a_timed_out_test_file_is_a_failure(monkeypatch, tmp_path):
    """A file that runs past its time is stopped with SIGINT, its partial counts kept, status 'timeout'."""
    slow = tmp_path / "test_slow.py"
    slow.write_text("import time\n\ndef test_fast():\n    pass\n\ndef test_slow():\n    time.sleep(60)\n")
    monkeypatch.setattr(gpu_check, "ROOT", str(tmp_path))
    (tmp_path / "tests").mkdir()
    slow.rename(tmp_path / "tests" / "test_slow.py")
    r = gpu_check._one_test_file("test_slow.py", 8, dry=False)
    assert r["status"] == "timeout", r["log"][-500:]
    assert r["counts"].get("passed") == 1


def test_dry_run_records_every_step(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FASTDENOISE_TEST_DEVICE"}
    p = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=540)
    path = tmp_path / "gpu-check-dry-run-cpu.json"
    assert path.exists(), p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads(path.read_text())
    steps = res["steps"]
    assert list(steps) == gpu_check.STEPS
    assert all(steps[s]["status"] in ("ok", "skipped") for s in gpu_check.STEPS), \
        {s: steps[s].get("status") for s in steps}
    assert steps["op_tests"]["counts"].get("passed", 0) > 0
    assert (tmp_path / "gpu-check-dry-run-cpu-tests.log").exists()
    methods = {(r["method"], r["config"]) for r in steps["methods"]["rows"] if "psnr" in r}
    assert methods == {(m, c) for m in gpu_check.METHODS for c in ("graphs", "eager", "reference")}
    graphed = [r for r in steps["methods"]["rows"] if r["config"] == "graphs"]
    assert all(r["graphs_captured"] > 0 for r in graphed), graphed       # the stand-in captured every method
    assert all(abs(d) <= 0.1 for d in steps["methods"]["graphs_minus_eager_db"].values())
    assert p.returncode == 0, p.stdout[-2000:]
