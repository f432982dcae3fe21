"""``fastdenoise`` command line: denoise images, train on a folder, evaluate quality, run the benchmarks.

Examples:
    fastdenoise denoise noisy.png -o out/                      # P2N, 100 iterations, shipped weights
    fastdenoise denoise a.png b.tif -o out/ --method nb2nb --iters 500 --device cuda
    fastdenoise denoise noisy.png -o out/ --clean clean.png --plot
    fastdenoise train --method p2n --data noisy_dir/ --out run/p2n.pt --iters 2000 --resume
    fastdenoise denoise x.png -o out/ --weights run/p2n.pt --iters 0   # use the trained net as is
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")


def _methods() -> list[str]:
    from fastdenoise.methods import available

    return available()


def _read(path: str):
    """(H, W, C) float32 on [0, 1] and the file's :class:`~fastdenoise.io.ImageInfo`."""
    from fastdenoise.io import read_image

    return read_image(path)


def _write(path: str, img: np.ndarray, like=None, protect=()) -> str:
    """Atomic write that refuses to replace any of ``protect`` (the inputs)."""
    from fastdenoise.io import write_image

    return write_image(path, img, like=like, protect=protect)


# ---------------------------------------------------------------------------------------------- plots
def _line_plot(values, h: int, w: int) -> np.ndarray:
    """A plain (h, w, 3) float image of a curve (white background, axes, blue line), numpy only."""
    img = np.ones((h, w, 3), np.float32)
    m = 6
    img[m:h - m, m] = 0.0
    img[h - m, m:w - m] = 0.0
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size < 2:
        return img
    lo, hi = float(v.min()), float(v.max())
    hi = hi if hi > lo else lo + 1.0
    xs = np.linspace(m + 1, w - m - 1, v.size)
    ys = (h - m - 1) - (v - lo) / (hi - lo) * (h - 2 * m - 2)
    for i in range(v.size - 1):  # dense sampling along each segment
        n = int(max(abs(xs[i + 1] - xs[i]), abs(ys[i + 1] - ys[i]))) + 2
        px = np.linspace(xs[i], xs[i + 1], n).round().astype(int)
        py = np.linspace(ys[i], ys[i + 1], n).round().astype(int)
        img[np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)] = (0.1, 0.3, 0.9)
    return img


def save_comparison(path: str, panels: list, titles: list, losses=None) -> str:
    """Side-by-side PNG of ``panels`` ((H, W, C) on [0, 1]) plus the loss curve.

    Uses matplotlib when installed (titles, axes); otherwise a numpy grid (panels left to right, the
    loss curve as the last panel, white 4-px gutters).
    """
    panels = [np.repeat(p, 3, 2) if p.shape[2] == 1 else p[..., :3] for p in panels]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(panels) + (1 if losses else 0)
        fig, axs = plt.subplots(1, n, figsize=(4 * n, 4))
        axs = np.atleast_1d(axs)
        for ax, p, t in zip(axs, panels, titles):
            ax.imshow(np.clip(p, 0, 1))
            ax.set_title(t)
            ax.axis("off")
        if losses:
            axs[-1].plot(losses)
            axs[-1].set_title("loss")
            axs[-1].set_xlabel("iteration")
        fig.tight_layout()
        tmp = f"{path}.tmp{os.getpid()}.png"
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        os.replace(tmp, path)
        return path
    except ImportError:
        pass
    h = max(p.shape[0] for p in panels)
    cols = [np.pad(np.clip(p, 0, 1), ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=1.0) for p in panels]
    if losses:
        cols.append(_line_plot(losses, h, h))
    gut = np.ones((h, 4, 3), np.float32)
    grid = np.concatenate([x for c in cols for x in (c, gut)][:-1], axis=1)
    return _write(path, grid)


# ---------------------------------------------------------------------------------------------- commands
def _out_path(outdir: str, inp: str, method: str) -> str:
    stem, ext = os.path.splitext(os.path.basename(inp))
    ext = ext.lower() if ext.lower() in (".png", ".tif", ".tiff", ".npy") else ".png"
    return os.path.join(outdir, f"{stem}_{method}{ext}")


def _clean_for(clean: str | None, inp: str, n_inputs: int) -> str | None:
    if clean is None:
        return None
    if os.path.isdir(clean):
        p = os.path.join(clean, os.path.basename(inp))
        return p if os.path.exists(p) else None
    if n_inputs > 1:
        raise ValueError("--clean FILE needs exactly one input (give a directory for several inputs)")
    return clean


