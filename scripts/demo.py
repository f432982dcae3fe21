#!/usr/bin/env python
"""fastdenoise demo: P2N on a 256x256 astronaut crop with camera noise (seed 0).

The noise is ``camera`` (:data:`fastdenoise.noise.CAMERA_DEFAULT`): the clean crop unprocessed to raw
sensor values, Poisson-Gaussian sensor noise on an RGGB mosaic, demosaiced and processed back to sRGB, so
it is signal-dependent and correlated between neighbouring pixels and between channels, as real photo noise
is. ``--noise gaussian:25`` (or any spec of ``fastdenoise.noise.parse_noise``) picks another noise.

Printed, as PSNR (clamp, round to uint8, peak 255) against the noise-free rendering through the same camera
pipeline:

* the noisy input;
* the best classical denoiser that needs no noise level (a J-invariant calibrated wavelet denoiser,
  ``fastdenoise.evaluate.wavelet_jinv``);
* P2N's two starts alone (one forward pass each): the paper's Gaussian-pretrained start, and the camera
  start (the Gaussian start supervised further on camera noise), the CPU default;
* P2N fitted to the image from the camera start as ``fastdenoise.denoise`` runs it (``--iters``; default 100
  on CUDA from the Gaussian start, 50 on the CPU). ``denoise`` reads the noise from the image first: camera
  noise is shared between neighbouring pixels, so it fits the four stride-2 sub-images (``pd="auto"``), and
  the demo prints what it read. The starts alone run the same way.

Writes ./out/demo/{reference,noisy,wavelet,gaussian_start,camera_start,p2n_fit,compare}.png. The same seed
gives the same result on any machine, however busy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=None,
                    help="P2N iterations (default: the device's, 100 on CUDA, 50 on the CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", default="camera", help="noise spec (fastdenoise.noise.parse_noise; default camera)")
    ap.add_argument("--out", default=os.path.join("out", "demo"))
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (0: torch's default, or 1 when the machine is already busy)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    elif hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1) - 0.5:
        torch.set_num_threads(1)   # oversubscribed threads are far slower than one on a busy machine
        print(f"machine busy (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores): using 1 thread")

    from fastdenoise.engine import psnr_quick
    from fastdenoise.evaluate import wavelet_jinv
    from fastdenoise.io import load_sample
    from fastdenoise.io import write_image
    from fastdenoise.noise import parse_noise
    from fastdenoise.plots import save_comparison

    spec = parse_noise(a.noise)
    t_start = time.perf_counter()
    sample = torch.from_numpy(load_sample("astronaut", crop=256).transpose(2, 0, 1).copy())[None]
    noisy = spec(sample, a.seed).float()
    clean = spec.target(sample, a.seed).float()    # the noise-free reference (for camera noise: the rendering)
    t0 = time.perf_counter()
    wav = torch.from_numpy(wavelet_jinv(noisy[0].permute(1, 2, 0).numpy())).permute(2, 0, 1)[None]
    t_wav = time.perf_counter() - t0

    from fastdenoise import denoise

    img = noisy[0].permute(1, 2, 0).numpy()
    common = dict(method="p2n", device=a.device, seed=a.seed)
    t0 = time.perf_counter()
    g_start = denoise(img, iters=0, start="gaussian", **common)
    t_gauss = time.perf_counter() - t0
    start = denoise(img, iters=0, **common)                      # the device's default start
    fit, info = denoise(img, iters=a.iters, clean=clean[0].permute(1, 2, 0).numpy(), return_info=True, **common)
    as_t = lambda h: torch.from_numpy(np.ascontiguousarray(h)).permute(2, 0, 1)[None]  # noqa: E731
    g_start, start, fit = as_t(g_start), as_t(start), as_t(fit)
    stop = info.get("guard_stop")

    p = {k: psnr_quick(v, clean) for k, v in
         (("noisy", noisy), ("wavelet", wav), ("gauss", g_start), ("start", start), ("fit", fit))}
    name = os.path.splitext(info["init"]["model"])[0].replace("unet_n2n_", "").replace("_gray", "").replace(
        "gauss", "gaussian")
    nz = info.get("noise", {})
    print(f"noise {spec}; read from the image: level {nz.get('level255', float('nan')):.1f}/255, correlation between "
          f"neighbouring pixels {nz.get('correlation', float('nan')):.2f} -> pd {info['pd']}"
          + (" (the four stride-2 sub-images fitted together)" if info["pd"] > 1 else ""))
    print(f"device {info['device']}; wavelet {t_wav:.1f}s; a start alone {t_gauss:.1f}s; P2N fit {info['iters']} "
          f"iterations in {info['seconds']:.1f}s ({info['seconds'] / max(1, info['iters']):.2f}s/iter)")
    print(f"PSNR noisy {p['noisy']:.2f} dB | J-invariant wavelet (classical, blind) {p['wavelet']:.2f} dB | "
          f"P2N Gaussian start alone {p['gauss']:.2f} dB | P2N {name} start alone {p['start']:.2f} dB | "
          f"P2N fitted from it ({info['iters']} iters, output EMA) {p['fit']:.2f} dB")
    if stop is not None:
        print(f"the collapse guard stopped the fit at iteration {stop + 1} and kept the {name} start "
              f"(docs/methods/p2n.md)")

    os.makedirs(a.out, exist_ok=True)
    hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    for fname, img in (("reference", clean), ("noisy", noisy), ("wavelet", wav), ("gaussian_start", g_start),
                       (f"{name}_start", start), ("p2n_fit", fit)):
        write_image(os.path.join(a.out, f"{fname}.png"), np.clip(hwc(img), 0, 1))
    cmp_path = save_comparison(
        os.path.join(a.out, "compare.png"), [hwc(noisy), hwc(wav), hwc(g_start), hwc(start), hwc(fit), hwc(clean)],
        [f"noisy {p['noisy']:.2f} dB", f"wavelet {p['wavelet']:.2f} dB", f"Gaussian start {p['gauss']:.2f} dB",
         f"{name} start {p['start']:.2f} dB", f"P2N fitted {p['fit']:.2f} dB", "reference"], info["losses"])
    print(f"wrote {a.out}/{{reference,noisy,wavelet,gaussian_start,{name}_start,p2n_fit}}.png and {cmp_path}; "
          f"total {time.perf_counter() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
