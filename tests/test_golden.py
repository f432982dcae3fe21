"""Golden records: each method's output and final weights for fixed seeds, bit for bit.

A refactor of the engine must leave every method's results unchanged: this test recomputes, for every method,
a short single-image fit (3 iterations, seed 7, the method's own defaults otherwise) and a short dataset-mode
fit, and compares the SHA-256 of the outputs and the final weights with ``tests/golden.json`` (recorded with
the C++ kernels, the CPU default: the fused losses round differently from the plain-torch reference). Regenerate the
file only for a change that is meant to change results: ``python tests/test_golden.py --write``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden.json")
METHODS = ["p2n", "nb2nb", "noise2same", "apr", "blind2grad", "zsn2n"]
SMALL = {"p2n": {"start": "gaussian", "guard": 0},   # the records predate the camera start and the guard
         "noise2same": {"base": 8, "crop": 16, "batch": 2},
         "apr": {"base": 8, "head": 16, "crop": 32, "batch": 1, "tta": 1},
         "blind2grad": {"base": 8, "n_masks": 2, "n_samples": 2, "infer_batch": 2}}

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("bit-exact records of CPU fits")]


def _digest(t) -> str:
    h = hashlib.sha256()
    if isinstance(t, dict):
        for k in sorted(t):
            h.update(k.encode())
            h.update(t[k].detach().float().contiguous().numpy().tobytes())
    else:
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _noisy(seed: int, shape=(1, 3, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(shape[0], shape[1], 8, 8, generator=g), size=shape[2:],
                                        mode="bilinear", align_corners=False)
    return (x + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)


def record(method: str) -> dict:
    from fastdenoise.methods import get_builder

    make = get_builder(method)
    y = _noisy(1)
    tr = make(device="cpu", progress=False, **SMALL.get(method, {}))
    res = tr.fit(y, iters=3, seed=7)
    single = {"output": _digest(res.output), "weights": _digest(tr.model.state_dict()), "iters": res.iters}
    imgs = [_noisy(2 + i, (1, 3, 40, 40))[0] for i in range(2)]
    tr = make(device="cpu", progress=False, init="scratch", **SMALL.get(method, {}))
    out = tr.fit_dataset(_dataset_sampler(imgs), iters=2, seed=3)
    dataset = {"weights": _digest(tr.model.state_dict()), "iters": out.iters}
    return {"single": single, "dataset": dataset}


def _dataset_sampler(imgs):
    from fastdenoise.engine import crop_sampler

    sample = crop_sampler(imgs, 16, 2, seed=5)
    return lambda t: sample(t)


@pytest.mark.parametrize("method", METHODS)
def test_golden_record(method):
    with open(GOLDEN) as f:
        want = json.load(f)[method]
    assert record(method) == want


if __name__ == "__main__" and "--write" in sys.argv:
    torch.set_num_threads(1)
    recs = {m: record(m) for m in METHODS}
    with open(GOLDEN, "w") as f:
        json.dump(recs, f, indent=1)
    print(json.dumps(recs, indent=1))
