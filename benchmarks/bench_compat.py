"""The one-line switches of fastdenoise.compat against the clients they replace, timed in one process.

Rows (each an interleaved median: every round runs each variant once, in turn, so load on a shared
machine hits all of them alike):

* official Neighbor2Neighbor ``train.py`` step, 4xCxHxW crops: ``official`` (its mask pair, per-channel
  unfold/boolean-index sub-images, eager two-term loss), ``switch`` (the same loop body with
  ``generate_mask_pair``/``generate_subimages`` imported from ``fastdenoise.compat.neighbor2neighbor``),
  ``fused`` (the switch plus ``loss_terms`` for the five loss statements);
* deepinv 0.5 ``Neighbor2Neighbor`` loss: ``deepinv`` (its own loss; it runs the network on ``y`` again)
  and ``switch`` (``fastdenoise.compat.deepinv.Neighbor2Neighbor``, reusing the Trainer's ``x_net``);
* ZS-N2N ``loss_func`` step: ``official`` and ``switch`` (``fastdenoise.compat.zsn2n``).

``sampler+loss`` rows use an identity stand-in network (a leaf tensor gets the gradient), so only the
sampling and the loss (forward and backward) are timed; the ZS-N2N ``downsampler+loss`` row a one-parameter
stand-in (``w * x``) inside the official ``train`` step; ``iteration`` rows time a whole training step
(forward, loss, backward, Adam step) with the method's network: Nb2Nb's U-Net (48 features) for the
Nb2Nb and deepinv rows, ZS-N2N's two-layer network (48 features) for ZS-N2N.

Run: ``python benchmarks/bench_compat.py [--rounds 15] [--threads 1] [--out benchmarks/results/compat-cpu.json]``.
pytest collects a small smoke case (``pytest benchmarks/bench_compat.py --benchmark-disable``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from bench_nb2nb import upstream_mask_pair  # noqa: E402
from bench_nb2nb import upstream_subimage  # noqa: E402
from bench_zsn2n import upstream_pair  # noqa: E402

from deepinv_env import import_deepinv  # noqa: E402  (deepinv beside the CPU torch)

from fastdenoise.compat import neighbor2neighbor as nbc  # noqa: E402
from fastdenoise.compat import zsn2n as zsc  # noqa: E402
from fastdenoise.models.unet_nb2nb import UNetNb2Nb  # noqa: E402
from fastdenoise.models.zsn2n import ZSN2NNet  # noqa: E402  (the official network's shape)


# ------------------------------------------------------------------------------------------------
# Neighbor2Neighbor: the official loop body, with its helpers as arguments


def nb2nb_iteration(network, optimizer, noisy, mask_pair, subimages, fused_loss, Lambda=0.5):  # noqa: N803
    """One official train.py iteration (Lambda1 = Lambda2 = 1); ``fused_loss`` swaps the loss lines for
    ``loss_terms``. ``network`` None: identity stand-in (the sub-image is a leaf), no optimizer step."""
    if optimizer is not None:
        optimizer.zero_grad()
    mask1, mask2 = mask_pair(noisy)
    noisy_sub1 = subimages(noisy, mask1)
    if network is None:
        noisy_output = noisy_sub1.detach().requires_grad_(True)
        noisy_denoised = noisy * 0.9
    else:
        with torch.no_grad():
            noisy_denoised = network(noisy)
        noisy_output = network(noisy_sub1)
    if fused_loss:
        loss1, loss2, loss_all = nbc.loss_terms(noisy_output, noisy, noisy_denoised, mask1, Lambda, 1.0, 1.0)
    else:
        noisy_sub2 = subimages(noisy, mask2)
        noisy_sub1_denoised = subimages(noisy_denoised, mask1)
        noisy_sub2_denoised = subimages(noisy_denoised, mask2)
        diff = noisy_output - noisy_sub2
        exp_diff = noisy_sub1_denoised - noisy_sub2_denoised
        loss1 = torch.mean(diff**2)
        loss2 = Lambda * torch.mean((diff - exp_diff) ** 2)
        loss_all = loss1 + loss2
    loss_all.backward()
    if optimizer is not None:
        optimizer.step()
    return loss1.item(), loss2.item(), loss_all.item()


def nb2nb_variants(shape, with_net, gen):
    noisy = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    net = opt = None
    if with_net:
        torch.manual_seed(0)
        net = UNetNb2Nb(shape[1], shape[1], 48)
        opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    official = (lambda img: upstream_mask_pair(img, gen), upstream_subimage)
    switch = (nbc.generate_mask_pair, nbc.generate_subimages)
    return {
        "official": lambda: nb2nb_iteration(net, opt, noisy, *official, False),
        "switch": lambda: nb2nb_iteration(net, opt, noisy, *switch, False),
        "fused": lambda: nb2nb_iteration(net, opt, noisy, *switch, True),
    }


# ------------------------------------------------------------------------------------------------
# deepinv: the Trainer's step (x_net = model(y, physics), loss, backward, step)


def deepinv_variants(dinv, shape, with_net):
    from fastdenoise.compat.deepinv import Neighbor2Neighbor

    y = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    if with_net:
        torch.manual_seed(0)
        unet = UNetNb2Nb(shape[1], shape[1], 48)
        opt = torch.optim.Adam(unet.parameters(), lr=3e-4)

        def model(x, physics=None, **kw):
            return unet(x)
    else:
        unet, opt = None, None

        def model(x, physics=None, **kw):
            return x * 0.9 + 0.05  # a stand-in with no parameters: the leaf below gets the gradient

    def step(loss):
        if opt is not None:
            opt.zero_grad()
        if unet is None:
            yl = y.detach().requires_grad_(True)
            x_net = model(yl)
            val = loss(x=None, x_net=x_net, y=yl, physics=physics, model=model)
        else:
            x_net = model(y)
            val = loss(x=None, x_net=x_net, y=y, physics=physics, model=model)
        val.backward()
        if opt is not None:
            opt.step()
        return val.item()

    theirs, ours = dinv.loss.Neighbor2Neighbor(gamma=2.0), Neighbor2Neighbor(gamma=2.0)
    return {"deepinv": lambda: step(theirs), "switch": lambda: step(ours)}


# ------------------------------------------------------------------------------------------------
# ZS-N2N: the official train(model, optimizer, noisy_img)


def zsn2n_official_loss(noisy_img, model):
    noisy1, noisy2 = upstream_pair(noisy_img)
    pred1, pred2 = noisy1 - model(noisy1), noisy2 - model(noisy2)
    loss_res = 0.5 * (torch.nn.functional.mse_loss(noisy1, pred2) + torch.nn.functional.mse_loss(noisy2, pred1))
    denoised1, denoised2 = upstream_pair(noisy_img - model(noisy_img))
    loss_cons = 0.5 * (torch.nn.functional.mse_loss(pred1, denoised1) + torch.nn.functional.mse_loss(pred2, denoised2))
    return loss_res + loss_cons


class Scale(torch.nn.Module):
    """Stand-in network with one parameter (``w * x``): the loss rows time downsampling and loss only."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        return self.w * x


