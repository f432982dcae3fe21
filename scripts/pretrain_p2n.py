#!/usr/bin/env python
"""Supervised blind-AWGN pre-training of the P2N U-Net (UNetN2N) from offline data only.

P2N starts from "parameters pre-trained on Gaussian noise"; those weights are not public, so fastdenoise
ships its own (a documented deviation, docs/DESIGN.md). This script reproduces them:

* data: the images bundled with scikit-image EXCEPT astronaut, chelsea, coffee and camera (kept for
  evaluation), grayscale ones replicated to RGB, plus (optional) synthetic colour dead-leaves images;
* noise: y = x + sigma * N(0, 1), sigma ~ U[0, 50]/255 per patch, no clipping (as fastdenoise.noise);
* random crops + the 8 dihedral transforms; L2 (default) or L1 loss; Adam with cosine decay;
* everything seeded (numpy Generator + torch.manual_seed): same command, same weights (on one thread).

The result is an fp16 state dict (about 2 MB) in ``fastdenoise/weights/unet_n2n_gauss.pt``.

The shipped weights are two stages on one CPU core (logs in benchmarks/results/training-logs/):
    # stage 1 (pretrain_p2n.stage1.log; cut by --max-minutes at iteration 784, which --stop-at reproduces)
    python scripts/pretrain_p2n.py --iters 2600 --stop-at 784 --patch 64 --batch 8 --threads 1 --out stage1.pt
    # stage 2 (pretrain_p2n.stage2.log): a fresh cosine schedule from the stage-1 weights, another data seed
    python scripts/pretrain_p2n.py --init stage1.pt --seed 1 --iters 4000 --patch 64 --batch 8 --threads 1 \
        2>&1 | tee benchmarks/results/training-logs/pretrain_p2n.stage2.log
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fastdenoise.models.unet_n2n import UNetN2N  # noqa: E402

HELD_OUT = ("astronaut", "chelsea", "coffee", "camera")
# bundled files that are not natural-ish photographs or are duplicates/too small
SKIP = ("chessboard_GRAY", "horse", "lfw_subset", "motorcycle_disp", "no_time_for_that_tiny",
        "lbpcascade_frontalface_opencv", "multipage", "multipage_rgb")


def load_skimage_images(min_side: int = 96) -> list[tuple[str, np.ndarray]]:
    """The scikit-image bundled images (float32 HxWx3 in [0,1]) minus the held-out and skipped ones."""
    import skimage
    from skimage import io as skio

    ddir = os.path.join(os.path.dirname(skimage.__file__), "data")
    out = []
    for fn in sorted(os.listdir(ddir)):
        name, ext = os.path.splitext(fn)
        if ext.lower() not in (".png", ".jpg", ".jpeg", ".tif") or name in HELD_OUT or name in SKIP:
            continue
        img = skio.imread(os.path.join(ddir, fn))
        img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        if min(img.shape[:2]) < min_side:
            continue
        out.append((name, np.ascontiguousarray(img)))
    return out


def dead_leaves(rng: np.random.Generator, size: int = 256, n_disks: int = 600,
                rmin: float = 2.0, rmax: float = 80.0) -> np.ndarray:
    """Colour dead-leaves image: disks with power-law radii (p(r) ~ r^-3), drawn back to front."""
    img = np.full((size, size, 3), rng.random(3), dtype=np.float32)
    # inverse-CDF sampling of p(r) ~ r^-3 on [rmin, rmax]
    u = rng.random(n_disks)
    r = 1.0 / np.sqrt(1.0 / rmin**2 - u * (1.0 / rmin**2 - 1.0 / rmax**2))
    cy, cx = rng.random(n_disks) * size, rng.random(n_disks) * size
    cols = rng.random((n_disks, 3)).astype(np.float32)
    for k in range(n_disks):
        y0, y1 = max(0, int(cy[k] - r[k])), min(size, int(cy[k] + r[k]) + 1)
        x0, x1 = max(0, int(cx[k] - r[k])), min(size, int(cx[k] + r[k]) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        m = (yy - cy[k]) ** 2 + (xx - cx[k]) ** 2 <= r[k] ** 2
        img[y0:y1, x0:x1][m] = cols[k]
    # mild smooth shading so the synthetic images are not perfectly flat
    g = np.linspace(-1, 1, size, dtype=np.float32)
    shade = 1.0 + 0.1 * (rng.standard_normal() * g[:, None] + rng.standard_normal() * g[None, :])
    return np.clip(img * shade[..., None], 0, 1).astype(np.float32)


def dihedral(p: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 dihedral transforms of an HxWxC patch."""
    if k >= 4:
        p = p[:, ::-1]
    return np.rot90(p, k % 4, axes=(0, 1))


