"""torchrun with 2 CPU processes (gloo): DDP over two ranks == one process over the same global batch; the
sharded folder run writes the same bytes as the single-process run; rank-0 checkpoints resume."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastdenoise import distributed as D
from fastdenoise.methods import get_builder
from fastdenoise.engine import crop_sampler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("gloo process groups on the CPU")]

WORKER = '''
import sys
import torch
from fastdenoise import distributed as D
from fastdenoise.methods import get_builder
from fastdenoise.engine import crop_sampler

rank, size, _ = D.init("cpu")
torch.set_num_threads(1)
imgs = [torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(3)]
tr = get_builder("zsn2n")(in_ch=3, device="cpu", seed=0)
D.ddp(tr)
tr.fit_dataset(crop_sampler(imgs, 32, 1, D.rank_seed(0, rank)), iters=6)
if rank == 0:
    torch.save(tr.model.state_dict(), sys.argv[1])
D.finish()
'''


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    return env


def _torchrun(args, cwd, n=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] + args
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300, check=False)


def test_ddp_two_ranks_equal_one_process_global_batch(tmp_path):
    """ZS-N2N (no random draws in its step, loss a mean over the batch): 6 DDP steps on 2 ranks x 1 crop give
    the weights of 6 steps of one process on the same 2 crops (rank 0's then rank 1's)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "ddp.pt"
    r = _torchrun([str(script), str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = torch.load(out)
    imgs = [torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    tr = get_builder("zsn2n")(in_ch=3, device="cpu", seed=0)
    ranks = [crop_sampler(imgs, 32, 1, D.rank_seed(0, r)) for r in range(2)]
    assert not torch.equal(ranks[0](0), ranks[1](0))          # rank-distinct crops
    tr.fit_dataset(lambda t: torch.cat([s(t) for s in ranks]), iters=6)
    init = get_builder("zsn2n")(in_ch=3, device="cpu", seed=0).model.state_dict()
    for k, v in tr.model.state_dict().items():
        assert not torch.equal(v, init[k]) or v.dim() == 0    # training moved the weights
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5)


def _png(path, seed, side=24):
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    iio.imwrite(path, (rng.random((side, side + 4, 3)) * 255).astype(np.uint8))


def test_sharded_folder_run_is_byte_identical_and_resumes(tmp_path):
    data = tmp_path / "in"
    (data / "sub").mkdir(parents=True)
    for i in range(3):
        _png(data / f"im{i}.png", i)
    _png(data / "sub" / "deep.png", 9)
    (data / "bad.png").write_text("not an image")
    args = ["denoise", str(data), "-r", "--method", "zsn2n", "--iters", "3", "--device", "cpu"]
    one = subprocess.run([sys.executable, "-m", "fastdenoise"] + args + ["-o", str(tmp_path / "one")],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert one.returncode == 1 and "bad.png" in one.stderr
    (tmp_path / "two").mkdir()
    r = _torchrun(["-m", "fastdenoise"] + args + ["-o", str(tmp_path / "two")], tmp_path)
    assert r.returncode != 0 and "bad.png" in r.stderr                    # the failure reaches the exit code
    summary = [ln for ln in (r.stdout + r.stderr).splitlines() if "denoised," in ln]
    assert summary == ["4 denoised, 0 skipped (already done), 1 failed of 5 file(s) on 2 ranks"], summary
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "one")
                   for d, _, fs in os.walk(tmp_path / "one") for f in fs)
    assert files == ["im0_zsn2n.png", "im1_zsn2n.png", "im2_zsn2n.png", os.path.join("sub", "deep_zsn2n.png")]
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    # a killed run: one output missing; the re-run redoes only that one
    os.remove(tmp_path / "two" / "im1_zsn2n.png")
    r = _torchrun(["-m", "fastdenoise"] + args + ["-o", str(tmp_path / "two")], tmp_path)
    assert "1 denoised, 3 skipped (already done), 1 failed" in r.stdout + r.stderr
    assert (tmp_path / "two" / "im1_zsn2n.png").read_bytes() == (tmp_path / "one" / "im1_zsn2n.png").read_bytes()


def test_torchrun_train_rank0_checkpoint_resumes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        _png(data / f"{i}.png", i, side=40)
    ck = tmp_path / "ck.pt"
    base = ["-m", "fastdenoise", "train", "--method", "zsn2n", "--data", str(data), "--out", str(ck), "--crop", "32",
            "--batch", "1", "--device", "cpu", "--quiet", "--checkpoint-every", "1"]
    r = _torchrun(base + ["--iters", "2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "x 2 ranks (global batch 2)" in r.stdout and r.stdout.count("trained zsn2n") == 1
    r = _torchrun(base + ["--iters", "4", "--resume"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 iterations (2 in this run" in r.stdout
    assert sorted(os.listdir(tmp_path)) == ["ck.pt", "data"]               # no temporary files left
