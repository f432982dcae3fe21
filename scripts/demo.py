#!/usr/bin/env python
"""fastdenoise demo: P2N on a 256x256 astronaut crop with Gaussian noise sigma 25 (seed 0).

Starts from the shipped Gaussian-pretrained U-Net, fits P2N to the noisy image itself and prints the PSNR
(clamp, round to uint8, peak 255) of the noisy input, the pretrained network alone (0 iterations) and
P2N, the iterations used and the time. Writes ./out/demo/{clean,noisy,pretrained,p2n,compare}.png.

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
    from fastdenoise.noise import add_gaussian
    from fastdenoise.plots import save_comparison

    t_start = time.perf_counter()
    clean = torch.from_numpy(load_sample("astronaut", crop=256).transpose(2, 0, 1).copy())[None]
    noisy = add_gaussian(clean, 25.0, seed=a.seed).float()
    tr = p2n.build(device=a.device, seed=a.seed)
    dev = tr.device
    pre = tr.fit(noisy, iters=0).output.cpu()
    iters = tr.total_iters(a.iters)
    res = tr.fit(noisy, iters=iters, clean=clean)
    out = res.best.cpu()  # the output EMA of P2N's estimates (P2NConfig.ema), as fastdenoise.denoise returns

    p_noisy, p_pre, p_out = psnr_quick(noisy, clean), psnr_quick(pre, clean), psnr_quick(out, clean)
    print(f"device {dev}; P2N iterations {res.iters}; loop time {res.seconds:.1f}s "
          f"({res.seconds / max(1, res.iters):.2f}s/iter)")
    ema = f", output EMA {tr.cfg.ema}" if res.ema_output is not None else ""
    print(f"PSNR noisy {p_noisy:.2f} dB | pretrained (0 iters) {p_pre:.2f} dB | "
          f"P2N ({res.iters} iters{ema}) {p_out:.2f} dB")

    os.makedirs(a.out, exist_ok=True)
    hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    for name, img in (("clean", clean), ("noisy", noisy), ("pretrained", pre), ("p2n", out)):
        write_image(os.path.join(a.out, f"{name}.png"), np.clip(hwc(img), 0, 1))
    cmp_path = save_comparison(os.path.join(a.out, "compare.png"), [hwc(noisy), hwc(out), hwc(clean)],
                               [f"noisy {p_noisy:.2f} dB", f"P2N {p_out:.2f} dB", "clean"], res.losses)
    print(f"wrote {a.out}/{{clean,noisy,pretrained,p2n}}.png and {cmp_path}; total {time.perf_counter() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
