"""`make gpu-check`: what this project needs to know from a GPU, in one command of at most 8 minutes.

On one H100/H200 with torch, Triton, pytest and scikit-image preinstalled and no package registry, run
from the source tree (``PYTHONPATH=.``), in order of value:

1. ``op_tests``: the CUDA tests of the fused ops (tests/test_<op>.py, test_normal_exact.py, test_rng.py,
   test_loss_grad_handoff.py), one pytest per file, run in parallel (the cold Triton compile is CPU work),
   each under ``timeout -s INT`` so that a time-out still prints pytest's summary; a time-out is a failure;
2. ``op_bench``: every fused op forward + backward at 8x3x1024x1024 and 4x3x256x256, fused (Triton) and
   reference (torch), median of CUDA-event timings, beside the modeled time of the traffic model;
3. ``methods``: every method fitted for a few iterations to a noisy 256x256 crop of skimage's astronaut
   (Gaussian sigma 25) with CUDA graphs on, with them off, and in the reference configuration: PSNR and
   time of each (graphs on and off must reach the same PSNR: the on-device proof of the graph path);
4. ``p2n_latency``: P2N, 100 iterations on one 256x256 RGB image, cold (first fit) and warm;
5. ``fit_many``: ``p2n.fit_many`` throughput, 8 images at once;
6. ``compile_check``: the compile check (``python -m tools.gpucheck --subset ci``) with this machine's Triton.

The C++ extension is built beside them in a temporary folder (``cpp_build``: does it build against this
torch?); nothing above uses it. Every step has a budget and the whole run one (``--budget``, default 450 s);
a step that would start too late is recorded as skipped. The JSON ``gpu-check-<device>.json`` is rewritten
after every step (atomically), so a kill or an exception keeps what was measured, into ``--out`` (default
``$FASTDENOISE_GPU_CHECK_DIR``, else ``$OUT``, else ``benchmarks/results``); the test logs go beside it in
one file. Exit status 1 when a test failed or timed out, or a step raised.

``--dry-run`` runs the same steps on the CPU with tiny shapes and a few tests per file (the Triton
interpreter), so that CI checks the script itself.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OP_TESTS = ["test_p2n.py", "test_neighbor.py", "test_apr.py", "test_noise2same.py", "test_blind2grad.py",
            "test_zsn2n.py", "test_blindspot.py", "test_recharge.py", "test_normal_exact.py", "test_rng.py",
            "test_loss_grad_handoff.py"]
DRY_TESTS = ["test_p2n.py", "test_neighbor.py", "test_rng.py"]   # --dry-run: a few tests of these files
METHODS = ["p2n", "nb2nb", "noise2same", "apr", "blind2grad", "zsn2n"]
# --dry-run: small networks and cheap inference, so that the CPU runs every method in seconds
DRY_OVERRIDES = {"noise2same": {"base": 8, "init": "scratch"},
                 "apr": {"base": 8, "head": 16, "crop": 32, "init": "scratch", "tta": 1},
                 "blind2grad": {"base": 8, "n_masks": 2, "n_samples": 2, "infer_batch": 2, "init": "scratch"}}
STEPS = ["op_tests", "op_bench", "methods", "p2n_latency", "fit_many", "compile_check"]
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


class Check:
    """The run's state: budget, output paths and the JSON written after every step."""

    def __init__(self, args):
        self.args, self.t0 = args, time.perf_counter()
        self.dry = args.dry_run
        self.budget = args.budget
        self.out_dir = args.out or os.environ.get("FASTDENOISE_GPU_CHECK_DIR") or os.environ.get("OUT") or \
            os.path.join(ROOT, "benchmarks", "results")
        os.makedirs(self.out_dir, exist_ok=True)
        self.res: dict = {"tool": "scripts/gpu_check.py", "dry_run": self.dry, "budget_s": self.budget,
                          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "python": platform.python_version(), "steps": {s: {"status": "pending"} for s in STEPS}}
        self.path = os.path.join(self.out_dir, "gpu-check-pending.json")
        self.log = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()

    def name_outputs(self, device: str) -> None:
        tag = "dry-run-cpu" if self.dry else re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
        old, self.path = self.path, os.path.join(self.out_dir, f"gpu-check-{tag}.json")
        if os.path.exists(old) and old != self.path:
            os.remove(old)
        self.log = os.path.join(self.out_dir, f"gpu-check-{tag}-tests.log")

    def save(self) -> None:
        self.res["seconds"] = round(self.elapsed(), 1)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.res, f, indent=1)
        os.replace(tmp, self.path)

    def step(self, name: str, budget: float, fn) -> None:
        """Run ``fn(budget)`` as step ``name`` unless too little time is left; record and save. A dry run
        (tiny shapes on a CPU that may be busy) gets three times each step's budget."""
        budget = min(budget * (3 if self.dry else 1), self.left() - 5)
        if budget < 5:
            self.res["steps"][name] = {"status": "skipped", "reason": f"total budget ({self.budget:.0f} s) spent"}
            self.save()
            return
        t = time.perf_counter()
        self.res["steps"][name] = {"status": "running", "budget_s": round(budget)}
        self.save()
        try:
            out = fn(budget)
            status = out.pop("status", "ok") if isinstance(out, dict) else "ok"
            self.res["steps"][name] = {"status": status, **(out if isinstance(out, dict) else {"rows": out})}
        except Exception as e:  # noqa: BLE001 - a failing step is a result; the next steps still run
            self.res["steps"][name] = {"status": "error", "error": repr(e)[:500],
                                       "traceback": traceback.format_exc()[-3000:]}
        self.res["steps"][name]["seconds"] = round(time.perf_counter() - t, 1)
        self.save()
        print(f"gpu_check: {name}: {self.res['steps'][name]['status']} "
              f"({self.res['steps'][name]['seconds']} s, {self.elapsed():.0f} s in)", flush=True)