def cmd_denoise(a) -> int:
    from fastdenoise.api import denoise

    os.makedirs(a.outdir, exist_ok=True)
    inputs = [os.path.abspath(p) for p in a.inputs]
    failed = 0
    for i, inp in enumerate(a.inputs):
        t0 = time.time()
        try:
            img, info = _read(inp)
            ref = None
            cp = _clean_for(a.clean, inp, len(a.inputs))
            if cp is not None:
                ref, _ = _read(cp)
                if ref.shape != img.shape:
                    raise ValueError(f"clean image {cp} has shape {ref.shape}, the input {img.shape}")
            opts = {} if a.ema is None else {"ema": a.ema if a.ema > 0 else None}
            if a.reference:
                opts["reference"] = True
            out, log = denoise(img, method=a.method, iters=a.iters, seed=a.seed, device=a.device,
                               weights=a.weights, clean=ref, return_info=True, **opts)
            dst = _out_path(a.outdir, inp, a.method)
            _write(dst, out, like=info, protect=inputs)
            msg = f"[{i + 1}/{len(a.inputs)}] {inp} -> {dst} ({log['iters']} iters, {time.time() - t0:.1f}s"
            if ref is not None:
                from fastdenoise.metrics import psnr

                p_in, p_out = float(psnr(img, ref)[0]), float(psnr(out, ref)[0])
                msg += f", PSNR {p_in:.2f} -> {p_out:.2f} dB"
            print(msg + ")", flush=True)
            if a.plot:
                panels, titles = [img, out], ["noisy", "denoised"]
                if ref is not None:
                    panels.append(ref)
                    titles.append("clean")
                stem = os.path.splitext(dst)[0]
                print(f"    plot -> {save_comparison(stem + '_compare.png', panels, titles, log['losses'])}")
        except Exception as e:  # noqa: BLE001 - report and continue with the other files
            failed += 1
            print(f"[{i + 1}/{len(a.inputs)}] FAILED {inp}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"{failed} of {len(a.inputs)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_train(a) -> int:
    import torch

    from fastdenoise.methods import get_builder

    files = sorted(os.path.join(a.data, f) for f in os.listdir(a.data) if f.lower().endswith(IMAGE_EXT))
    if not files:
        print(f"no images in {a.data}", file=sys.stderr)
        return 2
    from fastdenoise.io import to_tensor

    imgs = []
    for f in files:
        try:
            im, _ = _read(f)
            imgs.append(to_tensor(im)[0])
        except Exception as e:  # noqa: BLE001
            print(f"skipping {f}: {type(e).__name__}: {e}", file=sys.stderr)
    chans = {int(im.shape[0]) for im in imgs}
    if len(chans) != 1:
        print(f"images must all have the same number of channels, got {sorted(chans)}", file=sys.stderr)
        return 2
    from fastdenoise.methods.engine import crop_sampler

    kw = dict(device=a.device, seed=a.seed, checkpoint=a.out, checkpoint_every=a.checkpoint_every,
              resume=a.resume, progress=not a.quiet)
    if a.weights:
        kw["weights"] = a.weights
    if a.lr:
        kw["lr"] = a.lr
    tr = get_builder(a.method)(in_ch=chans.pop(), **kw)
    res = tr.fit_dataset(crop_sampler(imgs, a.crop, a.batch, a.seed), iters=a.iters)
    last = f"{res.losses[-1]:.5g}" if res.losses else "n/a"
    print(f"trained {a.method} on {len(imgs)} images: {tr.run.t} iterations ({res.iters} in this run, "
          f"{res.seconds:.1f}s), last loss {last}; checkpoint {a.out}")
    return 0


def cmd_eval(a) -> int:
    import json

    from fastdenoise.evaluate import environment
    from fastdenoise.evaluate import evaluate
    from fastdenoise.evaluate import format_table
    from fastdenoise.evaluate import rows_to_json

    split = lambda v: [x for x in v.split(",") if x]  # noqa: E731
    methods = _methods() if a.method == "all" else split(a.method)
    unknown = [m for m in methods if m not in _methods()]
    if unknown:
        print(f"unknown method(s) {unknown}; available: {', '.join(_methods())} or 'all'", file=sys.stderr)
        return 2
    rows = evaluate(split(a.images), split(a.noise), methods, crop=a.crop, device=a.device, seed=a.seed,
                    reference=a.reference, iters=a.iters, progress=None if a.json else print)
    if a.json:
        print(json.dumps({"environment": environment(), "rows": rows_to_json(rows)}, indent=1))
    else:
        env = environment()
        print(format_table(rows))
        print(f"\nDevice: {env['device']}; torch {env['torch']}; {env['date']}; crop {a.crop}; seed {a.seed}.")
    return 0


def cmd_bench(a) -> int:
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "benchmarks")):
        print("fastdenoise bench runs the benchmark suite of a source checkout (benchmarks/ not found)",
              file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "benchmarks.run"] + (["-k", a.k] if a.k else [])
    return subprocess.call(cmd, cwd=root)


