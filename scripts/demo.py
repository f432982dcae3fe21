#!/usr/bin/env python
"""fastdenoise demo: P2N on a 256x256 astronaut crop with camera noise (seed 0).

The noise is ``camera`` (:data:`fastdenoise.noise.CAMERA_DEFAULT`): the clean crop unprocessed to raw
sensor values, Poisson-Gaussian sensor noise on an RGGB mosaic, demosaiced and processed back to sRGB, so
it is signal-dependent and correlated between neighbouring pixels and between channels, as real photo noise
is. ``--noise gaussian:25`` (or any spec of ``fastdenoise.noise.parse_noise``) picks another noise.

P2N starts from its shipped start, fits to the noisy image itself, and the demo prints the PSNR (clamp,
round to uint8, peak 255; against the noise-free rendering through the same camera pipeline) of the noisy
input, the best classical denoiser that needs no noise level (a J-invariant calibrated wavelet denoiser,
``fastdenoise.evaluate.wavelet_jinv``), the start alone (0 iterations) and the fitted P2N, with the
iterations and the time. Writes ./out/demo/{reference,noisy,wavelet,start,p2n,compare}.png.

The method's default iterations: 100 on a GPU (a few seconds), 50 from the start on a CPU (about a minute on
2 cores); --iters sets another number. The same seed gives the same result on any machine, however busy.
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
    ap.add_argument("--iters", type=int, default=None, help="P2N iterations (default: the method's, 100 on CUDA, "
                                                              "50 on the CPU)")
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

    from fastdenoise.io import load_sample
    from fastdenoise.io import write_image
    from fastdenoise.methods import p2n
    from fastdenoise.engine import psnr_quick
    from fastdenoise.evaluate import wavelet_jinv
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
    tr = p2n.build(device=a.device, seed=a.seed)
    dev = tr.device
    pre = tr.fit(noisy, iters=0).output.cpu()
    iters = tr.total_iters(a.iters)
    res = tr.fit(noisy, iters=iters, clean=clean)
    out = res.best.cpu()  # the output EMA of P2N's estimates (P2NConfig.ema), as fastdenoise.denoise returns

    p_noisy, p_pre, p_out = psnr_quick(noisy, clean), psnr_quick(pre, clean), psnr_quick(out, clean)
    p_wav = psnr_quick(wav, clean)
    print(f"noise {spec}; device {dev}; P2N iterations {res.iters}; loop time {res.seconds:.1f}s "
          f"({res.seconds / max(1, res.iters):.2f}s/iter); wavelet {t_wav:.1f}s")
    ema = f", output EMA {tr.cfg.ema}" if res.ema_output is not None else ""
    print(f"PSNR noisy {p_noisy:.2f} dB | J-invariant wavelet (classical, blind) {p_wav:.2f} dB | "
          f"P2N start alone (0 iters) {p_pre:.2f} dB | P2N fitted ({res.iters} iters{ema}) {p_out:.2f} dB")

    os.makedirs(a.out, exist_ok=True)
    hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    for name, img in (("reference", clean), ("noisy", noisy), ("wavelet", wav), ("start", pre), ("p2n", out)):
        write_image(os.path.join(a.out, f"{name}.png"), np.clip(hwc(img), 0, 1))
    cmp_path = save_comparison(os.path.join(a.out, "compare.png"),
                               [hwc(noisy), hwc(wav), hwc(pre), hwc(out), hwc(clean)],
                               [f"noisy {p_noisy:.2f} dB", f"wavelet {p_wav:.2f} dB", f"start {p_pre:.2f} dB",
                                f"P2N {p_out:.2f} dB", "reference"], res.losses)
    print(f"wrote {a.out}/{{reference,noisy,wavelet,start,p2n}}.png and {cmp_path}; total {time.perf_counter() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
