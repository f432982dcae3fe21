"""APR-RD default candidates on astronaut 256^2 sigma 25 (session-8 experiment): PSNR and seconds.

usage: python scripts/experiments/apr_default.py ITERS RD_ITERS [key=value ...]   (APRConfig fields)
"""
import ast
import sys
import time

import numpy as np
import torch

from fastdenoise.evaluate import _metrics
from fastdenoise.io import load_sample
from fastdenoise.methods import apr
from fastdenoise.noise import add_noise

torch.set_num_threads(2)
iters, rd = int(sys.argv[1]), int(sys.argv[2])
kw = {}
for a in sys.argv[3:]:
    k, v = a.split("=", 1)
    try:
        kw[k] = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        kw[k] = v
image = kw.pop("image", "astronaut")
clean = np.asarray(load_sample(image, crop=256), dtype=np.float32)
noisy = np.asarray(add_noise(clean, kw.pop("noise", "gaussian:25"), seed=0), dtype=np.float32)
y = torch.from_numpy(noisy).permute(2, 0, 1)[None].contiguous()
t0 = time.perf_counter()
res = apr.fit(y, iters=iters, rd_iters=rd, seed=0, **kw)
sec = time.perf_counter() - t0
o = res.output[0].permute(1, 2, 0).clamp(0, 1).numpy()
print(f"{image} iters={iters} rd={rd} {kw}: {_metrics(o, clean)[0]:.2f} dB (noisy "
      f"{_metrics(noisy, clean)[0]:.2f}) {sec:.1f} s", flush=True)