def zsn2n_variants(shape, with_net=True):
    img = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = ZSN2NNet(shape[1], 48) if with_net else Scale()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def official():
        loss = zsn2n_official_loss(img, net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return {"official": official, "switch": lambda: zsc.train(net, opt, img)}


# ------------------------------------------------------------------------------------------------


def interleaved_medians(variants: dict, rounds: int, warmup: int = 2) -> dict:
    """Median seconds per variant; every round calls each variant once, in turn."""
    times = {k: [] for k in variants}
    for r in range(warmup + rounds):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[k].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


def rows(rounds: int, small: bool = False, deepinv=True):
    gen = torch.Generator().manual_seed(0)
    s64, s256 = (4, 3, 64, 64), (4, 3, 256, 256)
    cases = [("nb2nb official train.py", "sampler+loss", s64, lambda: nb2nb_variants(s64, False, gen))]
    if not small:
        cases += [("nb2nb official train.py", "sampler+loss", s256, lambda: nb2nb_variants(s256, False, gen)),
                  ("nb2nb official train.py", "iteration (UNet 48)", s64, lambda: nb2nb_variants(s64, True, gen))]
    dinv = import_deepinv() if deepinv else None
    if dinv is not None:
        cases += [("deepinv Neighbor2Neighbor", "sampler+loss", s64, lambda: deepinv_variants(dinv, s64, False))]
        if not small:
            cases += [("deepinv Neighbor2Neighbor", "sampler+loss", s256, lambda: deepinv_variants(dinv, s256, False)),
                      ("deepinv Neighbor2Neighbor", "iteration (UNet 48)", s64,
                       lambda: deepinv_variants(dinv, s64, True))]
    if not small:
        z = (1, 3, 256, 256)
        cases += [("ZS-N2N official loss_func", "downsampler+loss", z, lambda: zsn2n_variants(z, False)),
                  ("ZS-N2N official loss_func", "iteration (net 48)", z, lambda: zsn2n_variants(z))]
    out = []
    for client, what, shape, make in cases:
        med = interleaved_medians(make(), rounds)
        base = med.get("official", med.get("deepinv"))
        out.append({"client": client, "timed": what, "shape": "x".join(map(str, shape)),
                    "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
                    "speedup": {k: round(base / v, 2) for k, v in med.items()}})
        print(f"{client:28s} {what:22s} {out[-1]['shape']:12s} " + "  ".join(
            f"{k} {v * 1e3:8.2f} ms ({base / v:5.2f}x)" for k, v in med.items()), flush=True)
    return out, (getattr(dinv, "__version__", None) if dinv is not None else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    ap.add_argument("--no-deepinv", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res, dv = rows(args.rounds, deepinv=not args.no_deepinv)
    if args.out:
        import fastdenoise

        doc = {"device": f"cpu-{platform.machine()}-{os.cpu_count()}cores (shared, loaded by other work)",
               "threads": args.threads, "rounds": args.rounds, "method": "interleaved medians",
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "torch": torch.__version__, "fastdenoise": getattr(fastdenoise, "__version__", "dev"),
               "deepinv": dv, "command": "python benchmarks/bench_compat.py " + " ".join(argv or sys.argv[1:]),
               "rows": res}
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


def test_compat_smoke():
    """Each switch runs (one small round): the CI smoke case."""
    res, _ = rows(rounds=1, small=True)
    assert res and all(r["median_ms"] for r in res)


if __name__ == "__main__":
    main()
