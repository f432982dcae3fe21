"""End-to-end time of each method's default ``fastdenoise.denoise`` (the CPU target: a 256x256 image in 90 s).

usage: python scripts/time_defaults.py [--images astronaut,chelsea] [--noise gaussian:25] [--methods ...]
       [--threads 2] [--out benchmarks/results/default-timing-cpu.json]

Each call is the whole ``denoise``: building the trainer (the start loaded), the training loop and the
inference, on a 256x256 centre crop, seed 0, with a fresh process cache per call. Prints a Markdown table
(seconds, iterations, PSNR gain) and writes the JSON with the machine, the date and the versions.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="astronaut")
    ap.add_argument("--noise", default="gaussian:25")
    ap.add_argument("--methods", default="p2n,nb2nb,noise2same,apr,blind2grad,zsn2n")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "default-timing-cpu.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import fastdenoise
    from fastdenoise.api import clear_cache
    from fastdenoise.evaluate import _metrics
    from fastdenoise.io import load_sample
    from fastdenoise.noise import add_noise

    rows = []
    for image in a.images.split(","):
        clean = np.asarray(load_sample(image, crop=256), dtype=np.float32)
        noisy = np.asarray(add_noise(clean, a.noise, seed=0), dtype=np.float32)
        base = _metrics(noisy, clean)[0]
        for m in a.methods.split(","):
            clear_cache()
            t0 = time.perf_counter()
            out, info = fastdenoise.denoise(noisy, method=m, seed=0, device="cpu", return_info=True)
            sec = time.perf_counter() - t0
            gain = _metrics(np.asarray(out, np.float32), clean)[0] - base
            loop = float(info.get("seconds") or 0.0)
            rows.append({"image": image, "noise": a.noise, "method": m, "seconds": sec, "train_seconds": loop,
                         "iters": info.get("iters"), "gain_db": gain})
            print(f"{image} {a.noise} {m}: {sec:.1f} s ({loop:.1f} s training), {info.get('iters')} iterations, "
                  f"{gain:+.2f} dB", flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": a.threads,
            "torch": torch.__version__, "python": platform.python_version(),
            "command": "python scripts/time_defaults.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    os.replace(tmp, a.out)
    print("\n| image | noise | method | seconds (whole denoise) | of which training | iterations | gain dB |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['noise']} | {r['method']} | {r['seconds']:.1f} | {r['train_seconds']:.1f} | "
              f"{r['iters']} | {r['gain_db']:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
