"""Run the benchmark suite and print its table: `python -m benchmarks.run [pytest -k expr] [--json-only]`.

Writes benchmarks/results/<device>/<date>.json (pytest-benchmark JSON, with device, date, torch and
triton versions under machine_info.fastdenoise) and, for a full run (no -k), latest.json, then prints a
markdown table:
median ms per provider, GB/s of the fused path, and the speed-up of the fused path over the torch
reference and the upstream-style eager code.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower()


def table(data: dict) -> str:
    """Markdown table from a pytest-benchmark JSON: one row per benchmark group."""
    rows = defaultdict(dict)
    gbps = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        prov = info.get("provider", b["param"] if "param" in b else b["name"])
        group = b.get("group") or b["name"]
        rows[group][prov] = b["stats"]["median"] * 1e3
        if prov == "fused" and info.get("gbps"):
            gbps[group] = info["gbps"]
    provs = ["fused", "torch_ref", "upstream"]
    extra = sorted({p for r in rows.values() for p in r} - set(provs))
    provs += extra
    head = "| benchmark | " + " | ".join(f"{p} ms" for p in provs) + " | fused GB/s | vs torch_ref | vs upstream |"
    lines = [head, "|" + "---|" * (len(provs) + 4)]
    for group in sorted(rows):
        r = rows[group]
        cells = [f"{r[p]:.3f}" if p in r else "–" for p in provs]
        f = r.get("fused")
        ratio = lambda p: f"{r[p] / f:.1f}x" if f and p in r else "–"  # noqa: E731
        g = f"{gbps[group]:.1f}" if group in gbps else "–"
        lines.append(f"| {group} | " + " | ".join(cells) + f" | {g} | {ratio('torch_ref')} | {ratio('upstream')} |")
    mi = data.get("machine_info", {}).get("fastdenoise", {})
    lines.append("")
    lines.append(f"Device: {mi.get('device')}; date {mi.get('date')}; torch {mi.get('torch')}; "
                 f"triton {mi.get('triton')}; threads {mi.get('threads')}. Medians; ratios = provider ms / fused ms.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default=None, help="pytest -k expression to select benchmarks")
    ap.add_argument("--table", metavar="JSON", help="only print the table of an existing JSON file")
    args = ap.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return 0
    sys.path.insert(0, HERE)
    from benchutil import device_name

    outdir = os.path.join(HERE, "results", _slug(device_name()))
    os.makedirs(outdir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    path = os.path.join(outdir, f"{stamp}.json")
    cmd = [sys.executable, "-m", "pytest", HERE, "-q", "-p", "no:cacheprovider", "--benchmark-only",
           f"--benchmark-json={path}", "--benchmark-columns=median,iqr,rounds"]
    if args.k:
        cmd += ["-k", args.k]
    rc = subprocess.call(cmd, cwd=os.path.dirname(HERE))
    if not os.path.exists(path):
        return rc or 1
    if not args.k:   # latest.json is the latest full run; a -k selection stays under its date only
        shutil.copyfile(path, os.path.join(outdir, "latest.json"))
    with open(path) as f:
        print(table(json.load(f)))
    print(f"\nJSON: {os.path.relpath(path, os.path.dirname(HERE))}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
