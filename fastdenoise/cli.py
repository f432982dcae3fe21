"""``fastdenoise`` command line: denoise images, train on a folder, evaluate quality, run the benchmarks.

Examples:
    fastdenoise denoise noisy.png -o out/                      # P2N from the shipped start (100 its; CPU 50)
    fastdenoise denoise a.png b.tif -o out/ --method nb2nb --iters 500 --device cuda
    fastdenoise denoise noisy.png -o out/ --clean clean.png --plot
    fastdenoise train --method p2n --data noisy_dir/ --out run/p2n.pt --iters 2000 --resume
    fastdenoise denoise x.png -o out/ --weights run/p2n.pt --iters 0   # use the trained net as is
    fastdenoise denoise photos/ -r -o out/ --max-memory 4G --progress  # a folder tree, any size; re-run resumes
    fastdenoise denoise stack.tif -o out/ --axes ZYX                   # one model for the whole stack
    torchrun --nproc_per_node=4 -m fastdenoise denoise photos/ -o out/ # files sharded over 4 ranks
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


def _write(path: str, img: np.ndarray, like=None, protect=()) -> str:
    """Atomic write that refuses to replace any of ``protect`` (the inputs)."""
    from fastdenoise.io import write_image

    return write_image(path, img, like=like, protect=protect)


# ---------------------------------------------------------------------------------------------- commands
def _out_path(outdir: str, inp: str, method: str, rel: str = "") -> str:
    stem, ext = os.path.splitext(os.path.basename(inp))
    ext = ext.lower() if ext.lower() in (".png", ".tif", ".tiff", ".npy") else ".png"
    return os.path.join(outdir, rel, f"{stem}_{method}{ext}")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def collect_inputs(inputs: list, recursive: bool = False, exclude: str | None = None) -> list[tuple[str, str]]:
    """``(file, relative output folder)`` for every input: files as given; folders walked (``recursive``:
    sub-folders too, mirrored as relative folders), image files only (``IMAGE_EXT``), hidden files and
    everything under ``exclude`` (the output folder) left out; sorted within each folder."""
    out = []
    for p in inputs:
        if not os.path.isdir(p):
            out.append((p, ""))
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and not (exclude and _inside(os.path.join(root, d), exclude)))
            if not recursive:
                dirs[:] = []
            rel = os.path.relpath(root, p)
            for f in sorted(files):
                if f.startswith(".") or not f.lower().endswith(IMAGE_EXT):
                    continue
                out.append((os.path.join(root, f), "" if rel == "." else rel))
    return out


def _clean_for(clean: str | None, inp: str, n_inputs: int) -> str | None:
    if clean is None:
        return None
    if os.path.isdir(clean):
        p = os.path.join(clean, os.path.basename(inp))
        return p if os.path.exists(p) else None
    if n_inputs > 1:
        raise ValueError("--clean FILE needs exactly one input (give a directory for several inputs)")
    return clean


def _options(a) -> dict:
    opts = {} if a.ema is None else {"ema": a.ema if a.ema > 0 else None}
    if a.reference:
        opts["reference"] = True
    if a.max_memory is not None:
        from fastdenoise.tiling import parse_size

        opts["max_memory"] = parse_size(a.max_memory)
    if a.progress:
        opts["progress"] = True
    if getattr(a, "time_budget", None) is not None:
        opts["time_budget"] = a.time_budget
    if getattr(a, "init", None) is not None:
        opts["init"] = a.init
    if getattr(a, "start", None) is not None:
        opts["start"] = a.start
    if getattr(a, "guard", None) is not None:
        opts["guard"] = a.guard
    if getattr(a, "pd", None) is not None:
        opts["pd"] = a.pd
    if getattr(a, "blend", None) is not None:
        opts["blend"] = a.blend
    return opts


def _auto_or(kind, name: str):
    """argparse type: ``"auto"`` or a value of ``kind``."""
    def parse(v: str):
        if v == "auto":
            return v
        try:
            return kind(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be 'auto' or a {kind.__name__}, got {v!r}") from None
    return parse


def _plan_line(plan: dict) -> str:
    parts = []
    if plan.get("crop"):
        b = plan["budget"]
        size = f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"
        parts.append(f"fitted on {plan['batch']} crop(s) of {plan['crop']}x{plan['crop']} per iteration "
                     f"(a whole-image step exceeds the {size} budget)")
    if plan.get("tile"):
        parts.append(f"denoised in {plan['tile']}x{plan['tile']} tiles")
    return "; ".join(parts)


def _denoise_file(a, inp: str, dst: str, protect: list, n_inputs: int) -> str:
    """Denoise one file into ``dst``; returns the report line's details."""
    from fastdenoise.api import denoise
    from fastdenoise.io import read_stack
    from fastdenoise.io import write_stack

    vol, info = read_stack(inp, axes=a.axes)
    if info.slices > 1 or info.axes not in ("YX", "YXC"):
        print(f"    {os.path.basename(inp)}: {info.describe()}", flush=True)
    opts = _options(a)
    common = dict(method=a.method, iters=a.iters, seed=a.seed, device=a.device, weights=a.weights,
                  alpha=info.alpha, return_info=True, **opts)
    ref = None
    if info.slices > 1:
        from fastdenoise.stacks import denoise_stack

        if common.pop("pd", "auto") not in ("auto", 1) or common.pop("blend", "auto") not in ("auto", 1.0):
            raise ValueError("--pd and --blend work on single images; a stack's slices are fitted as one dataset")

        out, log = denoise_stack(vol, **common)
        detail = f"{info.slices} slices, one model: {log['iters']} iters on {log['batch']}x{log['crop']}^2 crops"
    else:
        img = vol[0]
        cp = _clean_for(a.clean, inp, n_inputs)
        if cp is not None:
            ref = read_stack(cp)[0][0]
            if ref.shape != img.shape:
                raise ValueError(f"clean image {cp} has shape {ref.shape}, the input {img.shape}")
        out, log = denoise(img, clean=ref, **common)
        starts = sorted(set(log.get("init", {}).values()))
        detail = f"{log['iters']} iters from {'+'.join(starts) if starts else 'scratch'}"
        if log.get("pd", 1) > 1:
            why = (f": noise correlation {log['noise']['correlation']:.2f}" if a.pd in (None, "auto") and "noise" in log
                   else "")
            detail += f" on its {log['pd'] ** 2} pixel-shuffled sub-images (pd {log['pd']}{why})"
        if log.get("blend", 1.0) < 1.0:
            detail += f", {log['blend']:.2f} of the estimate kept (blend; it removed more than the noise)"
        plan = _plan_line(log.get("plan", {}))
        if plan:
            detail += f"; {plan}"
        out = out[None]
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    write_stack(dst, out, like=info, protect=protect)
    if ref is not None:
        from fastdenoise.metrics import psnr

        p_in, p_out = float(psnr(vol[0], ref)[0]), float(psnr(out[0], ref)[0])
        detail += f", PSNR {p_in:.2f} -> {p_out:.2f} dB"
    if a.plot and info.slices == 1:
        panels, titles = [vol[0], out[0]], ["noisy", "denoised"]
        if ref is not None:
            panels.append(ref)
            titles.append("clean")
        stem = os.path.splitext(dst)[0]
        from fastdenoise.plots import save_comparison

        detail += f"; plot {save_comparison(stem + '_compare.png', panels, titles, log['losses'])}"
    return detail


