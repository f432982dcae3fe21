"""Traffic and launch model of the fused ops on a GPU, computed on any machine (modeled, not measured).

For each public fused op (forward + backward, float32) at a shape:

* ``fused``: the Triton path. Every kernel launch counts the bytes of its distinct tensor arguments
  (each read or written once), every other aten op the bytes of its distinct inputs and outputs
  (allocations and views are free). Kernels are recorded, not run (``gpucheck.Recorder``).
* ``reference``: the torch reference (``backend="torch"``), run for real on the CPU, every aten op
  counted the same way (about one GPU launch each); measured at 4x3x256x256 and scaled by the element
  count to larger shapes.
* ``minimum``: the op's inputs read once and its outputs written once (forward outputs, incoming
  gradients, input gradients).

Predicted time on a device = ``max(bytes / bandwidth, launches * 4 us)`` (H100 3.35 TB/s, H200 4.8 TB/s).
``python -m tools.traffic --json PATH [--markdown]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository root

DEVICES = {"H100": 3.35e12, "H200": 4.8e12}
LAUNCH_S = 4e-6
SHAPES = [(4, 3, 256, 256), (8, 3, 1024, 1024)]


def predicted_us(nbytes: int, launches: int, bandwidth: float) -> float:
    return max(nbytes / bandwidth, launches * LAUNCH_S) * 1e6


def _measure(call, inputs, counted_kernels: bool):
    """(bytes, launches, minimum bytes) of forward + backward of ``call(*inputs)``."""
    from tools.gpucheck import Recorder
    from tools.hostwork import OpCounter
    from tools.hostwork import grad_targets
    from tools.hostwork import tensor_bytes

    total, launches = 0, 0
    outs_all = []
    outs, grads = [], []
    for phase in ("fwd", "bwd"):
        if phase == "bwd":
            outs, grads = grad_targets(out)  # the incoming gradients exist before the backward
        rec = Recorder() if counted_kernels else None
        counter = OpCounter()
        if rec is not None:
            rec.__enter__()
        try:
            with counter:
                if phase == "fwd":
                    out = call(*inputs)
                    outs_all = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                                if isinstance(o, torch.Tensor)]
                elif outs:
                    torch.autograd.backward(outs, grads)
        finally:
            if rec is not None:
                rec.__exit__(None, None, None)
        total += sum(counter.nbytes)
        launches += len(counter.compute_ops())
        if rec is not None:
            for la in rec.launches:
                seen = set()
                for d in la["params"].values():
                    if d["kind"] == "tensor" and d["ptr"] not in seen:
                        seen.add(d["ptr"])
                        total += d["bytes"]
                launches += 1
    need_grad = [t for t in inputs if t.requires_grad]
    minimum = (tensor_bytes(inputs) + tensor_bytes(outs_all)
               + tensor_bytes([o for o in outs_all if o.requires_grad])  # incoming gradients
               + tensor_bytes(need_grad))  # input gradients
    return total, launches, minimum


def model(shapes=SHAPES) -> list[dict]:
    """One row per (op, shape): bytes, launches and predicted times of fused and reference, the minimum.

    The reference runs for real on the CPU at the first shape only (the larger one would take many
    minutes on a small machine); at the other shapes its bytes are scaled by the element count and
    its launch count kept (``ref_scaled_from`` says so). The fused path is recorded at every shape."""
    from tools.hostwork import fused_cases

    rows, ref_at = [], {}
    for shape in shapes:
        fused = fused_cases("cpu", shape, backend="triton")
        numel = shape[0] * shape[1] * shape[2] * shape[3]
        for name in fused:
            fb, fl, minimum = _measure(fused[name][1], fused[name][0](), True)
            if name not in ref_at:
                torch.manual_seed(0)
                mk, call = fused_cases("cpu", shape, backend="torch", fill=torch.rand)[name]
                rb, rl, _ = _measure(call, mk(), False)
                ref_at[name] = (rb, rl, numel, "x".join(map(str, shape)))
            rb0, rl, n0, src = ref_at[name]
            rb = rb0 * numel // n0
            row = {"op": name, "shape": "x".join(map(str, shape)), "fused_bytes": fb, "fused_launches": fl,
                   "ref_bytes": rb, "ref_launches": rl, "min_bytes": minimum,
                   "fused_over_min": round(fb / minimum, 3) if minimum else None,
                   "ref_scaled_from": None if n0 == numel else src}
            for dev, bw in DEVICES.items():
                row[f"fused_us_{dev}"] = round(predicted_us(fb, fl, bw), 1)
                row[f"ref_us_{dev}"] = round(predicted_us(rb, rl, bw), 1)
            row["speedup_H200"] = round(row["ref_us_H200"] / row["fused_us_H200"], 1)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| op (fwd+bwd, fp32) | shape | fused MB | fused launches | minimum MB | fused / min | reference MB | "
             "reference launches | fused us H100 / H200 | reference us H100 / H200 | speedup (H200) |",
             "|" + " --- |" * 11]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['fused_bytes'] / 1e6:.1f} | {r['fused_launches']} | "
            f"{r['min_bytes'] / 1e6:.1f} | {r['fused_over_min']} | {r['ref_bytes'] / 1e6:.1f} | {r['ref_launches']} | "
            f"{r['fused_us_H100']} / {r['fused_us_H200']} | {r['ref_us_H100']} / {r['ref_us_H200']} | "
            f"{r['speedup_H200']}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.traffic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table")
    ap.add_argument("--small", action="store_true", help="only 4x3x256x256")
    a = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") != "1":  # the Triton launchers run in the interpreter here
        env = dict(os.environ, TRITON_INTERPRET="1")
        import subprocess

        return subprocess.run([sys.executable, "-m", "tools.traffic", *(argv or sys.argv[1:])],
                              env=env, cwd=_ROOT).returncode
    rows = model(SHAPES[:1] if a.small else SHAPES)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": "modeled, not measured", "launch_us": LAUNCH_S * 1e6,
                       "bandwidth": DEVICES, "rows": rows}, f, indent=1)
    if a.markdown:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
