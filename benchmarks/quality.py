"""The quality table: every method in single-image mode, fused path vs reference configuration.

`python -m benchmarks.quality` (`make quality`; about 2 h on 2 CPU threads): 256x256 centre crops of
astronaut, chelsea and coffee plus camera (grayscale); Gaussian sigma 25 and 50, Poisson lambda 30 and
spatially correlated Gaussian sigma 25; every method with its default iterations for the device, fused and
reference configuration with the same seeds; noisy input and BM3D (if the optional `bm3d` package is
installed) as rows. Writes benchmarks/quality.md (markdown) and benchmarks/results/quality-<device>.json.

`--resume` keeps the rows of an interrupted run (benchmarks/results/quality-<device>.partial.jsonl);
`--partial` only writes the table of those rows, marked partial, computing nothing.
`--cpu-reduced`: the same protocol on one image, one noise level and a 128x128 crop; the table says so.
`--noise` takes any comma-separated specs of :func:`fastdenoise.noise.parse_noise`, e.g. `camera` (scored
against the noise-free rendering) or `camera:shot=0.01,read=2e-5`. The camera-noise section that
`benchmarks/camera_sweep.py --markdown --quality` writes at the end of quality.md is kept when the table is
rewritten.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys

from fastdenoise.evaluate import NOISES
from fastdenoise.evaluate import Row
from fastdenoise.evaluate import SAMPLES
from fastdenoise.evaluate import environment
from fastdenoise.evaluate import evaluate
from fastdenoise.evaluate import format_table
from fastdenoise.evaluate import rows_to_json
from fastdenoise.methods import available
from fastdenoise.noise import split_noises

HERE = os.path.dirname(os.path.abspath(__file__))
CAMERA_SECTION = "<!-- camera-noise section: written by benchmarks/camera_sweep.py --markdown --quality -->"


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-reduced", action="store_true", help="astronaut only, sigma 25, 128x128 crop")
    ap.add_argument("--images", default=",".join(SAMPLES))
    ap.add_argument("--noise", default=",".join(NOISES))
    ap.add_argument("--methods", default=",".join(available()))
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference configuration runs")
    ap.add_argument("--reference-images", default=None,
                    help="run the reference configuration on these images only (default: all)")
    ap.add_argument("--init", choices=("start", "scratch"), default="start",
                    help="networks begin from the shipped starts (default) or from random weights")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in results/<out>-<device>.partial.jsonl (each row is appended "
                         "there as soon as it exists), compute the rest")
    ap.add_argument("--partial", action="store_true",
                    help="write the table of the rows in the partial file only (marked partial), compute nothing")
    ap.add_argument("--out", default=os.path.join(HERE, "quality.md"))
    argv = sys.argv[1:] if argv is None else list(argv)
    a = ap.parse_args(argv)
    if a.cpu_reduced:
        a.images, a.noise, a.crop = "astronaut", "gaussian:25", 128
    split = lambda v: [x for x in v.split(",") if x]  # noqa: E731
    env = environment()
    slug = env["device"].split(" (")[0].replace(" ", "-").lower()
    stem = os.path.splitext(os.path.basename(a.out))[0]  # quality.md -> results/quality-<device>.json
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    partial = os.path.join(HERE, "results", f"{stem}-{slug}.partial.jsonl")
    done = []
    if a.partial and not os.path.exists(partial):
        ap.error(f"--partial: no partial rows at {partial}")
    if (a.resume or a.partial) and os.path.exists(partial):
        with open(partial) as f:
            done = [Row(**{k: v for k, v in json.loads(line).items() if k != "delta"}) for line in f if line.strip()]
        print(f"resuming: {len(done)} rows from {partial}", flush=True)
    elif os.path.exists(partial):
        os.remove(partial)

    def keep(row):
        with open(partial, "a") as f:
            f.write(json.dumps(dataclasses.asdict(row)) + "\n")

    images, rows = split(a.images), []
    ref_images = set(split(a.reference_images)) if a.reference_images else set(images)
    for im in ([] if a.partial else images):     # one image at a time: the reference runs only where asked
        rows += evaluate([im], split_noises(a.noise), split(a.methods), crop=a.crop, device=a.device, init=a.init,
                         reference=not a.no_reference and im in ref_images, done=done, on_row=keep)
    scope = ("REDUCED CPU table (astronaut only, Gaussian sigma 25, 128x128 centre crop; the full table: "
             "`make quality`, about 2 h on 2 CPU threads)" if a.cpu_reduced else
             f"{a.crop}x{a.crop} centre crops of {a.images.replace(',', ', ')}; noise {a.noise.replace(',', ', ')}")
    if a.partial:
        rows = done
        total = len(images) * len(split_noises(a.noise)) * (len(split(a.methods)) + 2)   # + noisy, BM3D
        scope = (f"**PARTIAL** ({len(rows)} of about {total} rows so far; the run continues with `--resume`): "
                 + scope)
        argv = [v for v in argv if v != "--partial"] + ([] if "--resume" in argv else ["--resume"])
    command = " ".join(["python -m benchmarks.quality", *map(shlex.quote, argv)])
    text = (f"# Quality table\n\n{scope}. Device: {env['device']}; torch {env['torch']}; {env['date']}.\n"
            f"Command: `{command}`. Networks from {'the shipped starts' if a.init == 'start' else 'random weights'}. "
            "Each method at "
            "its default iterations for this device; `ref` = the reference configuration (plain-torch ops, fp32, "
            "no CUDA graphs), same seeds and iterations. PSNR/SSIM: the default `p2n` convention of "
            "fastdenoise/metrics.py (clamp, uint8, peak 255; 11x11 Gaussian SSIM).\n\n" + format_table(rows) + "\n")
    if os.path.exists(a.out):        # keep the camera-noise section (benchmarks/camera_sweep.py) below the table
        with open(a.out) as f:
            old = f.read()
        if CAMERA_SECTION in old:
            text = text.rstrip("\n") + "\n\n" + old[old.index(CAMERA_SECTION):]
    _write_atomic(a.out, text)
    _write_atomic(os.path.join(HERE, "results", f"{stem}-{slug}.json"),
                  json.dumps({"environment": env, "args": vars(a), "rows": rows_to_json(rows)}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