def build_parser() -> argparse.ArgumentParser:
    from fastdenoise.methods import summary

    methods = _methods()
    listing = "\n".join(f"  {m:<11} {summary(m)}" for m in methods)
    p = argparse.ArgumentParser(
        prog="fastdenoise", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Self-supervised single-image denoising with fused kernels.\n\n"
                    "Each image is denoised by fitting a network to the noisy image itself (no clean data):\n"
                    f"{listing}\n"
                    "(iteration defaults are lower on the CPU than on CUDA; see each module's docstring)",
        epilog=__doc__.split("Examples:", 1)[1].join(["Examples:", ""]))
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("denoise", help="denoise image files", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Denoise each input and write OUTDIR/<name>_<method>.png (atomically; an input "
                                   "is never overwritten). A file that fails is reported and the others are still "
                                   "processed; the exit code is 1 if any failed.")
    d.add_argument("inputs", nargs="+", metavar="IN", help="noisy images (PNG, JPEG, TIFF 8/16/float, .npy)")
    d.add_argument("-o", "--outdir", required=True, help="output directory (created if missing)")
    d.add_argument("--method", choices=methods, default="p2n")
    d.add_argument("--iters", type=int, default=None,
                   help="iterations per image (default: the method's; --iters 0 with p2n = pretrained net only)")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    d.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    d.add_argument("--weights", default=None, help="initial weights (default p2n: the shipped Gaussian-pretrained)")
    d.add_argument("--ema", type=float, default=None,
                   help="output EMA decay, e.g. 0.95; 0 turns it off (default: the method's: 0.9 for p2n, 0.98 for "
                        "nb2nb, off for the others)")
    d.add_argument("--reference", action="store_true", help="plain-torch ops, fp32, no CUDA graphs (for checks)")
    d.add_argument("--clean", default=None, metavar="PATH",
                   help="clean reference: a file (one input) or a directory with files of the same names; "
                        "prints PSNR before/after")
    d.add_argument("--plot", action="store_true",
                   help="also write <name>_<method>_compare.png: noisy | denoised | clean and the loss curve")
    d.set_defaults(func=cmd_denoise)

    t = sub.add_parser("train", help="train a method on a folder of noisy images (dataset mode)",
                       description="Train on random crops of every image in DIR; the checkpoint (weights, optimiser, "
                                   "iteration) is written to --out every --checkpoint-every iterations and at the end. "
                                   "Use it with 'denoise --weights OUT --iters 0'.")
    t.add_argument("--method", choices=methods, default="p2n")
    t.add_argument("--data", required=True, metavar="DIR", help="folder of noisy images")
    t.add_argument("--out", required=True, help="checkpoint path")
    t.add_argument("--iters", type=int, default=1000)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    t.add_argument("--weights", default=None, help="initial weights")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="PSNR/SSIM/time of methods on sample images with synthetic noise",
                       description="Denoise 256x256 centre crops of scikit-image samples with synthetic noise and "
                                   "print a table (noisy input and BM3D, if installed, as rows).")
    e.add_argument("--method", default="p2n", help=f"comma-separated methods (default p2n), e.g. p2n,nb2nb, or 'all' ({', '.join(methods)})")
    e.add_argument("--noise", default="gaussian:25", help="comma-separated: gaussian:SIGMA255, poisson:LAMBDA")
    e.add_argument("--images", default="astronaut", help="comma-separated: astronaut,chelsea,coffee,camera")
    e.add_argument("--crop", type=int, default=256)
    e.add_argument("--iters", type=int, default=None, help="iterations (default: each method's)")
    e.add_argument("--reference", action="store_true", help="also run the reference configuration")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="run the benchmark suite (source checkout) and print its table")
    b.add_argument("-k", default=None, help="pytest -k expression, e.g. 'nb2nb and 4x3x256'")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return int(a.func(a))


if __name__ == "__main__":
    sys.exit(main())