def _denoise_batch(a, images: list) -> tuple[list, dict]:
    """Same-shape images fitted together (``denoise_many``)."""
    from fastdenoise.api import denoise_many

    return denoise_many(images, method=a.method, iters=a.iters, seed=a.seed, device=a.device,
                        weights=a.weights, return_info=True, **_options(a))


def cmd_denoise(a) -> int:
    from fastdenoise import distributed as D

    if a.batch < 1:
        print(f"--batch must be >= 1, got {a.batch}", file=sys.stderr)
        return 2
    if a.pd is not None and a.pd != "auto" and a.pd < 1:
        print(f"--pd must be 'auto' or an integer >= 1, got --pd {a.pd}", file=sys.stderr)
        return 2
    if a.blend is not None and a.blend != "auto" and not 0 <= a.blend <= 1:
        print(f"--blend must be 'auto' or a number on [0, 1], got --blend {a.blend}", file=sys.stderr)
        return 2
    if a.start is not None and a.method != "p2n":
        print(f"--start picks one of P2N's shipped starts; --method {a.method} has one start", file=sys.stderr)
        return 2
    if a.guard is not None and (a.method != "p2n" or not 0 <= a.guard < 1):
        print(f"--guard is P2N's collapse guard, a ratio in [0, 1) (0: off); got --guard {a.guard} with --method "
              f"{a.method}", file=sys.stderr)
        return 2
    rank, size, a.device = D.init(a.device)
    os.makedirs(a.outdir, exist_ok=True)
    listing = collect_inputs(a.inputs, a.recursive, exclude=a.outdir)
    if not listing:
        if rank == 0:
            print(f"no image files ({', '.join(IMAGE_EXT)}) in {', '.join(a.inputs)}", file=sys.stderr)
        D.finish()
        return 2
    protect = [os.path.abspath(p) for p, _ in listing]
    jobs, seen = [], {}
    for inp, rel in listing:
        dst = os.path.abspath(_out_path(a.outdir, inp, a.method, rel))
        jobs.append((inp, dst, seen.get(dst)))
        seen.setdefault(dst, inp)
    n = len(jobs)
    done = skipped = failed = 0
    groups: dict = {}        # (shape, dtype) -> [(tag, inp, dst, image, info)] waiting for a batched fit

    def flush(key) -> None:
        nonlocal done, failed
        group = groups.pop(key)
        t0 = time.time()
        try:
            outs, log = _denoise_batch(a, [g[3] for g in group])
        except Exception as e:  # noqa: BLE001 - the batch failed: every file of it, one by one
            print(f"batch of {len(group)} failed ({type(e).__name__}: {e}); one by one", file=sys.stderr, flush=True)
            for tag, inp, dst, _, _ in group:
                run_one(tag, inp, dst)
            return
        for (tag, inp, dst, _, info), out in zip(group, outs):
            try:
                write_stack(dst, out[None], like=info, protect=protect)
                done += 1
                how = f"fitted with {len(group) - 1} other(s) at once" if log["batched"] else "alone"
                print(f"{tag} {inp} -> {dst} ({log['iters']} iters, {how}, {(time.time() - t0) / len(group):.1f}s "
                      "each)", flush=True)
            except Exception as e:  # noqa: BLE001
                failed += 1
                print(f"{tag} FAILED {inp}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def run_one(tag: str, inp: str, dst: str) -> None:
        nonlocal done, failed
        t0 = time.time()
        try:
            detail = _denoise_file(a, inp, dst, protect, n)
            done += 1
            print(f"{tag} {inp} -> {dst} ({detail}, {time.time() - t0:.1f}s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report and continue with the other files
            failed += 1
            print(f"{tag} FAILED {inp}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    from fastdenoise.io import read_stack
    from fastdenoise.methods import batched
    from fastdenoise.io import write_stack

    batching = a.batch > 1 and batched(a.method) and a.clean is None and not a.plot
    for i, (inp, dst, clash) in D.shard(list(enumerate(jobs)), rank, size):
        tag = f"[{i + 1}/{n}]"
        if clash is not None:
            failed += 1
            print(f"{tag} FAILED {inp}: FileExistsError: its output {dst} is also the output of {clash} "
                  "(rename one of them)", file=sys.stderr, flush=True)
            continue
        if os.path.exists(dst) and not a.overwrite:
            skipped += 1
            print(f"{tag} {inp} -> {dst} exists, skipped (--overwrite to redo it)", flush=True)
            continue
        if batching:
            try:
                vol, info = read_stack(inp, axes=a.axes)
            except Exception:  # noqa: BLE001 - run_one reports it
                vol = info = None
            if info is not None and info.slices == 1 and not info.alpha and vol[0].ndim in (2, 3) \
                    and (vol[0].ndim == 2 or vol[0].shape[-1] in (1, 3)):
                key = (vol[0].shape, str(vol[0].dtype))
                groups.setdefault(key, []).append((tag, inp, dst, vol[0], info))
                if len(groups[key]) == a.batch:
                    flush(key)
                continue
        run_one(tag, inp, dst)
    for key in list(groups):
        flush(key)
    done, skipped, failed = D.all_sum([done, skipped, failed])
    if rank == 0:
        ranks = f" on {size} ranks" if size > 1 else ""
        msg = f"{done} denoised, {skipped} skipped (already done), {failed} failed of {n} file(s){ranks}"
        print(msg, file=sys.stderr if failed else sys.stdout, flush=True)
    D.finish()
    return 1 if failed else 0


def cmd_train(a) -> int:
    from fastdenoise import distributed as D
    from fastdenoise.io import read_stack
    from fastdenoise.methods import get_builder

    rank, size, a.device = D.init(a.device)
    say = (lambda *x, **k: print(*x, **k)) if rank == 0 else (lambda *x, **k: None)  # noqa: E731
    files = [f for f, _ in collect_inputs([a.data], a.recursive)] if os.path.isdir(a.data) else []
    if not files:
        say(f"no images in {a.data}", file=sys.stderr)
        D.finish()
        return 2
    imgs = []
    for f in files:
        try:
            vol, _ = read_stack(f)
            imgs.extend(torch_chw(s) for s in vol)          # a stack contributes its slices
        except Exception as e:  # noqa: BLE001
            say(f"skipping {f}: {type(e).__name__}: {e}", file=sys.stderr)
    chans = {int(im.shape[0]) for im in imgs}
    if len(chans) != 1:
        say(f"images must all have the same number of channels, got {sorted(chans)}", file=sys.stderr)
        D.finish()
        return 2
    kw = dict(device=a.device, seed=a.seed, checkpoint=a.out, checkpoint_every=a.checkpoint_every,
              resume=a.resume, progress=not a.quiet and rank == 0)
    if a.weights:
        kw["weights"] = a.weights
    kw["init"] = a.init
    if a.lr:
        kw["lr"] = a.lr
    tr = get_builder(a.method)(in_ch=chans.pop(), **kw)
    D.ddp(tr)
    res = tr.train_images(imgs, crop=a.crop, batch=a.batch, iters=a.iters, seed=a.seed,
                          crop_seed=D.rank_seed(a.seed, rank))
    D.barrier()
    last = f"{res.losses[-1]:.5g}" if res.losses else "n/a"
    ranks = f" x {size} ranks (global batch {tr.plan['batch'] * size})" if size > 1 else ""
    say(f"trained {a.method} on {len(imgs)} images{ranks}: {tr.run.t} iterations ({res.iters} in this run, "
        f"{res.seconds:.1f}s), last loss {last}; checkpoint {a.out}")
    D.finish()
    return 0


def torch_chw(hwc: np.ndarray):
    """(H, W, C) float array -> (C, H, W) float tensor."""
    from fastdenoise.io import to_tensor

    return to_tensor(hwc)[0]


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
    if a.pairs is not None:
        return _eval_pairs(a, methods)
    from fastdenoise.noise import split_noises

    rows = evaluate(split(a.images), split_noises(a.noise), methods, crop=a.crop, device=a.device, seed=a.seed,
                    reference=a.reference, iters=a.iters, init=a.init, progress=None if a.json else print)
    if a.json:
        print(json.dumps({"environment": environment(), "rows": rows_to_json(rows)}, indent=1))
    else:
        env = environment()
        print(format_table(rows))
        print(f"\nDevice: {env['device']}; torch {env['torch']}; {env['date']}; crop {a.crop}; seed {a.seed}.")
    return 0


def _eval_pairs(a, methods: list) -> int:
    """``eval --pairs DIR``: the methods (and baselines) on the user's noisy/clean pairs."""
    import json

    from fastdenoise.evaluate import environment
    from fastdenoise.pairs import evaluate_pairs
    from fastdenoise.pairs import find_pairs
    from fastdenoise.pairs import format_pairs
    from fastdenoise.pairs import rows_to_json
    from fastdenoise.pairs import summarize

    try:
        pairs = find_pairs(a.pairs)
        baselines = [b for b in a.baselines.split(",") if b]
        opts = {k: v for k, v in (("pd", a.pd), ("blend", a.blend)) if v is not None}
        rows = evaluate_pairs(pairs, methods, iters=a.iters, seed=a.seed, device=a.device, baselines=baselines,
                              options=opts, progress=None if a.json else print)
    except (OSError, ValueError) as e:
        print(f"eval --pairs: {e}", file=sys.stderr)
        return 2
    env = environment()
    doc = {"environment": env, "pairs": os.path.abspath(a.pairs), "convention": "uint8, peak 255 (the papers')",
           "rows": rows_to_json(rows), "means": summarize(rows)}
    if a.json_out:
        tmp = f"{a.json_out}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, a.json_out)
    if a.json:
        print(json.dumps(doc, indent=1))
    else:
        print(format_pairs(rows))
        print(f"\n{len(pairs)} pairs in {a.pairs}; device: {env['device']}; torch {env['torch']}; {env['date']}; "
              f"seed {a.seed}; PSNR/SSIM on uint8, peak 255.")
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

    d = sub.add_parser("denoise", help="denoise image files, stacks and folders",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Denoise each input and write OUTDIR/<name>_<method>.<ext> (atomically, with the "
                                   "umask's permissions; an input is never overwritten or modified). Folders are "
                                   "walked (-r: sub-folders too, mirrored under OUTDIR); an output that exists is "
                                   "skipped unless --overwrite, so an interrupted run resumes. Stacks (multi-page/"
                                   "3-D TIFF, N-D .npy) are fitted with one model in dataset mode and written in "
                                   "the input's shape and dtype; RGBA keeps its alpha. Images larger than the "
                                   "memory budget are fitted on crops and denoised in blended tiles. A file that "
                                   "fails (undecodable, NaN/Inf, empty, too small, unsupported dtype) is reported "
                                   "and the others still run; the exit code is 1 if any failed. Under torchrun the "
                                   "files are sharded across the ranks.")
    d.add_argument("inputs", nargs="+", metavar="IN",
                   help="noisy images or folders (PNG, JPEG, TIFF 8/16/float incl. stacks, .npy)")
    d.add_argument("-o", "--outdir", required=True, help="output directory (created if missing)")
    d.add_argument("-r", "--recursive", action="store_true", help="walk sub-folders of folder inputs")
    d.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    d.add_argument("--axes", default=None,
                   help="axes of the input arrays, e.g. ZYX, TYXC, YXC (default: from the TIFF metadata or guessed; "
                        "the guess is printed)")
    d.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="activation budget per step/tile, e.g. 4G (default: half the free memory; 0: no limit)")
    d.add_argument("--progress", action="store_true", help="progress bars over iterations and tiles")
    d.add_argument("--method", choices=methods, default="p2n")
    d.add_argument("--batch", type=int, default=1, metavar="K",
                   help="fit up to K same-size images at once, one network each (methods with a batched fit, e.g. p2n; a GPU is busy with "
                        "K images per kernel); others and stacks one by one (default 1)")
    d.add_argument("--iters", type=int, default=None,
                   help="iterations per image (default: the method's; --iters 0 with p2n = pretrained net only)")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    d.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    d.add_argument("--weights", default=None, help="initial weights file (overrides --init)")
    d.add_argument("--init", choices=("start", "scratch"), default=None,
                   help="start: every network begins from the method's shipped start (fastdenoise/weights, see docs/STARTS.md) "
                        "where one exists, else from random weights; scratch: random weights (pure zero-shot)")
    d.add_argument("--start", choices=("gaussian", "camera"), default=None,
                   help="P2N only: which shipped start (default: the method's; camera: trained on camera noise "
                        "as well, for real photo noise; gaussian: on Gaussian noise only)")
    d.add_argument("--guard", type=float, default=None, metavar="RATIO",
                   help="P2N only: stop the fit and keep the start when the estimate's residual energy falls below "
                        "RATIO times the start's (the fit moving towards the noisy input); default: 0.5 on the CPU "
                        "from a start, off on CUDA; 0: off")
    d.add_argument("--pd", type=_auto_or(int, "--pd"), default=None, metavar="S",
                   help="pixel-shuffle downsampling stride: fit one network to the S*S sub-images of every S-th pixel "
                        "and put them back, for noise shared between neighbouring pixels (camera photos); default "
                        "auto: 2 where the image's noise is spatially correlated (the line says so), else 1")
    d.add_argument("--blend", type=_auto_or(float, "--blend"), default=None, metavar="W",
                   help="keep W of the method's estimate (the result is noisy + W * (estimate - noisy)); default "
                        "auto: all of it unless it removed more than twice the image's estimated noise energy "
                        "(image detail), then less; 1: always all")
    d.add_argument("--ema", type=float, default=None,
                   help="output EMA decay, e.g. 0.95; 0 turns it off (default: the method's: 0.9 for p2n, 0.98 for "
                        "nb2nb, off for the others)")
    d.add_argument("--reference", action="store_true", help="plain-torch ops, fp32, no CUDA graphs (for checks)")
    d.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="seconds of training per image: the iterations are picked from a timed iteration and "
                        "printed (at most the method's default)")
    d.add_argument("--clean", default=None, metavar="PATH",
                   help="clean reference: a file (one input) or a directory with files of the same names; "
                        "prints PSNR before/after")
    d.add_argument("--plot", action="store_true",
                   help="also write <name>_<method>_compare.png: noisy | denoised | clean and the loss curve")
    d.set_defaults(func=cmd_denoise)

    t = sub.add_parser("train", help="train a method on a folder of noisy images (dataset mode)",
                       description="Train on random crops of every image in DIR; the checkpoint (weights, optimiser, "
                                   "iteration) is written to --out every --checkpoint-every iterations and at the end. "
                                   "Use it with 'denoise --weights OUT --iters 0'. Under torchrun: "
                                   "DistributedDataParallel, --batch crops per rank, rank 0 writes the checkpoint.")
    t.add_argument("--method", choices=methods, default="p2n")
    t.add_argument("--data", required=True, metavar="DIR", help="folder of noisy images (stacks give their slices)")
    t.add_argument("-r", "--recursive", action="store_true", help="also the images in sub-folders of DIR")
    t.add_argument("--out", required=True, help="checkpoint path")
    t.add_argument("--iters", type=int, default=1000)
    t.add_argument("--crop", type=int, default=None, help="crop side (default: the method's dataset-mode crop)")
    t.add_argument("--batch", type=int, default=None, help="crops per step (default: the method's)")
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    t.add_argument("--weights", default=None, help="initial weights file (overrides --init)")
    t.add_argument("--init", choices=("start", "scratch"), default="start",
                   help="start: every network begins from the method's shipped start (fastdenoise/weights, see docs/STARTS.md) "
                        "where one exists, else from random weights; scratch: random weights (pure zero-shot)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="PSNR/SSIM/time of methods on sample images with synthetic noise, or on your "
                                    "own noisy/clean pairs (--pairs DIR)",
                       description="Denoise 256x256 centre crops of scikit-image samples with synthetic noise and "
                                   "print a table (noisy input and BM3D, if installed, as rows).")
    e.add_argument("--method", default="p2n", help=f"comma-separated methods (default p2n), e.g. p2n,nb2nb, or 'all' ({', '.join(methods)})")
    e.add_argument("--noise", default="gaussian:25", help="comma-separated: gaussian:SIGMA255, poisson:LAMBDA, correlated:SIGMA255[:K] (filtered), "
                   "demosaic:LAMBDA[:READ] (raw through demosaicing), camera[:shot=S,read=R,...|random] (sRGB "
                   "unprocessed to raw, sensor noise, processed back; scored against the noise-free rendering), "
                   "microscopy[:LAMBDA[:READ[:PSF]]] (Poisson-Gaussian, optional blur)")
    e.add_argument("--images", default="astronaut", help="comma-separated: astronaut,chelsea,coffee,camera")
    e.add_argument("--crop", type=int, default=256)
    e.add_argument("--iters", type=int, default=None, help="iterations (default: each method's)")
    e.add_argument("--reference", action="store_true", help="also run the reference configuration")
    e.add_argument("--init", choices=("start", "scratch"), default="start",
                   help="networks begin from the shipped starts (default) or from random weights")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.add_argument("--pairs", default=None, metavar="DIR",
                   help="score on your own noisy/clean pairs instead: DIR/noisy/NAME with DIR/clean/NAME (or gt/), or "
                        "NAME_noisy.EXT with NAME_clean.EXT in one folder; per-image rows and means (docs/QUALITY.md)")
    e.add_argument("--baselines", default="noisy,wavelet,bm3d",
                   help="with --pairs: comma-separated rows that need no fit: noisy, wavelet (J-invariant calibrated), "
                        "bm3d (level estimated; needs the bm3d package); default all")
    e.add_argument("--json-out", default=None, metavar="FILE", help="with --pairs: also write the rows and means here")
    e.add_argument("--pd", type=_auto_or(int, "--pd"), default=None, help="with --pairs: denoise's pd (default auto)")
    e.add_argument("--blend", type=_auto_or(float, "--blend"), default=None,
                   help="with --pairs: denoise's blend (default auto)")
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
