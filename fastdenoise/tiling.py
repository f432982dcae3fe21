"""Bounded memory for any image size: the memory budget, its estimate per network, and tiled inference.

The engine (:class:`fastdenoise.engine.Trainer`) uses these for every method:

* :func:`budget` -- bytes one training step or one inference tile may use for activations: ``max_memory``
  when given, else half of the free memory (CPU: ``MemAvailable``; CUDA: ``cudaMemGetInfo``), at least 1 GiB.
* :func:`activation_bytes` -- bytes per pixel that autograd keeps for one forward pass of a network (measured
  once on a 64x64 probe with saved-tensor hooks: it grows linearly with the pixels, so the probe predicts any
  size).
* :func:`tiled` -- inference over overlapping tiles blended with a raised-cosine window: in each overlap the
  two windows sum to one, so the result has no seams (crop-and-paste leaves a step at every tile edge).
"""
from __future__ import annotations

import math
import os
import re
from typing import Callable

import torch

__all__ = [
    "activation_bytes",
    "budget",
    "free_memory",
    "parse_size",
    "tile_side",
    "tile_starts",
    "tiled",
    "window",
]

GiB = 1 << 30
MIN_AUTO = 1 * GiB


def parse_size(text) -> int:
    """``"6G"``, ``"512M"``, ``"1.5GB"``, ``"2e9"`` or a number -> bytes (K/M/G/T are powers of 1024)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgGtT]?)i?[bB]?\s*", str(text))
        if not m:
            raise ValueError(f"memory size must look like 6G, 512M or a byte count, got {text!r}")
        v = float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " ")
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"memory size must be a finite number >= 0, got {text!r}")
    return int(v)


def free_memory(device: torch.device) -> int:
    """Free memory of ``device`` in bytes (CPU: MemAvailable, or total physical memory where /proc is missing;
    at most what an address-space limit, ``ulimit -v``, leaves this process)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            free = min(free, max(0, soft - used))
    except (OSError, ValueError, ImportError):
        pass
    return free


