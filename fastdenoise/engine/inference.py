"""The one inference path: the method's inference averaged over a self-ensemble (``tta``), in tiles when the
image exceeds the memory budget (BatchNorm statistics gathered over the whole image first), and the memory
plan that decides crops for training and tiles for inference."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from fastdenoise.engine.config import TTA_COUNTS
from fastdenoise.engine.data import dihedral
from fastdenoise.engine.data import dihedral_inverse


@contextlib.contextmanager
def batch_stats_bn(model: torch.nn.Module):
    """BatchNorm layers normalise with the current batch's statistics and leave the running ones alone."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in bns]
    for m in bns:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (tr, trs) in zip(bns, saved):
            m.training, m.track_running_stats = tr, trs


@contextlib.contextmanager
def tile_stats_bn(model: torch.nn.Module, stats: dict):
    """BatchNorm over tiles close to BatchNorm over the whole image (the two passes of :meth:`Trainer._infer`).

    ``stats["phase"]``: ``"collect"`` -- every BatchNorm layer normalises with its tile's statistics (as
    :func:`batch_stats_bn`) and adds the tile's per-channel sums (float64) to ``stats["next"]``; ``"apply"``
    -- it normalises with the sums gathered over all tiles (``stats["acc"]``). Running buffers are restored
    afterwards. The first layer's statistics are exact; the deeper ones are those of tile-normalised inputs
    (measured: -0.009 dB against whole-image inference for Noise2Same on 256x256 in 128x128 tiles; feeding
    the gathered statistics back for more passes is unstable until every layer is fixed, one per pass).
    """
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    phase, acc = stats["phase"], stats.get("acc", {})
    handles, saved = [], []
    if phase == "collect":
        nxt = stats.setdefault("next", {})

        def hook(name):
            def pre(mod, args):
                x = args[0].detach().double()       # float64 sums: E[x^2] - E[x]^2 cancels
                d = [0] + list(range(2, x.dim()))
                s1, s2, n = nxt.get(name, (0.0, 0.0, 0))
                nxt[name] = (s1 + x.sum(d), s2 + (x * x).sum(d), n + x.numel() // x.shape[1])
            return pre

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in bns]
    if phase == "apply":
        with torch.no_grad():
            for n, m in bns:
                if n in acc:
                    saved.append((m, m.training, m.track_running_stats, m.running_mean.clone(),
                                  m.running_var.clone()))
                    s1, s2, k = acc[n]
                    mean = s1 / k
                    m.running_mean.copy_(mean.to(m.running_mean.dtype))
                    m.running_var.copy_((s2 / k - mean * mean).clamp_min(0).to(m.running_var.dtype))
                    m.training, m.track_running_stats = False, True
    try:
        with batch_stats_bn(model) if phase == "collect" else contextlib.nullcontext():
            yield
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for m, tr, trs, rm, rv in saved:
                m.running_mean.copy_(rm)
                m.running_var.copy_(rv)
                m.training, m.track_running_stats = tr, trs


def partition(n: int, tile: int) -> list[slice]:
    """Slices of [0, n) of length ``tile`` without overlap (a remainder under 32 joins the last slice)."""
    starts = list(range(0, n, tile))
    if len(starts) > 1 and n - starts[-1] < 32:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [n])]


