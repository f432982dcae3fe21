"""APR BSN: whole-image vs tiled inference after a single-image APR fit (session-8 experiment).

usage: python scripts/experiments/apr_tiles.py ITERS LR [init] [crop] [lam] [batch]
"""
import sys
import time

import numpy as np
import torch

from fastdenoise.evaluate import _metrics
from fastdenoise.io import load_sample
from fastdenoise.methods import apr
from fastdenoise.noise import add_noise
from fastdenoise.tiling import tiled

torch.set_num_threads(2)
iters, lr = int(sys.argv[1]), float(sys.argv[2])
init = sys.argv[3] if len(sys.argv) > 3 else "start"
crop = int(sys.argv[4]) if len(sys.argv) > 4 else 64
lam = float(sys.argv[5]) if len(sys.argv) > 5 else 4.0
batch = int(sys.argv[6]) if len(sys.argv) > 6 else 2
clean = np.asarray(load_sample("astronaut", crop=256), dtype=np.float32)
noisy = np.asarray(add_noise(clean, "gaussian:25", seed=0), dtype=np.float32)
print("noisy", round(_metrics(noisy, clean)[0], 2), flush=True)
y = torch.from_numpy(noisy).permute(2, 0, 1)[None].contiguous()
t0 = time.perf_counter()
tr = apr.build(stages="apr", init=init, lr=lr, crop=crop, batch=batch, tta=1, iters=iters, lam=lam)
res = tr.fit(y, seed=0)
print(f"fit {iters} its {time.perf_counter() - t0:.1f} s; loss first/last "
      f"{np.mean(res.losses[:10]) if res.losses else 0:.4f} {np.mean(res.losses[-10:]) if res.losses else 0:.4f}",
      flush=True)
m = tr.run.parts["bsn"].model
with torch.no_grad():
    for s in (1, 2):
        for tile in (256, 32, 40, 64):
            ov = tile // 4
            f = lambda t, s=s: m(t, s=s).float()  # noqa: E731
            out = f(y) if tile >= 256 else tiled(f, y, tile, ov)
            o = out[0].permute(1, 2, 0).clamp(0, 1).numpy()
            print(f"s={s} tile={tile}: {_metrics(o, clean)[0]:.2f} dB", flush=True)
