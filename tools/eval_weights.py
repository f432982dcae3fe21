"""Evaluate a weights file (or the shipped start) through ``fastdenoise.denoise`` at the method's CPU default.

usage: python tools/eval_weights.py METHOD WEIGHTS|shipped IMAGES SEEDS [key=value ...]
  IMAGES, SEEDS: comma lists (astronaut,coffee / 0,1); key=value: config fields (iters=0: the start alone,
  noise=gaussian:25, scored against the noise's target: the noise-free rendering for camera noise).
  Prints PSNR, gain and seconds per (image, seed), then the mean gain.
"""
import ast
import sys
import time

import numpy as np
import torch

import fastdenoise
from fastdenoise.evaluate import _metrics
from fastdenoise.io import load_sample
from fastdenoise.noise import parse_noise

torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
method, weights, images, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
kw = {}
for a in sys.argv[5:]:
    k, v = a.split("=", 1)
    try:
        kw[k] = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        kw[k] = v
noise = parse_noise(kw.pop("noise", "gaussian:25"))
gains = []
for image in images:
    sample = np.asarray(load_sample(image, crop=256), dtype=np.float32)
    noisy = np.asarray(noise(sample, 0), dtype=np.float32)
    clean = np.asarray(noise.target(sample, 0), dtype=np.float32)   # camera noise: the noise-free rendering
    for s in seeds:
        t0 = time.perf_counter()
        out = fastdenoise.denoise(noisy, method=method, seed=int(s), device="cpu",
                                  weights=None if weights == "shipped" else weights, **kw)
        sec = time.perf_counter() - t0
        p, q = _metrics(np.asarray(out, np.float32), clean)[0], _metrics(noisy, clean)[0]
        gains.append(p - q)
        print(f"{method} {weights} {image} {noise} seed {s} {kw}: {p:.2f} dB ({p - q:+.2f}) {sec:.1f} s",
              flush=True)
print(f"mean gain {np.mean(gains):+.2f} dB over {len(gains)} runs", flush=True)