def budget(max_memory, device: torch.device) -> float:
    """The activation budget in bytes: ``max_memory`` (bytes or a size string; 0 = no limit), or None for
    half the free memory of ``device`` (at least 1 GiB)."""
    if max_memory is None:
        return float(max(MIN_AUTO, free_memory(device) // 2))
    b = parse_size(max_memory)
    return math.inf if b == 0 else float(b)


def activation_bytes(model: torch.nn.Module, in_ch: int, side: int = 64) -> float:
    """Bytes per input pixel that autograd saves for one training-mode forward of ``model`` on ``in_ch``
    input channels (a probe of ``side`` x ``side``; storages counted once). Leaves the model, its buffers and the global RNG as they were."""
    dev = next(model.parameters()).device
    seen: dict = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[(st.data_ptr(), st.device)] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[id(t)] = t.numel() * t.element_size()
        return t

    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    was = model.training
    devs = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devs), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.train()
            model(torch.zeros(1, in_ch, side, side, device=dev))
    finally:
        model.train(was)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
    return sum(seen.values()) / float(side * side)


def tile_side(per_pixel: float, limit: float, overlap: int, multiple: int = 32) -> int:
    """The largest square tile side (a multiple of ``multiple``, more than twice ``overlap``) whose
    ``per_pixel`` cost fits in ``limit`` bytes."""
    side = int(math.sqrt(max(limit, 1.0) / max(per_pixel, 1e-9))) // multiple * multiple
    return max(side, 2 * overlap + multiple)


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering [0, n) with at least ``overlap`` shared (the last tile
    ends at n). The overlap is capped at half a tile: a tile no wider than the overlap would otherwise step
    one pixel at a time (a 64-pixel tile at the default 64-pixel overlap: 65x65 = 4225 tiles for 128x128)."""
    if tile >= n:
        return [0]
    step = max(1, tile - min(int(overlap), tile // 2))
    starts = list(range(0, n - tile, step)) + [n - tile]
    return starts


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, *,
          progress: bool = False, desc: str = "tiles", chunk: int = 1) -> torch.Tensor:
    """``fn`` applied to overlapping ``tile`` x ``tile`` windows of ``x`` (B, C, H, W), blended.

    ``fn`` maps a (B, C, h, w) window to a (B, C', h, w) result (float). Windows overlap by at least
    ``overlap`` pixels; each result is weighted by the outer product of raised-cosine windows (no fall-off at
    the image border) and the sum is divided by the summed weights. Memory: the output and one weight plane,
    plus whatever ``fn`` needs for one window.

    ``chunk`` > 1 stacks up to that many windows on the batch axis per ``fn`` call (every window has the same
    size, so small tiles do not cost one call each); ``fn`` must then treat batch entries independently.
    """
    b, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = wsum = None
    bar = None
    if progress and len(ys) * len(xs) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ys) * len(xs), desc=desc, dynamic_ncols=True)
    if chunk > 1:
        return _tiled_chunks(fn, x, tile, ys, xs, int(chunk), bar)
    for i, y0 in enumerate(ys):
        th = min(tile, h)
        # the overlap with the previous/next tile (the last tile can overlap more than ``overlap``)
        oy_prev = ys[i - 1] + th - y0 if i else 0
        oy_next = y0 + th - ys[i + 1] if i < len(ys) - 1 else 0
        wy = window(th, oy_prev, oy_next, x.device)
        for j, x0 in enumerate(xs):
            tw = min(tile, w)
            ox_prev = xs[j - 1] + tw - x0 if j else 0
            ox_next = x0 + tw - xs[j + 1] if j < len(xs) - 1 else 0
            wx = window(tw, ox_prev, ox_next, x.device)
            r = fn(x[:, :, y0:y0 + th, x0:x0 + tw]).float()
            if out is None:
                out = torch.zeros(b, r.shape[1], h, w, dtype=torch.float32, device=r.device)
                wsum = torch.zeros(h, w, dtype=torch.float32, device=r.device)
            wt = (wy.to(r.device)[:, None] * wx.to(r.device)[None, :])
            out[:, :, y0:y0 + th, x0:x0 + tw].addcmul_(r, wt)
            wsum[y0:y0 + th, x0:x0 + tw].add_(wt)
            del r
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out.div_(wsum)


def _weights(starts: list[int], side: int, device) -> list[torch.Tensor]:
    """The blending window of each tile of ``side`` starting at ``starts`` (see :func:`window`)."""
    out = []
    for i, a in enumerate(starts):
        prev = starts[i - 1] + side - a if i else 0
        nxt = a + side - starts[i + 1] if i < len(starts) - 1 else 0
        out.append(window(side, prev, nxt, device))
    return out


def _tiled_chunks(fn, x: torch.Tensor, tile: int, ys: list[int], xs: list[int], chunk: int, bar) -> torch.Tensor:
    """:func:`tiled` with up to ``chunk`` windows per ``fn`` call, stacked on the batch axis."""
    b, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    wys, wxs = _weights(ys, th, x.device), _weights(xs, tw, x.device)
    spots = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    out = wsum = None
    for k in range(0, len(spots), chunk):
        part = spots[k:k + chunk]
        r = fn(torch.cat([x[:, :, ys[i]:ys[i] + th, xs[j]:xs[j] + tw] for i, j in part], 0)).float()
        if out is None:
            out = torch.zeros(b, r.shape[1], h, w, dtype=torch.float32, device=r.device)
            wsum = torch.zeros(h, w, dtype=torch.float32, device=r.device)
        for n, (i, j) in enumerate(part):
            wt = wys[i].to(r.device)[:, None] * wxs[j].to(r.device)[None, :]
            out[:, :, ys[i]:ys[i] + th, xs[j]:xs[j] + tw].addcmul_(r[n * b:(n + 1) * b], wt)
            wsum[ys[i]:ys[i] + th, xs[j]:xs[j] + tw].add_(wt)
        del r
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    return out.div_(wsum)


def window(n: int, prev: int, nxt: int, device) -> torch.Tensor:
    """Weights of a tile of length ``n`` that shares ``prev`` samples with the previous tile and ``nxt`` with
    the next: a raised-cosine rise over the shared samples at each end, 1 elsewhere."""
    w = torch.ones(n, dtype=torch.float32, device=device)
    for k, at_start in ((prev, True), (nxt, False)):
        k = min(k, n)
        if k <= 0:
            continue
        i = torch.arange(k, dtype=torch.float64, device=device)
        up = (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / k)).float()
        if at_start:
            w[:k] = torch.minimum(w[:k], up)
        else:
            w[n - k:] = torch.minimum(w[n - k:], up.flip(0))
    return w