# ---------------------------------------------------------------------------------------------- steps
def _test_env(dry: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    env.pop("FASTDENOISE_REQUIRE_EXT", None)     # the CUDA tests never use the C++ extension
    if dry:
        env.update(FASTDENOISE_TEST_DEVICE="cpu", TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    else:
        env["FASTDENOISE_TEST_DEVICE"] = "cuda"
        env.pop("TRITON_INTERPRET", None)       # the Triton 3.6 interpreter breaks with numpy >= 2.4
    return env


def parse_counts(text: str) -> dict:
    """pytest's closing counts (``3 passed, 1 failed, 2 skipped in 4.0s``), from the last line that has any."""
    for line in reversed(text.strip().splitlines()):
        found = _COUNT.findall(line)
        if found:
            counts: dict = {}
            for n, k in found:
                k = "errors" if k.startswith("error") else k
                counts[k] = counts.get(k, 0) + int(n)
            return counts
    return {}


def _one_test_file(name: str, seconds: float, dry: bool) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/{name}"]
    if dry and name not in ("test_normal_exact.py", "test_rng.py"):
        cmd += ["-k", "invalid or law"]
    if shutil.which("timeout"):   # SIGINT: pytest stops and still prints its summary
        cmd = ["timeout", "-s", "INT", "-k", "20", str(int(seconds))] + cmd
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=_test_env(dry), capture_output=True, text=True,
                           timeout=seconds + 40)
        rc, text = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, text = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    counts = parse_counts(text)
    timed_out = rc in (124, 137) or (rc == 2 and "KeyboardInterrupt" in text)
    status = "timeout" if timed_out else "ok" if rc == 0 else "failed" if rc in (1, 5) and counts else "error"
    if rc == 5:
        status = "no tests"
    return {"file": name, "rc": rc, "status": status, "counts": counts, "seconds": round(time.perf_counter() - t, 1),
            "log": text}


def step_op_tests(ck: Check, budget: float) -> dict:
    files = DRY_TESTS if ck.dry else OP_TESTS
    workers = max(1, min(len(files), (os.cpu_count() or 2) // (1 if ck.dry else 2)))
    if ck.dry:
        workers = min(workers, 2)
    per_file = budget - 10 if workers >= len(files) else (budget - 10) / -(-len(files) // workers)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda f: _one_test_file(f, max(10.0, per_file), ck.dry), files))
    with open(ck.log, "w") as f:
        for r in results:
            f.write(f"===== tests/{r['file']}: rc {r['rc']} ({r['status']}), {r['seconds']} s\n{r['log']}\n")
    total: dict = {}
    for r in results:
        for k, v in r["counts"].items():
            total[k] = total.get(k, 0) + v
        r["tail"] = r.pop("log")[-1500:]
    bad = [r["file"] for r in results if r["status"] != "ok"]
    return {"status": "failed" if bad else "ok", "counts": total, "bad_files": bad, "workers": workers,
            "log": os.path.basename(ck.log), "files": results}


def _time(fn, device: str, warmup: int = 2, iters: int = 10) -> float:
    """Median time of ``fn`` in microseconds (CUDA events on CUDA, wall clock on the CPU)."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def step_op_bench(ck: Check, budget: float, device: str) -> dict:
    import torch

    from tools.hostwork import fused_cases
    from tools.hostwork import grad_targets

    modeled = {}
    path = os.path.join(ROOT, "benchmarks", "results", "traffic-model.json")
    if os.path.exists(path):
        with open(path) as f:
            modeled = {(r["op"], r["shape"]): r for r in json.load(f)["rows"]}
    shapes = [(1, 3, 16, 16)] if ck.dry else [(8, 3, 1024, 1024), (4, 3, 256, 256)]
    fused = "triton" if device == "cuda" else None
    rows, t_end = [], time.perf_counter() + budget
    for shape in shapes:
        for be in (fused, "torch"):
            for name, (mk, call) in fused_cases(device, shape, backend=be, fill=torch.rand).items():
                row = {"op": name, "shape": "x".join(map(str, shape)), "backend": be or "default"}
                if time.perf_counter() > t_end:
                    rows.append({**row, "skipped": "budget"})
                    continue
                if be == "torch" and name == "rdc_renoise(pixel)" and shape[-1] > 256:
                    rows.append({**row, "skipped": "host-drawn normals for 25M pixels take minutes"})
                    continue
                inputs = mk()

                def fn():
                    for t in inputs:
                        t.grad = None
                    outs, grads = grad_targets(call(*inputs))
                    if outs:
                        torch.autograd.backward(outs, grads)

                try:
                    row["us"] = round(_time(fn, device, 1 if ck.dry else 2, 2 if ck.dry else 10), 1)
                except Exception as e:  # noqa: BLE001 - a failing op is a result
                    row["error"] = repr(e)[:500]
                m = modeled.get((name, row["shape"]))
                if m:
                    key = "ref" if be == "torch" else "fused"
                    row["modeled_us_H100"], row["modeled_us_H200"] = m[f"{key}_us_H100"], m[f"{key}_us_H200"]
                rows.append(row)
                del inputs
    errors = [r["op"] for r in rows if "error" in r]
    return {"status": "failed" if errors else "ok", "rows": rows}


def _noisy_astronaut(size: int, device: str):
    import torch

    from fastdenoise.noise import add_gaussian

    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut()[:size, 160:160 + size].copy()).permute(2, 0, 1).float() / 255
        source = "skimage astronaut crop"
    except ImportError:   # a smooth synthetic image
        g = torch.Generator().manual_seed(0)
        img = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(size, size),
                                              mode="bilinear", align_corners=False)[0]
        source = "synthetic (scikit-image missing)"
    clean = img[None].contiguous()
    return clean.to(device), add_gaussian(clean, 25, seed=1).to(device), source


def _psnr(a, b) -> float:
    import torch

    mse = torch.mean((a.float().clamp(0, 1) - b.float()) ** 2).item()
    return round(10 * __import__("math").log10(1.0 / max(mse, 1e-20)), 3)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _dry_graphs(on: bool):
    """--dry-run: graphs captured by the CPU stand-in of make_graphed_callables (tests/graph_standin.py), so the
    graph path of every method runs and must reach the eager PSNR."""
    import contextlib

    if not on:
        return contextlib.nullcontext()
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from graph_standin import CountingCapture

    from fastdenoise.engine import graphs

    return graphs.capture_with(CountingCapture())


def step_methods(ck: Check, budget: float, device: str) -> dict:
    from fastdenoise.methods import get_builder

    size, iters = (32, 2) if ck.dry else (256, 30)
    clean, noisy, source = _noisy_astronaut(size, device)
    out = {"image": f"{source}, {size}x{size} RGB, gaussian sigma 25", "iters": iters,
           "noisy_psnr": _psnr(noisy, clean), "rows": []}
    t_end = time.perf_counter() + budget
    configs = [("graphs", {"cuda_graph": True}), ("eager", {"cuda_graph": False}), ("reference", {"reference": True})]
    for m in METHODS:
        for tag, kw in configs:
            row = {"method": m, "config": tag}
            if time.perf_counter() > t_end:
                out["rows"].append({**row, "skipped": "budget"})
                continue
            try:
                extra = DRY_OVERRIDES.get(m, {}) if ck.dry else {}
                tr = get_builder(m)(device=device, progress=False, iters=iters, **kw, **extra)
                _sync(device)
                t = time.perf_counter()
                with _dry_graphs(ck.dry and tag == "graphs"):
                    res = tr.fit(noisy, seed=0)
                _sync(device)
                row.update(seconds=round(time.perf_counter() - t, 2), iters=res.iters, psnr=_psnr(res.output, clean))
                net = tr.parts[tr.stages[0].part].net
                row["graphs_captured"] = len(net.graphs)
                row["graph_failed"] = bool(net.failed)
            except Exception as e:  # noqa: BLE001 - one method failing is a result
                row["error"] = repr(e)[:500]
            out["rows"].append(row)
            print(f"  {m:10s} {tag:9s} {json.dumps({k: v for k, v in row.items() if k not in ('method', 'config')})}",
                  flush=True)
    by = {(r["method"], r["config"]): r for r in out["rows"]}
    diffs = {}
    for m in METHODS:
        a, b = by.get((m, "graphs"), {}), by.get((m, "eager"), {})
        if "psnr" in a and "psnr" in b:
            diffs[m] = round(a["psnr"] - b["psnr"], 3)
    out["graphs_minus_eager_db"] = diffs
    bad = [r for r in out["rows"] if "error" in r] + [m for m, d in diffs.items() if abs(d) > 0.1]
    out["status"] = "failed" if bad else "ok"
    return out


def step_p2n_latency(ck: Check, budget: float, device: str) -> dict:
    from fastdenoise.methods import p2n

    size, iters = (32, 2) if ck.dry else (256, 100)
    clean, noisy, _ = _noisy_astronaut(size, device)
    out = {"image": f"1x3x{size}x{size}", "iters": iters}
    t_end = time.perf_counter() + budget
    for name, kw in (("fused", {}), ("reference", {"reference": True})):
        if time.perf_counter() > t_end:
            out[name] = {"skipped": "budget"}
            continue
        tr = p2n.build(device=device, iters=iters, progress=False, **kw)
        t = time.perf_counter()
        res = tr.fit(noisy, seed=0)
        _sync(device)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(3 if name == "fused" else 1):
            if time.perf_counter() > t_end:
                break
            t = time.perf_counter()
            tr.fit(noisy, seed=0)
            _sync(device)
            warm.append(time.perf_counter() - t)
        out[name] = {"cold_s": round(cold, 3), "warm_s": round(statistics.median(warm), 3) if warm else None,
                     "psnr": _psnr(res.output, clean)}
    return out


def step_fit_many(ck: Check, budget: float, device: str) -> dict:
    import torch

    from fastdenoise.methods import p2n

    k, size, iters = (2, 32, 2) if ck.dry else (8, 256, 100)
    _, noisy, _ = _noisy_astronaut(size, device)
    ys = torch.cat([torch.roll(noisy, shifts=8 * i, dims=-1) for i in range(k)])
    tr = p2n.build(device=device, iters=iters, progress=False)
    out = {"images": k, "image": f"3x{size}x{size}", "iters": iters}
    for name in ("cold_s", "warm_s"):
        t = time.perf_counter()
        p2n.fit_many(ys, trainer=tr, iters=iters)
        _sync(device)
        out[name] = round(time.perf_counter() - t, 3)
    out["images_per_s"] = round(k / out["warm_s"], 2)
    return out


def step_compile_check(ck: Check, budget: float) -> dict:
    if ck.dry:
        return {"status": "skipped", "reason": "dry run: tests/test_gpucheck.py runs the compile check in CI"}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = ROOT
    cmd = [sys.executable, "-m", "tools.gpucheck", "--subset", "ci", "--arch", "sm_90",
           "--jobs", str(min(8, os.cpu_count() or 2))]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget)
        return {"status": "ok" if p.returncode == 0 else "failed", "rc": p.returncode,
                "tail": (p.stdout + p.stderr)[-3000:]}
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}


def start_cpp_build(ck: Check):
    """The C++ extension built against this torch in a temporary folder, beside the other steps."""
    if ck.dry:
        return None
    tmp = tempfile.mkdtemp(prefix="fastdenoise-build-")
    env = dict(os.environ, MAX_JOBS="4")
    cmd = [sys.executable, "setup.py", "build_ext", "--build-lib", tmp, "--build-temp", os.path.join(tmp, "t")]
    log = open(os.path.join(tmp, "log"), "w+")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log, time.perf_counter()


def finish_cpp_build(ck: Check, handle) -> None:
    if handle is None:
        ck.res["cpp_build"] = {"status": "skipped", "reason": "dry run"}
        return
    proc, log, t = handle
    try:
        rc = proc.wait(timeout=max(1.0, min(60.0, ck.left())))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = 124
    log.seek(0)
    ck.res["cpp_build"] = {"status": "ok" if rc == 0 else "failed", "rc": rc,
                           "seconds": round(time.perf_counter() - t, 1), "tail": log.read()[-2000:]}
    ck.save()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="the whole script on the CPU with tiny shapes")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run (default 450; a dry run 1200)")
    ap.add_argument("--out", default=None, help="folder for the JSON and the test log")
    args = ap.parse_args(argv)
    if args.budget is None:
        args.budget = float(os.environ.get("FASTDENOISE_GPU_CHECK_BUDGET_S", 1200 if args.dry_run else 450))
    ck = Check(args)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    import torch
    import triton

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry-run on a CPU machine)")
        return 1
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    ck.res.update(torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda, device=name)
    ck.name_outputs(name)
    ck.save()
    build = start_cpp_build(ck)
    ck.step("op_tests", 200, lambda b: step_op_tests(ck, b))
    ck.step("op_bench", 90, lambda b: step_op_bench(ck, b, device))
    ck.step("methods", 100, lambda b: step_methods(ck, b, device))
    ck.step("p2n_latency", 40, lambda b: step_p2n_latency(ck, b, device))
    ck.step("fit_many", 25, lambda b: step_fit_many(ck, b, device))
    ck.step("compile_check", 60, lambda b: step_compile_check(ck, b))
    finish_cpp_build(ck, build)
    steps = ck.res["steps"]
    tests = steps["op_tests"].get("counts", {})
    print(f"gpu_check: {name}, torch {torch.__version__}, triton {triton.__version__}: tests {tests}, "
          f"{ck.res['seconds']} s -> {ck.path}")
    for s in STEPS:
        print(f"  {s:14s} {steps[s]['status']}")
    bad = [s for s in STEPS if steps[s]["status"] in ("failed", "error", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
