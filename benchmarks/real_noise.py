"""Real noise: every method on real phone photos with their ground truth (40 SIDD validation blocks).

`python -m benchmarks.real_noise` reads the noisy/clean pairs of ``--data`` (default: :data:`DATA`, a folder
beside the repository holding 40 256x256 sRGB blocks of the SIDD validation set, one per scene, which the
project may measure on but neither ships nor trains on) and prints a note and exits 0 when that folder is
absent. Scored as the papers do (:mod:`fastdenoise.pairs`: uint8, peak 255). Phases
(``--phases``, in this order, each over every block before the next):

* ``base``: the noisy input, BM3D with the noise level estimated from the image (optional ``bm3d``
  package), the J-invariant-calibrated wavelet denoiser;
* ``start``: each method's shipped start alone (``iters=0``) with the defaults (``pd="auto"``,
  ``blend="auto"``);
* ``default``: each method's CPU default through :func:`fastdenoise.denoise` (seed 0);
* ``curve``: one fit of ``--curve-iters``' largest count per method with the PSNR of the estimate it would
  return recorded at each count (a fit's schedules depend on its length, so the point at 50 of a
  200-iteration fit is not the 50-iteration default);
* ``variants``: the options of ``--variants`` (``method:key=value,key=value;...``), e.g. ``pd=1`` or
  ``blend=1``, to measure what each default adds;
* ``clean``: the ground truth itself denoised by each default, scored against itself (a method must give a
  clean photo back: 40 dB or more; ``--clean-iters 0`` scores the starts alone);
* ``low``: low-noise photos made from the blocks, ``clean + 0.25 (noisy - clean)`` rounded to 8 bits (the
  real noise at a quarter of its amplitude, about 12 dB less of it), with the noisy row: a method must not
  return them worse than they came in. ``--low-iters 0`` scores the starts alone;
* ``noise``: what the noise of each block is (``noisy - clean``: its std, the correlation between horizontal
  neighbours one and two pixels apart and between the red and green channels) beside what
  :func:`fastdenoise.noise.estimate_noise` reads from the noisy block alone.

Rows go to a JSONL file (``--out``, default ``benchmarks/results/real-noise-cpu.jsonl``) as soon as they
exist, with the date, machine, thread count and versions; a run resumes from it. ``--blocks 0:40:5`` picks
a subset (Python slice of the sorted names). ``--markdown`` prints the tables of the rows so far (written to
``benchmarks/real_noise.md`` with ``--md``), computing nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(os.path.dirname(ROOT), "shared", "realnoise", "sidd_val40")
OUT = os.path.join(HERE, "results", "real-noise-cpu.jsonl")
MD = os.path.join(HERE, "real_noise.md")
PHASES = ("base", "start", "default", "curve", "variants", "clean", "low", "noise")
LOW_SCALE = 0.25
CURVE = (0, 10, 25, 50, 100, 200)


def environment(threads: int) -> dict:
    import torch

    import fastdenoise

    return {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "threads": threads, "torch": torch.__version__, "numpy": np.__version__,
            "fastdenoise": getattr(fastdenoise, "__version__", "?")}


def _slice(spec: str, items: list) -> list:
    if not spec:
        return items
    parts = [int(p) if p else None for p in spec.split(":")]
    return items[slice(*parts)]


def _parse_variants(spec: str) -> list[tuple[str, dict]]:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        m, _, opts = item.partition(":")
        kw = {}
        for kv in filter(None, opts.split(",")):
            k, _, v = kv.partition("=")
            try:
                kw[k] = json.loads(v)
            except json.JSONDecodeError:
                kw[k] = v
        out.append((m, kw))
    return out


def load_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--phases", default="base,start,default,clean")
    ap.add_argument("--blocks", default="", help="slice of the sorted block names, e.g. 0:40:5")
    ap.add_argument("--curve-iters", default=",".join(map(str, CURVE)))
    ap.add_argument("--curve-options", default="", help="denoise options of the curve phase, e.g. pd=1,guard=0")
    ap.add_argument("--variants", default="")
    ap.add_argument("--baselines", default="noisy,wavelet,bm3d", help="rows of the base phase")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--low-iters", type=int, default=None, help="iterations of the low phase (default: the defaults)")
    ap.add_argument("--clean-iters", type=int, default=None,
                    help="iterations of the clean phase (default: the defaults; 0: the starts alone)")
    ap.add_argument("--markdown", action="store_true", help="print the tables of the rows so far and exit")
    ap.add_argument("--md", action="store_true", help="with --markdown: also write benchmarks/real_noise.md")
    a = ap.parse_args(argv)
    if a.markdown:
        text = markdown(load_rows(a.out))
        print(text)
        if a.md:
            tmp = MD + ".tmp"
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, MD)
        return 0
    if not os.path.isdir(a.data):
        print(f"real_noise: no pairs folder at {a.data}: nothing to measure (see the module docstring)")
        return 0
    import torch

    from fastdenoise.methods import available
    from fastdenoise.pairs import Pair
    from fastdenoise.pairs import evaluate_pairs
    from fastdenoise.pairs import find_pairs
    from fastdenoise.pairs import rows_from_json
    from fastdenoise.pairs import rows_to_json

    torch.set_num_threads(a.threads)
    phases = [p for p in a.phases.split(",") if p]
    bad = [p for p in phases if p not in PHASES]
    if bad:
        ap.error(f"unknown phase(s) {bad}; phases: {', '.join(PHASES)}")
    methods = available() if a.methods == "all" else a.methods.split(",")
    pairs = _slice(a.blocks, find_pairs(a.data))
    env = environment(a.threads)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    old = load_rows(a.out)

    def done(phase):
        return rows_from_json([r for r in old if r.get("phase") == phase])

    def writer(phase):
        def on_row(row):
            rec = dict(rows_to_json([row])[0], phase=phase, env=env)
            with open(a.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return on_row

    for phase in phases:
        t0 = time.perf_counter()
        common = dict(device="cpu", done=done(phase), on_row=writer(phase),
                      progress=lambda s, p=phase: print(f"[{p}] {s}", flush=True))
        if phase == "base":
            evaluate_pairs(pairs, (), baselines=[b for b in a.baselines.split(",") if b], **common)
        elif phase == "start":
            evaluate_pairs(pairs, methods, iters=0, baselines=(), **common)
        elif phase == "default":
            evaluate_pairs(pairs, methods, baselines=(), **common)
        elif phase == "curve":
            its = tuple(int(v) for v in a.curve_iters.split(","))
            opts = _parse_variants("x:" + a.curve_options)[0][1] if a.curve_options else {}
            evaluate_pairs(pairs, methods, iters=max(its), baselines=(), curve=its, options=opts, **common)
        elif phase == "variants":
            for m, kw in _parse_variants(a.variants):
                iters = kw.pop("iters", None)
                evaluate_pairs(pairs, [m], iters=iters, baselines=(), options=kw, **common)
        elif phase == "clean":
            same = [Pair(p.name, p.clean, p.clean) for p in pairs]
            evaluate_pairs(same, methods, iters=a.clean_iters, baselines=(), **common)
        elif phase == "noise":
            have = {r["image"] for r in old if r.get("phase") == "noise"}
            for p in pairs:
                if p.name not in have:
                    writer(phase)(noise_row(p))
                    print(f"[noise] {p.name}", flush=True)
        elif phase == "low":
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                evaluate_pairs(low_pairs(pairs, tmp), methods, iters=a.low_iters, baselines=("noisy",), **common)
        print(f"[{phase}] done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


def noise_row(pair):
    """A ``noise`` phase row: the true noise of ``pair`` and what the estimate reads (see the docstring)."""
    from fastdenoise.noise import estimate_noise
    from fastdenoise.pairs import PairRow
    from fastdenoise.pairs import load_pair

    noisy, clean = load_pair(pair)
    n = noisy.astype(np.float64) - clean.astype(np.float64)
    n = n - n.mean(axis=(0, 1))

    def corr(a, b):
        return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))

    true = {"std255": round(float(n.std()) * 255, 3), "corr_1px": round(corr(n[:, 1:], n[:, :-1]), 4),
            "corr_2px": round(corr(n[:, 2:], n[:, :-2]), 4)}
    if n.shape[-1] >= 2:
        true["corr_rg"] = round(corr(n[..., 0], n[..., 1]), 4)
    est = estimate_noise(noisy).as_dict()
    est["level_over_true"] = round(est["level255"] / max(true["std255"], 1e-9), 4)
    return PairRow(pair.name, "noise", float("nan"), float("nan"), info={"true": true, "estimate": est})


def low_pairs(pairs: list, folder: str) -> list:
    """The low-noise versions of ``pairs`` (``clean + LOW_SCALE (noisy - clean)``, 8-bit PNG) written to
    ``folder``, paired with their ground truth."""
    from fastdenoise.io import write_image
    from fastdenoise.pairs import Pair
    from fastdenoise.pairs import load_pair

    out = []
    for p in pairs:
        noisy, clean = load_pair(p)
        path = os.path.join(folder, p.name.replace("/", "_") + ".png")
        write_image(path, np.clip(clean + LOW_SCALE * (noisy - clean), 0, 1), bit_depth=8)
        out.append(Pair(p.name, path, p.clean))
    return out


def markdown(rows: list[dict]) -> str:
    """The tables of the committed rows: means per phase, method and options; the curves; the clean check."""
    from fastdenoise.pairs import rows_from_json
    from fastdenoise.pairs import summarize

    if not rows:
        return "No rows yet."
    envs = {json.dumps({k: v for k, v in r["env"].items() if k != "date"}, sort_keys=True) for r in rows}
    dates = sorted({r["env"]["date"] for r in rows})
    out = [f"Rows of {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "") + "; "
           + "; ".join(sorted(envs)) + ".", ""]
    noisy = {r["image"]: r["psnr"] for r in rows if r["phase"] == "base" and r["method"] == "noisy"}
    low_noisy = {r["image"]: r["psnr"] for r in rows if r["phase"] == "low" and r["method"] == "noisy"}
    out += ["| phase | method | options | blocks | mean PSNR dB | mean SSIM | gain over noisy dB | "
            "better than noisy | at least the start | mean time s |", "|---|---|---|---|---|---|---|---|---|---|"]
    start = {(r["image"], r["method"]): r["psnr"] for r in rows if r["phase"] == "start"}
    for phase in PHASES:
        if phase in ("curve", "clean", "noise"):
            continue
        sel = [r for r in rows if r["phase"] == phase]
        ref = low_noisy if phase == "low" else noisy
        for d in summarize(rows_from_json(sel)):
            rs = [r for r in sel if r["method"] == d["method"] and r["options"] == d["options"]]
            base = [ref[r["image"]] for r in rs if r["image"] in ref]
            gain = f"{d['psnr'] - np.mean(base):+.2f}" if len(base) == len(rs) and d["method"] != "noisy" else "–"
            better = (f"{sum(r['psnr'] > ref[r['image']] for r in rs)}/{len(rs)}"
                      if len(base) == len(rs) and d["method"] != "noisy" else "–")
            st = [start.get((r["image"], r["method"])) for r in rs]
            atleast = (f"{sum(r['psnr'] >= s - 1e-9 for r, s in zip(rs, st))}/{len(rs)}"
                       if phase not in ("start", "base", "low") and all(s is not None for s in st) else "–")
            out.append(f"| {phase} | {d['method']} | {d['options'] or '–'} | {d['images']} | {d['psnr']:.2f} | "
                       f"{d['ssim']:.4f} | {gain} | {better} | {atleast} | {d.get('seconds', '–')} |")
    curves = [r for r in rows if r["phase"] == "curve" and r["info"].get("curve")]
    if curves:
        its = sorted({0} | {t for r in curves for t, _ in r["info"]["curve"]})
        out += ["", "Curves (per block, one fit of the largest count; PSNR dB of the estimate the fit would return "
                "at each count, 0 = the start alone with the same options):", "",
                "| method | options | block | noisy | " + " | ".join(str(t) for t in its) + " |",
                "|---|---|---|---|" + "---|" * len(its)]
        for r in curves:
            m, o = r["method"], r["options"]
            kv = dict(x.split("=", 1) for x in o.split(",") if x)
            kv = {k: w for k, w in kv.items() if k not in ("iters", "guard")}
            o0 = ",".join(f"{k}={w}" for k, w in sorted({**kv, "iters": "0"}.items()))
            zero = [z["psnr"] for z in rows if z["phase"] in ("start", "variants") and z["options"] == o0
                    and z["method"] == m and z["image"] == r["image"]]
            pts = dict(r["info"]["curve"])
            if zero:
                pts[0] = zero[0]
            cells = [f"{pts[t]:.2f}" if t in pts else "–" for t in its]
            nz = f"{noisy[r['image']]:.2f}" if r["image"] in noisy else "–"
            out.append(f"| {m} | {o} | {r['image']} | {nz} | " + " | ".join(cells) + " |")
    nrows = [r for r in rows if r["phase"] == "noise"]
    if nrows:
        def span(vals):
            return f"{np.mean(vals):.2f} ({min(vals):.2f} to {max(vals):.2f})"
        t = [r["info"]["true"] for r in nrows]
        e = [r["info"]["estimate"] for r in nrows]
        out += ["", f"The noise of the {len(nrows)} blocks (`noisy - clean`) and what `estimate_noise` reads from the "
                "noisy block alone: mean (lowest to highest):", "",
                "| std (0-255) | correlation, 1 px | correlation, 2 px | correlation, R-G | estimated level / std | "
                "estimated correlation | blocks read as `pd=2` |", "|---|---|---|---|---|---|---|",
                f"| {span([x['std255'] for x in t])} | {span([x['corr_1px'] for x in t])} | "
                f"{span([x['corr_2px'] for x in t])} | {span([x.get('corr_rg', 0.0) for x in t])} | "
                f"{span([x['level_over_true'] for x in e])} | {span([x['correlation'] for x in e])} | "
                f"{sum(x['pd'] == 2 for x in e)}/{len(e)} |"]
    clean = [r for r in rows if r["phase"] == "clean"]
    if clean:
        out += ["", "The ground truth denoised (scored against itself; 40 dB or more expected):", "",
                "| method | options | blocks | mean PSNR dB | lowest PSNR dB | blocks under 40 dB | mean blend |",
                "|---|---|---|---|---|---|---|"]
        for m, o in dict.fromkeys((r["method"], r["options"]) for r in clean):
            rs = [r for r in clean if (r["method"], r["options"]) == (m, o)]
            ps = [min(r["psnr"], 99.0) for r in rs]
            bl = np.mean([r["info"].get("blend", 1.0) for r in rs])
            out.append(f"| {m} | {o or '–'} | {len(ps)} | {np.mean(ps):.2f} | {min(ps):.2f} | {sum(p < 40 for p in ps)} | "
                       f"{bl:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