def to_gray(img: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an HxWx3 image, as HxWx1."""
    return np.ascontiguousarray((img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None])


def rgb_to_gray_state(sd: dict) -> dict:
    """UNetN2N RGB weights -> the exactly equivalent 1-channel network: the net run on a grayscale image
    replicated to RGB with its three outputs averaged (the first conv and the input skip of dec1a are summed
    over their input channels, the output conv averaged over its output channels)."""
    sd = {k: v.float().clone() for k, v in sd.items()}
    sd["enc0.weight"] = sd["enc0.weight"].sum(1, keepdim=True)
    w = sd["dec1a.weight"]
    sd["dec1a.weight"] = torch.cat([w[:, :-3], w[:, -3:].sum(1, keepdim=True)], 1)
    sd["out.weight"] = sd["out.weight"].mean(0, keepdim=True)
    sd["out.bias"] = sd["out.bias"].mean(0, keepdim=True)
    return sd


def sample_batch(rng, pool, batch, patch):
    out = np.empty((batch, patch, patch, pool[0].shape[-1]), dtype=np.float32)
    for i in range(batch):
        img = pool[rng.integers(len(pool))]
        h, w = img.shape[:2]
        y0, x0 = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        out[i] = dihedral(img[y0:y0 + patch, x0:x0 + patch], int(rng.integers(8)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def eval_astronaut(net, sigma=25.0, seed=0, name=None):
    """PSNR (dB, uint8 convention) of the net on a 256x256 held-out crop with AWGN sigma (255 scale): the
    astronaut for an RGB net, camera for a grayscale one (``name`` overrides)."""
    from fastdenoise.io import load_sample
    from fastdenoise.io import to_tensor
    from fastdenoise.metrics import psnr

    c = net.in_ch
    x = to_tensor(load_sample(name or ("astronaut" if c == 3 else "camera"), crop=256))
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True) if c == 1 else x.expand(-1, c, -1, -1).contiguous()
    g = torch.Generator().manual_seed(seed)
    y = x + sigma / 255.0 * torch.randn(x.shape, generator=g)
    dev = next(net.parameters()).device
    with torch.no_grad():
        xh = net(y.to(dev)).cpu()
    return float(psnr(y, x)[0]), float(psnr(xh, x)[0])


def eval_camera(net, seed=0, name=None):
    """PSNR (dB) of the net on the same held-out crop with the default ``camera`` noise, scored against the
    noise-free rendering (as ``fastdenoise.noise.NoiseSpec.target``)."""
    from fastdenoise.io import load_sample
    from fastdenoise.io import to_tensor
    from fastdenoise.metrics import psnr
    from fastdenoise.noise import add_camera

    c = net.in_ch
    x = to_tensor(load_sample(name or ("astronaut" if c == 3 else "camera"), crop=256))
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True) if c == 1 else x.expand(-1, c, -1, -1).contiguous()
    y = add_camera(x, seed).float()
    t = add_camera(x, seed, noiseless=True).float()
    dev = next(net.parameters()).device
    with torch.no_grad():
        xh = net(y.to(dev)).cpu()
    return float(psnr(y, t)[0]), float(psnr(xh, t)[0])


def camera_pairs(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy and noise-free camera renderings of clean patches ``x`` (B, C, H, W), one random Brooks et al.
    camera per patch (``add_camera(..., random=True)``); a 1-channel patch is rendered in grey."""
    from fastdenoise.noise import add_camera

    y = add_camera(x, seed, random=True).float()
    t = add_camera(x, seed, random=True, noiseless=True).float()
    return y, t


def save_weights(net, path, meta):
    sd = {k: v.detach().to(torch.float16).cpu() for k, v in net.state_dict().items()}
    tmp = path + ".tmp"
    torch.save({"arch": "UNetN2N", "in_ch": net.in_ch, "out_ch": net.out_ch, "state_dict": sd, "meta": meta}, tmp)
    os.replace(tmp, path)


def save_state(path, net, opt, sched, rng, it, run):
    """Everything a resumed run needs to continue exactly: fp32 weights, optimiser, schedule, RNG states."""
    tmp = path + ".tmp"
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "it": it, "run": run}, tmp)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=2600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4, help="Adam lr, cosine-decayed to lr/50")
    ap.add_argument("--loss", choices=("l2", "l1"), default="l2")
    ap.add_argument("--sigma-max", type=float, default=50.0, help="sigma ~ U[0, sigma_max]/255 per patch")
    ap.add_argument("--camera-frac", type=float, default=0.0,
                    help="probability a patch gets camera noise (fastdenoise.noise.add_camera, a random camera per "
                         "patch, target its noise-free rendering) instead of Gaussian noise")
    ap.add_argument("--dead-leaves", type=int, default=48, help="number of synthetic 256^2 images (0: none)")
    ap.add_argument("--p-synth", type=float, default=0.3, help="probability a patch comes from dead leaves")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (same data stream; cuda is ~100x faster)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop early (and save) after this wall time")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop (and save) after this iteration, keeping the --iters schedule: reproduces a run "
                         "that --max-minutes cut short")
    ap.add_argument("--init", default="", help="start from these weights (a file this script wrote) instead of "
                                                "a random init: a second stage with a fresh schedule")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3,
                    help="3: RGB (grayscale images replicated); 1: a grayscale start (every image as its luma, "
                         "independent noise per pixel); --init with RGB weights converts them exactly")
    ap.add_argument("--resume", default="", help="training-state file (written every --save-every iterations "
                                                  "next to --out as OUT.state): continue exactly where it stopped")
    ap.add_argument("--accept-over-init", action="store_true",
                    help="with --init: write OUT only if the held-out PSNR beats the --init weights' (else OUT is "
                         "removed and the weights are kept as OUT.rejected; exit status 1)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--out", default=os.path.join(ROOT, "fastdenoise", "weights", "unet_n2n_gauss.pt"))
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    nat = load_skimage_images(min_side=a.patch)
    synth = [dead_leaves(rng) for _ in range(a.dead_leaves)]
    print(f"data: {len(nat)} scikit-image images ({', '.join(n for n, _ in nat)}); "
          f"{len(synth)} dead-leaves images; held out: {', '.join(HELD_OUT)}", flush=True)
    print(f"config: {vars(a)}  torch {torch.__version__}  (data prep {time.time() - t0:.1f}s)", flush=True)
    nat_imgs = [im for _, im in nat]
    if a.channels == 1:
        nat_imgs, synth = [to_gray(im) for im in nat_imgs], [to_gray(im) for im in synth]

    dev = torch.device(a.device)
    net = UNetN2N(a.channels)
    if a.init:
        ck = torch.load(a.init, map_location="cpu", weights_only=True)
        sd = {k: v.float() for k, v in ck["state_dict"].items()}
        if sd["enc0.weight"].shape[1] == 3 and a.channels == 1:
            sd = rgb_to_gray_state(sd)
        net.load_state_dict(sd)
        print(f"init: {a.init} ({ck.get('meta', {}).get('iters', '?')} iterations)", flush=True)
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, a.iters) / a.iters)))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    state_path = a.out + ".state"
    t0, run = time.time(), 0.0
    start = 1
    if a.resume:
        st = torch.load(a.resume, map_location="cpu", weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        start, run = int(st["it"]) + 1, float(st["run"])
        print(f"resumed from {a.resume} at iteration {start - 1}", flush=True)
    p_start = None
    if not a.resume:
        pn, pd = eval_astronaut(net)
        p_start = pd if a.init else None
        print(f"start: held-out crop sigma 25: noisy {pn:.2f} dB -> {pd:.2f} dB", flush=True)
        if a.camera_frac > 0:
            cn, cd = eval_camera(net)
            print(f"start: held-out crop camera: noisy {cn:.2f} dB -> {cd:.2f} dB", flush=True)
    it = start - 1
    for it in range(start, a.iters + 1):
        n_syn = int(rng.binomial(a.batch, a.p_synth)) if synth else 0
        parts = []
        if a.batch - n_syn:
            parts.append(sample_batch(rng, nat_imgs, a.batch - n_syn, a.patch))
        if n_syn:
            parts.append(sample_batch(rng, synth, n_syn, a.patch))
        x = torch.cat(parts).to(dev)
        sig = torch.from_numpy(rng.uniform(0, a.sigma_max / 255.0, (a.batch, 1, 1, 1)).astype(np.float32))
        noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        y = x + sig.to(dev) * noise.to(dev)
        if a.camera_frac > 0:
            cam = torch.from_numpy(rng.random(a.batch) < a.camera_frac)
            cseed = int(rng.integers(2**31))
            if bool(cam.any()):
                yc, tc = camera_pairs(x[cam].cpu(), cseed)
                y, x = y.clone(), x.clone()
                y[cam], x[cam] = yc.to(dev), tc.to(dev)
        out = net(y)
        loss = (out - x).pow(2).mean() if a.loss == "l2" else (out - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run = loss.item() if it == 1 else 0.98 * run + 0.02 * loss.item()
        if it % a.log_every == 0 or it == 1:
            msg = f"iter {it:5d}/{a.iters} loss {loss.item():.6f} avg {run:.6f} lr {sched.get_last_lr()[0]:.2e} " \
                  f"elapsed {time.time() - t0:7.1f}s"
            if it % (a.log_every * 10) == 0:
                pn, pd = eval_astronaut(net)
                msg += f" | held-out s25: noisy {pn:.2f} dB -> {pd:.2f} dB"
                if a.camera_frac > 0:
                    cn, cd = eval_camera(net)
                    msg += f" | camera: noisy {cn:.2f} dB -> {cd:.2f} dB"
            print(msg, flush=True)
        if it % a.save_every == 0:
            save_weights(net, a.out, {"iters": it, "of": a.iters, "args": vars(a)})
            save_state(state_path, net, opt, sched, rng, it, run)
        if a.stop_at and it >= a.stop_at:
            print(f"stop-at reached at iter {it}", flush=True)
            break
        if a.max_minutes and time.time() - t0 > 60 * a.max_minutes:
            print(f"time budget reached at iter {it}", flush=True)
            break
    pn, pd = eval_astronaut(net)
    meta = {"iters": it, "of": a.iters, "args": vars(a), "final_avg_loss": run, "astronaut_s25_psnr": pd}
    if a.accept_over_init and p_start is not None and not pd > p_start:
        # a continuation that does not beat the weights it began from must not replace them
        save_weights(net, a.out + ".rejected", meta)
        if os.path.exists(a.out):
            os.remove(a.out)
        print(f"REJECTED: held-out crop sigma 25 {pd:.2f} dB is not above the start's {p_start:.2f} dB; weights "
              f"kept as {a.out}.rejected", flush=True)
        return 1
    save_weights(net, a.out, meta)
    print(f"done: {it} iters in {time.time() - t0:.1f}s, final avg loss {run:.6f}; "
          f"held-out crop sigma 25: noisy {pn:.2f} dB -> pretrained {pd:.2f} dB; saved {a.out} "
          f"({os.path.getsize(a.out) / 1e6:.2f} MB)", flush=True)


if __name__ == "__main__":
    raise SystemExit(main() or 0)