class Inference:
    """Trainer mixin: inference, self-ensembles, tiles and the memory plan."""

    def tta_count(self) -> int:
        n = self.cfg.tta if self.cfg.tta is not None else self.default("tta")
        if n not in TTA_COUNTS:
            raise ValueError(f"tta must be one of {TTA_COUNTS}, got {n!r}")
        return n

    @torch.no_grad()
    def _infer(self, x: torch.Tensor, tile: int | None = None, **options) -> torch.Tensor:
        """The method's inference on the prepared ``x``, averaged over the ``tta`` transforms."""
        n = self.tta_count()
        if n == 1:
            return self._infer_once(x, tile, **options)
        ks = {2: (0, 4), 4: (0, 1, 2, 3), 8: tuple(range(8))}[n]
        acc = None
        for k in ks:
            o = dihedral_inverse(self._infer_once(dihedral(x, k).contiguous(), tile, **options), k)
            acc = o if acc is None else acc.add_(o)
        return acc.div_(n).contiguous()

    @torch.no_grad()
    def _infer_once(self, x: torch.Tensor, tile: int | None = None, **options) -> torch.Tensor:
        rng = self.run.torch_rng(99991) if self.method.uses_torch_rng else contextlib.nullcontext()
        tile = self.infer_tile(x) if tile is None else (int(tile) or None)
        self.plan["tile"] = tile
        with rng:
            if tile is None:
                return self.method.infer(self.run, x, **options).float().contiguous()
            from fastdenoise.tiling import tiled

            fn = lambda w: self.method.infer(self.run, self.to_input(w), **options)  # noqa: E731
            ov = self.cfg.tile_overlap
            if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       for p in self.parts.values() for m in p.model.modules()):
                return tiled(fn, x, tile, ov, progress=self.cfg.progress).contiguous()
            # BatchNorm on batch statistics: a first pass sums them over a partition of the image into tiles
            # (every pixel counted once), the output pass normalises with the sums
            self.run.tile_stats = st = {"phase": "collect"}
            try:
                fn(x[:, :, :tile, :tile])
                if st.pop("next", None):         # else the method normalises with running statistics
                    for ys in partition(x.shape[-2], tile):
                        for xs in partition(x.shape[-1], tile):
                            fn(x[:, :, ys, xs])
                    st["acc"], st["phase"] = st.pop("next"), "apply"
                else:
                    self.run.tile_stats = None
                return tiled(fn, x, tile, ov, progress=self.cfg.progress).contiguous()
            finally:
                self.run.tile_stats = None

    def denoise(self, y: torch.Tensor, *, tile: int | None = None, **options) -> torch.Tensor:
        """Denoise ``y`` with the networks as they are (the method's inference, ``options`` passed to its
        :meth:`Method.infer`; fp32 output). ``tile``: side of overlapping, blended inference tiles (None: only
        when the image exceeds the memory budget, sized to fit it; 0: the whole image at once)."""
        y = self.to_input(y)
        self.check_size(y)
        x, ctx = self.method.prepare(y)
        return self.method.finish(self._infer(x, tile, **options), ctx)

    # ------------------------------------------------------------------ memory budget (any image size)

    #: images of at most this many pixels (times the batch) always run whole, without a probe
    SMALL_PIXELS = 256 * 256

    #: one training step keeps about this many single-forward activation sets (P2N: y and the renoised pair)
    TRAIN_PASSES = 3.0

    #: a no-grad forward keeps about this fraction of a training forward's activations alive (measured: P2N
    #: 1.6 KB/pixel at 1024x1024 against 3.8 KB saved per pixel by a training forward)
    INFER_FRACTION = 0.5

    def check_size(self, y: torch.Tensor) -> None:
        """ValueError for an image with other channels than the trainer takes, an empty image, or one
        smaller than the method's ``min_size``."""
        h, w = y.shape[-2:]
        m = self.method.min_size
        if self.in_ch is not None and y.shape[1] != self.in_ch:
            raise ValueError(f"this {self.method.name} trainer was built for {self.in_ch}-channel images "
                             f"(build(in_ch=...)), got an image with {y.shape[1]} channels")
        if y.numel() == 0:
            raise ValueError(f"image is empty (shape {tuple(y.shape)})")
        if h < m or w < m:
            raise ValueError(f"image of {h}x{w} pixels is too small for {self.method.name} "
                             f"(it needs at least {m}x{m})")

    def per_pixel(self, in_ch: int) -> float:
        """Bytes per pixel one training-mode forward of the largest network saves (probed once)."""
        if self._per_pixel is None:
            from fastdenoise.tiling import activation_bytes

            self._per_pixel = max(activation_bytes(p.model, self.method.network_channels(in_ch, n))
                                  for n, p in self.parts.items())
        return self._per_pixel

    def budget(self) -> float:
        from fastdenoise.tiling import budget

        return budget(self.cfg.max_memory, self.device)

    def memory_plan(self, x: torch.Tensor, batches: Callable[[int], torch.Tensor]) -> dict:
        """How single-image mode fits the prepared ``x`` within the budget: ``{}`` when the method's own
        batches fit (the usual case: the run is exactly the unbudgeted one), else ``{"crop", "batch"}``:
        dataset mode over random crops of ``x`` (the method's dataset-mode crop side and batch, reduced until
        a step fits), without the output EMA (the estimates are crops)."""
        if x.shape[0] * x.shape[-2] * x.shape[-1] <= self.SMALL_PIXELS:
            return {}
        b = batches(0)
        limit = self.budget()
        cost = lambda n, side: self.TRAIN_PASSES * self.per_pixel(x.shape[1]) * n * side * side  # noqa: E731
        if cost(b.shape[0], 1) * b.shape[-2] * b.shape[-1] <= limit:
            return {}
        crop, batch = self.method.dataset_crops(self.device, None, None)
        crop = min(crop, x.shape[-2], x.shape[-1])
        while batch > 1 and cost(batch, crop) > limit:
            batch -= 1
        while crop > 32 and cost(batch, crop) > limit:
            crop -= 16
        return {"crop": int(crop), "batch": int(batch), "budget": limit}

    def infer_tile(self, x: torch.Tensor) -> int | None:
        """Side of the inference tiles for the prepared ``x`` (None: the whole image fits the budget)."""
        if x.shape[0] * x.shape[-2] * x.shape[-1] <= self.SMALL_PIXELS:
            return None
        per = (self.INFER_FRACTION * self.per_pixel(x.shape[1]) * x.shape[0]
               * max(1, int(self.cfg.infer_batch)))  # ensembles run copies per forward
        limit = self.budget()
        if per * x.shape[-2] * x.shape[-1] <= limit:
            return None
        from fastdenoise.tiling import tile_side

        return tile_side(per, limit, self.cfg.tile_overlap)
