#!/usr/bin/env python
"""Train a shipped start for one method: ``python scripts/pretrain.py --method M [options]``.

Every method except P2N is trained the way its paper trains: by its own self-supervised loss, in the
engine's dataset mode, on NOISY images only (the clean images below are only used to make them). P2N's
start is supervised on synthetic Gaussian noise, as the paper's init: ``--method p2n`` runs
``scripts/pretrain_p2n.py`` with the remaining arguments.

* Data: the scikit-image bundled images except astronaut, chelsea, coffee and camera (held out for
  evaluation) and colour dead-leaves images (``scripts/pretrain_p2n.py``'s generators); ``--channels 1``
  trains a grayscale start on their luma.
* Noise, drawn per crop from a generator seeded by (seed, iteration): blind Gaussian sigma ~ U[0, 50],
  Poisson lambda ~ U[5, 50], spatially correlated Gaussian sigma ~ U[5, 50], and camera noise (a random
  Brooks et al. camera per crop, ``fastdenoise.noise.add_camera(random=True)``) (``--noise-mix`` weights;
  three weights leave camera noise out).
* Everything seeded; ``--resume`` continues from the engine checkpoint ``OUT.ckpt`` exactly (weights,
  optimisers, run state; crops and noise depend only on (seed, t)).
* Output: ``OUT`` with every network of the method in fp16 (``{"method", "parts": {name: {"model": ...}},
  "meta"}``), loadable with ``weights=OUT`` (``fastdenoise denoise --weights OUT``).

The log holds the command, a progress bar, the mean loss every ``--log-every`` iterations and the PSNR
of ``trainer.denoise`` on a held-out 256x256 crop (astronaut, or camera for a grayscale start) at
``--held-out`` noise (default Gaussian sigma 25), before and after.

On a GPU machine: ``FASTDENOISE_OUT=/dir python scripts/pretrain.py --method nb2nb --device cuda
--minutes 7`` writes ``/dir/<method>_start.pt`` and its log there (sized for an 8-minute window).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from fastdenoise.methods import available  # noqa: E402
from fastdenoise.methods import get_builder  # noqa: E402
from fastdenoise.engine import crop_sampler  # noqa: E402
from fastdenoise.engine import iter_seed  # noqa: E402


def training_images(channels: int, seed: int, n_synth: int) -> list[torch.Tensor]:
    """(C, H, W) float tensors: the allowed scikit-image images and ``n_synth`` dead-leaves images."""
    from pretrain_p2n import dead_leaves
    from pretrain_p2n import load_skimage_images
    from pretrain_p2n import to_gray

    rng = np.random.default_rng(seed)
    imgs = [im for _, im in load_skimage_images(min_side=128)] + [dead_leaves(rng) for _ in range(n_synth)]
    if channels == 1:
        imgs = [to_gray(im) for im in imgs]
    return [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in imgs]


def noisy_sampler(clean, crop: int, batch: int, seed: int, mix: tuple[float, ...]):
    """``sampler(t)``: a batch of clean crops, each with its own noise (Gaussian / Poisson / correlated /
    camera, with the weights ``mix``; a 3-tuple has no camera noise)."""
    from fastdenoise.noise import add_camera
    from fastdenoise.noise import add_correlated
    from fastdenoise.noise import add_gaussian
    from fastdenoise.noise import add_poisson

    crops = crop_sampler(clean, crop, batch, seed, augment=True)
    mix = tuple(mix) + (0.0,) * (4 - len(mix))
    p = np.asarray(mix, np.float64) / sum(mix)

    def sampler(t: int) -> torch.Tensor:
        x = crops(t)
        rng = np.random.default_rng(iter_seed(seed + 104729, t))
        out = []
        for i in range(x.shape[0]):
            kind, s = rng.choice(4, p=p), int(rng.integers(2**62))
            if kind == 0:
                out.append(add_gaussian(x[i], float(rng.uniform(0, 50)), s))
            elif kind == 1:
                out.append(add_poisson(x[i].clamp_min(0), float(rng.uniform(5, 50)), s))
            elif kind == 2:
                out.append(add_correlated(x[i], float(rng.uniform(5, 50)), s))
            else:
                out.append(add_camera(x[i], s, random=True))
        return torch.stack(out).float()

    return sampler


def held_out(channels: int, noise: str = "gaussian:25"):
    """(reference, noisy): the held-out crop with ``noise`` (seed 0), scored against the noise's target (the
    clean crop, or the noise-free rendering for camera noise)."""
    from fastdenoise.io import load_sample
    from fastdenoise.io import to_tensor
    from fastdenoise.noise import parse_noise

    x = to_tensor(load_sample("astronaut" if channels == 3 else "camera", crop=256))
    if noise == "gaussian:25":      # the generator draw the shipped logs were made with
        g = torch.Generator().manual_seed(0)
        return x, x + 25.0 / 255.0 * torch.randn(x.shape, generator=g)
    spec = parse_noise(noise)
    return spec.target(x, 0).float(), spec(x, 0).float()


def shipped_start_psnr(method: str, channels: int, device, x, y, stages: str = "apr+rd") -> float | None:
    """Held-out PSNR of the shipped start of ``method`` (None when the package ships none)."""
    from fastdenoise.metrics import psnr

    path = os.path.join(ROOT, "fastdenoise", "weights", f"{method}_start.pt")   # grayscale: its own or folded
    if not os.path.exists(path):
        return None
    kw = {"stages": stages} if method == "apr" else {}
    tr = get_builder(method)(in_ch=channels, device=device, init="start", progress=False, **kw)
    return float(psnr(tr.denoise(y), x)[0])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, choices=available())
    a, rest = ap.parse_known_args(argv)
    if a.method == "p2n":
        import pretrain_p2n

        return pretrain_p2n.main(rest) or 0
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--crop", type=int, default=None, help="crop side (default: the method's dataset-mode crop)")
    ap.add_argument("--batch", type=int, default=None, help="crops per step (default: the method's)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3)
    ap.add_argument("--weight-ema", type=float, default=0.0,
                    help="ship the EMA of the weights with this decay (e.g. 0.999) instead of the last iterate")
    ap.add_argument("--noise-mix", default="1,1,1",
                    help="weights of Gaussian, Poisson, correlated and camera noise (3 weights: no camera noise)")
    ap.add_argument("--held-out", default="gaussian:25",
                    help="noise of the held-out crop the log reports and --accept compares (e.g. camera)")
    ap.add_argument("--stages", default="apr+rd", choices=("apr", "apr+rd"),
                    help="APR-RD only: train the BSN alone (apr; the file keeps the start's student) or both")
    ap.add_argument("--dead-leaves", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--minutes", type=float, default=0, help="wall-time budget: the engine's time_budget picks "
                                                               "the iteration count (schedules follow it)")
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    ap.add_argument("--init", choices=("scratch", "start", "rgb"), default="start",
                    help="start: continue the shipped start (default); scratch: random weights; rgb: a 1-channel "
                         "network from the RGB start folded over the colour channels")
    ap.add_argument("--accept", choices=("start", "noisy"), default="start",
                    help="write OUT only if the held-out PSNR beats the shipped start's (default; the noisy "
                         "input's where no start is shipped) or only the noisy input's")
    ap.add_argument("--weights", default=None, help="begin from this weights file (a start or a trainer checkpoint, "
                                                    "e.g. one of your own) instead of --init")
    ap.add_argument("--rgb-start", default=None, help="with --init rgb: the RGB start to fold (default: the shipped "
                                                      "fastdenoise/weights/<method>_start.pt)")
    ap.add_argument("--export", action="store_true", help="no training: write OUT from OUT.ckpt (a run that "
                                                          "was stopped) and report its held-out PSNR")
    ap.add_argument("--out", default=None, help="default: fastdenoise/weights/<method>_start[_gray].pt "
                                                "($FASTDENOISE_OUT/<method>_start.pt when set)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    suffix = "_gray" if a.channels == 1 else ""
    out_dir = os.environ.get("FASTDENOISE_OUT") or os.path.join(ROOT, "fastdenoise", "weights")
    out = a.out or os.path.join(out_dir, f"{a.method}_start{suffix}.pt")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    kw = dict(device=a.device, seed=a.seed, checkpoint=out + ".ckpt", checkpoint_every=a.checkpoint_every,
              resume=a.resume, progress=True, log_every=max(1, a.log_every), init=a.init)
    if a.minutes:
        kw["time_budget"] = 60.0 * a.minutes
    if a.lr:
        kw["lr"] = a.lr
    kw["weight_ema"] = a.weight_ema
    if a.method == "apr":
        kw["stages"] = a.stages     # the start holds both networks (the CPU single-image default is "apr")
    if a.weights:
        if a.init == "rgb":
            ap.error("--weights and --init rgb exclude each other")
        if not os.path.exists(a.weights):
            ap.error(f"--weights: no such file: {a.weights}")
        kw["weights"] = a.weights
    if a.rgb_start and a.init != "rgb":
        ap.error("--rgb-start needs --init rgb")
    if a.rgb_start and not os.path.exists(a.rgb_start):
        ap.error(f"--rgb-start: no such file: {a.rgb_start}")
    if a.init == "rgb":
        if a.channels != 1:
            ap.error("--init rgb needs --channels 1")
        # RGB weights on a grayscale network fold over the colour channels (the engine's grayscale policy)
        kw["init"] = "scratch"
        kw["weights"] = a.rgb_start or os.path.join(ROOT, "fastdenoise", "weights", f"{a.method}_start.pt")
    tr = get_builder(a.method)(in_ch=a.channels, **kw)
    crop, batch = tr.method.dataset_crops(tr.device, a.crop, a.batch)
    clean = training_images(a.channels, a.seed, a.dead_leaves)
    mix = tuple(float(v) for v in a.noise_mix.split(","))
    if len(mix) not in (3, 4) or min(mix) < 0 or sum(mix) <= 0:
        ap.error(f"--noise-mix: 3 or 4 non-negative weights, not all 0, got {a.noise_mix!r}")
    print(f"# {' '.join(['python scripts/pretrain.py', *argv])}", flush=True)
    print(f"method {a.method}: {len(clean)} training images, crops {batch}x{crop}^2, noise mix {mix}, "
          f"{a.iters} iterations, device {tr.device}, torch {torch.__version__}", flush=True)
    x, y = held_out(a.channels, a.held_out)
    from fastdenoise.metrics import psnr

    if a.export:
        tr.load_checkpoint(out + ".ckpt")
        n = len(tr.run.losses)
        if tr.run.wema is not None:     # stopped mid-stage under --weight-ema: export the average, as the end would
            with torch.no_grad():
                tr.run.part.model.load_state_dict(tr.run.wema)
            print(f"export: the weight EMA of the stopped stage ({tr.run.t} iterations)", flush=True)
        after = float(psnr(tr.denoise(y), x)[0])
        print(f"export of {out}.ckpt at iteration {n}: held-out crop {a.held_out}: noisy {float(psnr(y, x)[0]):.2f} "
              f"dB -> {after:.2f} dB", flush=True)
        tr.save_weights(out, meta={"iters": n, "args": vars(a), "held_out_psnr": after, "exported": True})
        print(f"saved {out} ({os.path.getsize(out) / 1e6:.2f} MB)", flush=True)
        return 0
    before = float(psnr(tr.denoise(y), x)[0])
    if a.iters == 0:                    # no training: ship the start as it is (e.g. an RGB start folded, --init rgb)
        print(f"0 iterations: held-out crop {a.held_out}: noisy {float(psnr(y, x)[0]):.2f} dB, start {before:.2f} dB",
              flush=True)
        tr.save_weights(out, meta={"iters": 0, "args": vars(a), "held_out_psnr": before})
        print(f"saved {out} ({os.path.getsize(out) / 1e6:.2f} MB)", flush=True)
        return 0
    sampler = noisy_sampler(clean, crop, batch, a.seed, mix)
    t0 = time.time()
    res = tr.fit_dataset(sampler, iters=a.iters, seed=a.seed)
    losses = np.asarray(tr.run.losses)
    for i in range(0, len(losses), a.log_every):
        print(f"iter {i + len(losses[i:i + a.log_every])} loss {losses[i:i + a.log_every].mean():.6f}", flush=True)
    after = float(psnr(tr.denoise(y), x)[0])
    print(f"{res.iters} iterations in this run ({time.time() - t0:.0f} s), {len(losses)} in all; held-out crop "
          f"{a.held_out}: noisy {float(psnr(y, x)[0]):.2f} dB, start before {before:.2f} dB -> after {after:.2f} dB",
          flush=True)
    noisy = float(psnr(y, x)[0])
    bar, what = noisy, "the noisy input"
    if a.accept == "start":
        shipped = shipped_start_psnr(a.method, a.channels, tr.device, x, y, a.stages)
        if shipped is not None and shipped > noisy:
            bar, what = shipped, "the shipped start"
    if not (np.isfinite(losses).all() and after > bar):
        # a diverged run must not replace a shipped start (denoise would pick it up by default)
        bad = out + ".rejected"
        tr.save_weights(bad, meta={"iters": len(losses), "args": vars(a), "held_out_psnr": after})
        print(f"REJECTED: the held-out PSNR ({after:.2f} dB) is not above {what} ({bar:.2f} dB) or a "
              f"loss is not finite; weights kept as {bad}, {out} left as it was", flush=True)
        return 1
    tr.save_weights(out, meta={"iters": len(losses), "args": vars(a), "held_out_psnr": after})
    print(f"saved {out} ({os.path.getsize(out) / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
