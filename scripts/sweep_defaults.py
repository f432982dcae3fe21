#!/usr/bin/env python
"""Measure a method's default (or any config) through fastdenoise.denoise on 256x256 held-out crops.

    python scripts/sweep_defaults.py METHOD ITERS[,ITERS...] IMAGES NOISES [field=value ...]
    e.g. THREADS=2 python scripts/sweep_defaults.py nb2nb 150,250 astronaut gaussian:25 lr=3e-4

Noise seeds as in the quality table (seed k for the k-th noise); one line per run: PSNR before -> after,
seconds, and what the networks started from. The CPU defaults in fastdenoise/methods/*.py were measured so.
"""
import sys, time, json, torch, numpy as np
torch.set_num_threads(int(__import__("os").environ.get("THREADS", "1")))
from fastdenoise import api
from fastdenoise.io import load_sample
from fastdenoise.noise import add_noise
from fastdenoise.metrics import psnr
m, its, ims, noises = sys.argv[1], [int(v) for v in sys.argv[2].split(",")], sys.argv[3].split(","), sys.argv[4].split(",")
kw = {}
for a in sys.argv[5:]:
    k, v = a.split("=", 1)
    try: v = json.loads(v)
    except Exception: pass
    kw[k] = v
for im in ims:
    clean = np.asarray(load_sample(im, crop=256), np.float32)
    for k, nz in enumerate(noises):
        noisy = np.asarray(add_noise(clean, nz, seed=k), np.float32)
        p0 = float(psnr(noisy, clean)[0])
        for it in its:
            t0 = time.time()
            out, info = api.denoise(noisy, method=m, iters=it, seed=0, device="cpu", return_info=True, **kw)
            p = float(psnr(out, clean)[0])
            print(f"{m} {im} {nz} iters={info['iters']} {p0:.2f} -> {p:.2f} ({p - p0:+.2f}) {time.time() - t0:.1f}s init={info.get('init')} {kw}", flush=True)
            api.clear_cache()
