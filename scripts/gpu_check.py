"""`make gpu-check`: everything this project needs to know from a GPU, in one run of at most ~8 minutes.

On one H100/H200 with torch and Triton preinstalled and no package registry, from the source tree:

1. build the C++ extension in place (MAX_JOBS = CPU count);
2. the CUDA tests of the fused ops (tests/test_<op>.py, test_normal_exact.py; not the CPU suite);
3. the op benchmarks: every fused op forward + backward at 4x3x256x256 and 8x3x1024x1024, fused (Triton)
   and reference (torch), median of CUDA-event timings, printed beside the modeled time
   (benchmarks/results/traffic-model.json, from ``python -m fastdenoise.traffic``);
4. P2N per-image latency: 100 iterations on one 256x256 RGB image, cold (first fit) and warm;
5. ``p2n.fit_many`` throughput (8 images at once);
6. the compile check subset with this machine's Triton (``python -m fastdenoise.gpucheck --subset ci``).

Each step has a time budget; a step that would start after the total budget is skipped and says so.
Writes ``gpu-check-<device>.json`` into ``$FASTDENOISE_GPU_CHECK_DIR`` (default ``$OUT``, else
``benchmarks/results``) and prints a summary. Exit status 1 when the build or a test failed.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_S = float(os.environ.get("FASTDENOISE_GPU_CHECK_BUDGET_S", "460"))
T0 = time.perf_counter()
OP_TESTS = ["test_apr.py", "test_blind2grad.py", "test_blindspot.py", "test_neighbor.py", "test_noise2same.py",
            "test_p2n.py", "test_recharge.py", "test_zsn2n.py", "test_normal_exact.py"]


def elapsed() -> float:
    return time.perf_counter() - T0


def left() -> float:
    return TOTAL_S - elapsed()


def sh(cmd, timeout, env=None):
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1, timeout))
        return {"rc": p.returncode, "seconds": round(time.perf_counter() - t, 1),
                "tail": (p.stdout + p.stderr)[-4000:]}
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return {"rc": 124, "seconds": round(time.perf_counter() - t, 1), "tail": out[-4000:] + "\n[timeout]"}


def step_build():
    env = dict(os.environ, MAX_JOBS=str(os.cpu_count() or 4), FASTDENOISE_REQUIRE_EXT="1")
    return sh([sys.executable, "setup.py", "build_ext", "--inplace"], min(150, left()), env)


def step_tests():
    env = dict(os.environ, PYTHONPATH=ROOT, FASTDENOISE_TEST_DEVICE="cuda", FASTDENOISE_REQUIRE_EXT="1")
    env.pop("TRITON_INTERPRET", None)
    r = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[f"tests/{t}" for t in OP_TESTS]],
           min(200, left() - 150), env)
    m = re.findall(r"(\d+) (passed|failed|skipped|error|errors)", r["tail"])
    r["counts"] = {k: int(v) for v, k in m}
    return r


def _time_cuda(fn, warmup=2, iters=10) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)  # us
    return statistics.median(times)


def step_op_bench(budget_s: float):
    import torch

    from fastdenoise.hostwork import fused_cases
    from fastdenoise.hostwork import grad_targets

    modeled = {}
    path = os.path.join(ROOT, "benchmarks", "results", "traffic-model.json")
    if os.path.exists(path):
        with open(path) as f:
            modeled = {(r["op"], r["shape"]): r for r in json.load(f)["rows"]}
    rows, t_end = [], time.perf_counter() + budget_s
    for shape in [(4, 3, 256, 256), (8, 3, 1024, 1024)]:
        for be in ("triton", "torch"):
            for name, (mk, call) in fused_cases("cuda", shape, backend=be, fill=torch.rand).items():
                if time.perf_counter() > t_end:
                    rows.append({"op": name, "shape": "x".join(map(str, shape)), "backend": be, "skipped": "budget"})
                    continue
                if be == "torch" and name == "rdc_renoise(pixel)" and shape[-1] > 256:
                    continue  # host-drawn normals for 25M pixels: the reference's own cost, minutes
                inputs = mk()

                def fn():
                    for t in inputs:
                        t.grad = None
                    out = call(*inputs)
                    outs, grads = grad_targets(out)
                    if outs:
                        torch.autograd.backward(outs, grads)

                try:
                    us = _time_cuda(fn)
                    row = {"op": name, "shape": "x".join(map(str, shape)), "backend": be, "us": round(us, 1)}
                except Exception as e:  # a failing op is a result
                    row = {"op": name, "shape": "x".join(map(str, shape)), "backend": be, "error": repr(e)[:500]}
                m = modeled.get((name, row["shape"]))
                if m:
                    key = "fused" if be == "triton" else "ref"
                    row["modeled_us_H100"], row["modeled_us_H200"] = m[f"{key}_us_H100"], m[f"{key}_us_H200"]
                rows.append(row)
                del inputs
    return rows


def step_p2n(budget_s: float):
    import torch

    from fastdenoise.methods import p2n
    from fastdenoise.noise import add_gaussian

    out, t_end = {}, time.perf_counter() + budget_s
    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.interpolate(torch.rand(8, 3, 32, 32, generator=g), size=(256, 256),
                                            mode="bilinear", align_corners=False)
    y8 = add_gaussian(clean, 25, seed=1).cuda()
    for name, kw in (("fused", {}), ("torch_ref", {"reference": True})):
        if time.perf_counter() > t_end:
            out[name] = {"skipped": "budget"}
            continue
        tr = p2n.build(device="cuda", iters=100, progress=False, **kw)
        y = y8[:1]
        t = time.perf_counter()
        tr.fit(y, iters=100)
        torch.cuda.synchronize()
        cold = time.perf_counter() - t
        warm = []
        for _ in range(3 if name == "fused" else 1):
            t = time.perf_counter()
            tr.fit(y, iters=100)
            torch.cuda.synchronize()
            warm.append(time.perf_counter() - t)
        out[name] = {"iters": 100, "image": "1x3x256x256", "cold_s": round(cold, 3),
                     "warm_s": round(statistics.median(warm), 3)}
        if name == "fused" and time.perf_counter() < t_end:
            t = time.perf_counter()
            p2n.fit_many(y8, trainer=tr, iters=100)
            torch.cuda.synchronize()
            cold_many = time.perf_counter() - t
            t = time.perf_counter()
            p2n.fit_many(y8, trainer=tr, iters=100)
            torch.cuda.synchronize()
            warm_many = time.perf_counter() - t
            out["fit_many"] = {"images": 8, "iters": 100, "cold_s": round(cold_many, 3),
                               "warm_s": round(warm_many, 3), "images_per_s": round(8 / warm_many, 2)}
    return out


def main() -> int:
    res = {"tool": "scripts/gpu_check.py", "python": platform.python_version(), "budget_s": TOTAL_S}
    res["build"] = step_build()
    import torch
    import triton

    res.update(torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
               device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device")
        return 1
    sys.path.insert(0, ROOT)
    res["tests"] = step_tests() if left() > 200 else {"skipped": "budget"}
    res["op_bench"] = step_op_bench(min(120.0, left() - 120)) if left() > 150 else [{"skipped": "budget"}]
    res["p2n"] = step_p2n(min(90.0, left() - 40)) if left() > 60 else {"skipped": "budget"}
    if left() > 60:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        res["gpucheck_ci"] = sh([sys.executable, "-m", "fastdenoise.gpucheck", "--subset", "ci", "--arch", "sm_90",
                                 "--jobs", str(min(8, os.cpu_count() or 2))], left() - 10, env)
    else:
        res["gpucheck_ci"] = {"skipped": "budget"}
    res["seconds"] = round(elapsed(), 1)
    out_dir = os.environ.get("FASTDENOISE_GPU_CHECK_DIR") or os.environ.get("OUT") or os.path.join(
        ROOT, "benchmarks", "results")
    os.makedirs(out_dir, exist_ok=True)
    dev = re.sub(r"[^A-Za-z0-9]+", "-", res["device"]).strip("-").lower()
    path = os.path.join(out_dir, f"gpu-check-{dev}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    tests = res["tests"].get("counts", {}) if isinstance(res["tests"], dict) else {}
    print(f"gpu_check: {res['device']}, torch {res['torch']}, triton {res['triton']}: build rc {res['build']['rc']}, "
          f"tests {tests}, {res['seconds']} s -> {path}")
    for r in res["op_bench"]:
        if "us" in r:
            print(f"  {r['op']:28s} {r['shape']:14s} {r['backend']:7s} {r['us']:10.1f} us  "
                  f"(modeled H100 {r.get('modeled_us_H100', '-')} / H200 {r.get('modeled_us_H200', '-')})")
    print("  p2n:", json.dumps(res["p2n"]))
    bad = res["build"]["rc"] != 0 or tests.get("failed", 0) or tests.get("error", 0) or tests.get("errors", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
