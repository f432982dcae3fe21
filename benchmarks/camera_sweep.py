"""Camera noise: every method against its iteration count on the four held-out 256x256 crops.

`python -m benchmarks.camera_sweep` (one thread; hours): astronaut, chelsea, coffee and camera (the
crops :mod:`fastdenoise.evaluate` uses), ``camera`` noise (:data:`fastdenoise.noise.CAMERA_DEFAULT`; noise
seed 0, fit seed 0), scored against the noise-free rendering through the same camera pipeline
(:meth:`fastdenoise.noise.NoiseSpec.target`; the PSNR against the original crop is recorded too). Rows:

* ``noisy``; ``pipeline`` (the noise-free rendering scored against the original crop: what demosaicing
  alone costs, recorded for reference);
* ``bm3d-told``: BM3D given the noise's power spectral density per channel of its opponent colour space,
  measured by a Monte-Carlo of the pipeline on the clean crop (8 draws, seeds 1000-1007; the known noise
  model, as the Gaussian rows of the quality table are told sigma; ``fastdenoise.evaluate._bm3d``);
  ``bm3d-blind``: BM3D given skimage's wavelet estimate of the std (both need the optional ``bm3d``
  package);
* ``wavelet-jinv``: the J-invariant (Noise2Self) calibrated wavelet denoiser of scikit-image
  (``calibrate_denoiser`` over ``denoise_wavelet``'s ``sigma``, BayesShrink, YCbCr);
* each method through ``fastdenoise.denoise`` at explicit iteration counts (so the result does not depend
  on the machine's speed: the CPU time cap only binds a default count): 0 (the shipped start alone, where
  the method has one), the CPU default count, 2x and 5x it. Noise2Same's CPU default is its start alone
  (0 iterations); its fit columns use its from-scratch CPU count, 300.

Phases (``--phases``): ``base`` (noisy, pipeline, BM3D, wavelet), ``0``, ``1x``, ``2x``, ``5x``; each phase
runs every method on every image (image by image, every method on one image before the next) before the
next phase. Rows go to a JSONL file as soon as they exist
(``--out``, default results/camera-sweep-cpu.jsonl) and a run resumes from it; ``--markdown`` writes the
table of the rows so far (to ``--md``, and with ``--quality`` into benchmarks/quality.md's camera section),
computing nothing.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMAGES = ("astronaut", "chelsea", "coffee", "camera")
METHODS = ("p2n", "nb2nb", "noise2same", "apr", "blind2grad", "zsn2n")
FIT_ITERS = {"p2n": 50, "nb2nb": 150, "noise2same": 300, "apr": 120, "blind2grad": 100, "zsn2n": 600}
"""The CPU default iteration counts (from the shipped starts; Noise2Same: its from-scratch count, its CPU
default being the start alone)."""
PHASES = ("base", "0", "1x", "2x", "5x")
MULT = {"1x": 1, "2x": 2, "5x": 5}
from benchmarks.quality import CAMERA_SECTION as SECTION  # noqa: E402
from benchmarks.quality import _write_atomic  # noqa: E402


def _metrics(pred, ref):
    from fastdenoise.metrics import psnr
    from fastdenoise.metrics import ssim

    pred, ref = np.asarray(pred, np.float32), np.asarray(ref, np.float32)
    return float(psnr(pred, ref)[0]), float(ssim(pred, ref)[0])


def _git() -> dict:
    def run(*cmd):
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:  # noqa: BLE001
            return ""
    return {"head": run("git", "rev-parse", "HEAD"), "dirty": run("git", "status", "--short", "-uno").splitlines()}


def load_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def method_spec(spec: str) -> tuple[str, dict]:
    """``"p2n"`` or ``"p2n:start=gaussian:iters_cpu=..."``: the method and the config fields given to
    ``denoise`` (values parsed as Python literals where they are, else strings). The row's ``method`` is the
    whole spec."""
    import ast

    name, *opts = spec.split(":")
    kw = {}
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep or not k:
            raise ValueError(f"--methods: {spec!r}: options are key=value, got {o!r}")
        try:
            kw[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            kw[k] = v
    if name not in FIT_ITERS:
        raise ValueError(f"--methods: unknown method {name!r} in {spec!r}; known: {', '.join(FIT_ITERS)}")
    return name, kw


def _key(r: dict) -> tuple:
    return (r["image"], r["method"], r.get("iters_asked"))


def format_markdown(rows: list[dict], command: str) -> str:
    """The camera section: per-image rows and per-(method, iterations) means over the images present."""
    seen: set = set()
    rows = [r for r in rows if "psnr" in r and not (_key(r) in seen or seen.add(_key(r)))]   # first of each
    meta = next((r for r in rows if r.get("noise_params")), {})
    out = [SECTION, "", "## Camera noise", ""]
    out.append(
        f"Measured 2026-12-07, CPU, 1 thread (`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`), explicit "
        f"iteration counts (the time cap does not bind), noise seed 0, fit seed 0. Command: `{command}`. "
        "Noise: `camera` (fastdenoise.noise.CAMERA_DEFAULT: sRGB unprocessed to raw as in Brooks et al. 2019, "
        "RGGB mosaic, shot/read variance "
        f"{meta.get('noise_params', [{}])[0].get('shot', float('nan')):.3g} / "
        f"{meta.get('noise_params', [{}])[0].get('read', float('nan')):.3g}, bilinear demosaicing, processed "
        "back; the grey camera crop replicated to RGB and averaged back). PSNR/SSIM against the noise-free "
        "rendering through the same pipeline (as SIDD's ground truth is rendered like its noisy images); "
        "`PSNR vs orig` against the original crop (it includes what demosaicing costs, see the `pipeline` "
        "row). Methods through `fastdenoise.denoise` from their shipped starts: `iters` 0 = the start alone; "
        "the fit columns are the CPU default counts (P2N 50, Nb2Nb 150, APR-RD 120, Blind2Grad 100, ZS-N2N 600; "
        "Noise2Same, whose CPU default is its start alone, 300) and 2x / 5x them; `method:key=value` rows pass "
        "options to `denoise` (`pd=2`, `start=gaussian`, `guard=0`); `50 (ran 9)`: P2N's collapse guard stopped "
        "the fit at iteration 9 and kept the start. Code: git HEAD "
        + ", ".join(dict.fromkeys(r.get("git", {}).get("head", "?")[:10] for r in rows if r.get("git")))
        + " as the rows were made (each JSONL row lists the uncommitted edits of the shared tree at its start).")
    out.append("")
    out += ["| image | method | iters | PSNR dB | SSIM | PSNR vs orig dB | time s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        it = "–" if r.get("iters") is None else str(r["iters"])
        if r.get("iters") is not None and r.get("iters_asked") not in (None, r["iters"]):
            it = f"{r['iters_asked']} (ran {r['iters']})"
        t = "–" if r.get("seconds") is None else f"{r['seconds']:.1f}"
        out.append(f"| {r['image']} | {r['method']} | {it} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                   f"{r.get('psnr_orig', float('nan')):.2f} | {t} |")
    noisy = {r["image"]: r["psnr"] for r in rows if r["method"] == "noisy"}
    out += ["", "Means over the images present (gain = mean of per-image PSNR minus the noisy PSNR):", "",
            "| method | iters | images | mean PSNR dB | mean SSIM | gain over noisy dB | RGB crops gain dB | "
            "fit minus start alone dB |",
            "|---|---|---|---|---|---|---|---|"]
    start = {(r["method"], r["image"]): r["psnr"] for r in rows if r.get("phase") == "0"}
    groups: dict = {}
    for r in rows:
        if r["method"] != "pipeline":          # scored against the original crop: not comparable here
            groups.setdefault((r["method"], r.get("iters_asked", r.get("iters"))), []).append(r)

    def start_of(m: str) -> str:        # the start-alone row of a fit option variant (guard= changes only the fit)
        return ":".join(o for o in m.split(":") if not o.startswith("guard="))
    for (m, it), sel in groups.items():
        gains = [r["psnr"] - noisy[r["image"]] for r in sel if r["image"] in noisy]
        rgb = [r["psnr"] - noisy[r["image"]] for r in sel if r["image"] in noisy and r["image"] != "camera"]
        fit = [r["psnr"] - start[(start_of(m), r["image"])] for r in sel
               if r.get("phase") not in (None, "base", "0") and (start_of(m), r["image"]) in start]
        out.append(f"| {m} | {'–' if it is None else it} | {len(sel)} | {np.mean([r['psnr'] for r in sel]):.2f} | "
                   f"{np.mean([r['ssim'] for r in sel]):.4f} | {np.mean(gains):+.2f} | "
                   f"{(f'{np.mean(rgb):+.2f}' if rgb else '–')} | {(f'{np.mean(fit):+.2f}' if fit else '–')} |")
    pipe = [r["psnr"] for r in rows if r["method"] == "pipeline"]
    if pipe:
        out += ["", f"The noise-free rendering (`pipeline` rows) scores {np.mean(pipe):.2f} dB mean against the "
                    f"original crops ({', '.join(f'{p:.2f}' for p in pipe)}): what bilinear demosaicing and the "
                    "pipeline's clipping cost before any noise."]
    out += ["", "`time s`: seconds of training (inference not counted) on a shared 2-core machine whose load "
                "average was between about 1 and 5 while this ran: not a speed measurement (see quality-timing.md)."]
    missing = [f"{m} {p}" + (f" (on {n} of {len(IMAGES)})" if n else "")
               for p in ("0", "1x", "2x", "5x") for m in METHODS
               if (n := sum(1 for r in rows if r["method"] == m and r.get("phase") == p)) < len(IMAGES)]
    out += ["", f"{len(rows)} rows. Default-method columns not measured on every image (method phase): "
            + (", ".join(missing) if missing else "none") + ".", ""]
    return "\n".join(out)


def write_quality(section: str, path: str) -> None:
    with open(path) as f:
        text = f.read()
    if SECTION in text:
        text = text[:text.index(SECTION)].rstrip("\n") + "\n"
    _write_atomic(path, text.rstrip("\n") + "\n\n" + section)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=",".join(IMAGES))
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated methods, each optionally with config fields: p2n:start=gaussian")
    ap.add_argument("--noise", default="camera")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "camera-sweep-cpu.jsonl"))
    ap.add_argument("--md", default=os.path.join(HERE, "results", "camera-sweep-cpu.md"))
    ap.add_argument("--markdown", action="store_true", help="write the table of the rows so far, compute nothing")
    ap.add_argument("--quality", action="store_true", help="with --markdown: also into benchmarks/quality.md")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    command = "OMP_NUM_THREADS=1 python -m benchmarks.camera_sweep"
    for m in [x for x in a.methods.split(",") if x]:
        try:
            method_spec(m)
        except ValueError as e:
            ap.error(str(e))
    if a.markdown:
        text = format_markdown(load_rows(a.out), command)
        with open(a.md, "w") as f:
            f.write(text)
        if a.quality:
            write_quality(text, os.path.join(HERE, "quality.md"))
        print(text)
        return 0

    import torch

    torch.set_num_threads(a.threads)
    from fastdenoise.api import clear_cache
    from fastdenoise.api import denoise
    from fastdenoise.evaluate import _bm3d
    from fastdenoise.evaluate import bm3d_sigma
    from fastdenoise.evaluate import wavelet_jinv
    from fastdenoise.io import load_sample
    from fastdenoise.noise import parse_noise

    split = lambda v: [x for x in v.split(",") if x]  # noqa: E731
    spec = parse_noise(a.noise)
    done = {_key(r) for r in load_rows(a.out) if "psnr" in r}
    git = _git()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)

    def emit(row: dict) -> None:
        row.update(noise=str(spec), date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   threads=a.threads, machine=platform.machine(), torch=torch.__version__, git=git)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['image']} {row['method']} iters={row.get('iters')}: {row['psnr']:.2f} dB "
              f"(vs orig {row['psnr_orig']:.2f}) {row.get('seconds') or 0:.1f} s", flush=True)

    data = {}
    for name in split(a.images):
        sample = np.asarray(load_sample(name, crop=a.crop), np.float32)
        noisy, params = spec.apply(sample, seed=0, return_params=True)
        data[name] = (sample, np.asarray(noisy, np.float32), np.asarray(spec.target(sample, seed=0), np.float32),
                      params)

    def row(name, method, phase, pred, iters_asked=None, **extra):
        sample, _, target, params = data[name]
        p, s = _metrics(pred, target)
        r = {"image": name, "method": method, "phase": phase, "iters_asked": iters_asked, "psnr": p, "ssim": s,
             "psnr_orig": _metrics(pred, sample)[0], "noise_params": params}
        r.update(extra)
        return r

    for phase in split(a.phases):
        if phase not in PHASES:
            ap.error(f"--phases: unknown phase {phase!r}; known: {', '.join(PHASES)}")
        if phase == "base":
            for name in split(a.images):
                sample, noisy, target, _ = data[name]
                if (name, "noisy", None) not in done:
                    emit(row(name, "noisy", phase, noisy))
                if (name, "pipeline", None) not in done:
                    r = row(name, "pipeline", phase, target)
                    r["psnr"], r["ssim"] = _metrics(target, sample)
                    emit(r)
                if importlib.util.find_spec("bm3d") is not None:
                    if (name, "bm3d-told", None) not in done:
                        t0 = time.perf_counter()
                        out = _bm3d(noisy, target, str(spec), sample=sample)
                        emit(row(name, "bm3d-told", phase, out, seconds=time.perf_counter() - t0))
                    if (name, "bm3d-blind", None) not in done:
                        t0 = time.perf_counter()
                        sig = bm3d_sigma(noisy, str(spec))
                        out = _bm3d(noisy, target, str(spec))      # no sample: the estimated std
                        emit(row(name, "bm3d-blind", phase, out, seconds=time.perf_counter() - t0, sigma=sig))
                if (name, "wavelet-jinv", None) not in done:
                    t0 = time.perf_counter()
                    emit(row(name, "wavelet-jinv", phase, wavelet_jinv(noisy), seconds=time.perf_counter() - t0))
            continue
        for name, m in [(n, m) for n in split(a.images) for m in split(a.methods)]:
            base, opts = method_spec(m)
            it = 0 if phase == "0" else FIT_ITERS[base] * MULT[phase]
            if (name, m, it) in done:
                continue
            _, noisy, _, _ = data[name]
            try:
                out, info = denoise(noisy, method=base, iters=it, seed=0, device="cpu", return_info=True, **opts)
            except Exception as e:  # noqa: BLE001  (recorded, the sweep goes on)
                print(f"{name} {m} iters={it}: FAILED {type(e).__name__}: {e}", flush=True)
                with open(a.out, "a") as f:
                    f.write(json.dumps({"image": name, "method": m, "phase": phase, "iters_asked": it,
                                        "error": f"{type(e).__name__}: {e}"[:300]}) + "\n")
                continue
            finally:
                clear_cache()
            emit(row(name, m, phase, out, it, iters=info["iters"], seconds=info["seconds"],
                     init=info.get("init")))
        text = format_markdown(load_rows(a.out), command)
        with open(a.md, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
