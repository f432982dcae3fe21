"""The training engine every method plugs into.

A method (:class:`Method` subclass, one file in ``fastdenoise/methods/``) supplies

* ``Config``: its config dataclass (a :class:`FitConfig` subclass holding its defaults);
* ``make_model(in_ch)``: its network (random init drawn by the engine under the run's seed);
* ``step(run, y, t, total, seed) -> (loss, estimate)``: one iteration, written only with the public fused
  ops of :mod:`fastdenoise.functional`, ``estimate`` being a denoised image of ``y`` it computed anyway
  (the output EMA and progress PSNR use it) or None;

and overrides small hooks only where it really differs: ``resolve`` (device-dependent defaults),
``check``, ``default_iters``, ``load_init`` (pretrained weights), ``model_channels``/``prepare``/``finish``
(input and output transforms, e.g. P2N's grayscale handling or Noise2Same's standardisation),
``batches`` (what single-image mode trains on, e.g. random crops), ``dataset_batch``, ``lr_at`` (schedule),
``new_state`` (per-run state such as Blind2Grad's mask reference), ``infer`` (inference), ``stages`` (a
second stage training another network: APR-RD's distillation).

:class:`Trainer` owns everything else, once for every method:

* the networks (one :class:`Part` each: model, copy of the initial weights, optimiser), the loop,
  schedules, seeds, bf16 autocast, channels-last and CUDA-graph capture on CUDA (all ignored on the CPU),
  the output EMA, the progress bar, the loss/PSNR logs, checkpoints and resume;
* single-image mode :meth:`Trainer.fit` and dataset mode :meth:`Trainer.fit_dataset`; :meth:`Trainer.denoise`;
* **seeds per call**: ``fit(y, seed=s)`` reaches every stage and every draw (initial weights, crops,
  masks, dropout). Building a trainer never touches the caller's global RNG, and a trainer reused for a
  new seed re-draws its random initial weights in place, so a cached trainer and a fresh one give
  bit-identical results for the same seed;
* **per-run state** lives in a :class:`Run` (``trainer.run``), never in the method or its config: the
  config is read-only after :func:`build`.

``FitConfig(reference=True)`` selects the reference configuration: the plain-torch backend of every op,
fp32, no graph capture, no channels-last. It exists to show that the fused path reaches the same quality.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Callable

import torch

from fastdenoise.methods.graphs import GraphedNet

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")

__all__ = ["FitConfig", "FitResult", "Method", "CropTraining", "Stage", "Run", "Part", "Trainer", "build", "method_api",
           "iter_seed", "resolve_device", "psnr_quick", "make_optimizer", "ema_update", "staircase_lr",
           "cosine_lr", "crop_sampler", "dihedral", "load_state", "rgb_state_to_gray", "seeded", "batch_stats_bn"]


@dataclass
class FitConfig:
    """Options shared by every method (each method subclasses this with its own defaults).

    Attributes:
        iters: iterations (None: the method's default for the device).
        lr: learning rate.
        optimizer: ``"adamw"`` or ``"adam"``.
        weight_decay: AdamW weight decay (ignored by Adam).
        seed: default seed of a run (``fit(..., seed=...)`` overrides it per call); iteration t uses
            :func:`iter_seed` (seed, t).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        channels_last: channels-last network on CUDA (ignored on the CPU).
        cuda_graph: capture the network forward and backward as CUDA graphs (static shapes; CUDA only).
        ema: output EMA decay in (0, 1) (e.g. 0.9-0.99), or None for no EMA (single-image mode only:
            the EMA of the step's estimates becomes ``FitResult.best``).
        progress: show a tqdm bar (loss, and PSNR when a clean reference is given).
        log_every: refresh interval of the bar and of the PSNR log, in iterations.
        backend: op backend (None: auto, i.e. the fused kernels; ``"torch"``: the references).
        reference: reference configuration: backend ``"torch"``, fp32, no graphs, no channels-last.
        checkpoint: path of a checkpoint to write every ``checkpoint_every`` iterations (and at the end).
        checkpoint_every: iterations between checkpoints (0: only at the end when ``checkpoint`` is set).
        resume: continue from ``checkpoint`` if it exists.
        max_memory: activation budget of one training step or inference tile, bytes or a size string
            (``"4G"``); None: half the free memory of the device (at least 1 GiB); 0: no limit. An image
            whose whole-image step does not fit is fitted on crops and denoised in overlapping tiles
            (see :meth:`Trainer.memory_plan`); images that fit run exactly as without a budget.
        tile_overlap: overlap of inference tiles in pixels (blended with a raised-cosine window).
        time_budget: seconds the training loop of a fit may take. The second iteration is timed (the first
            one pays one-off set-up costs) and the iteration count becomes the largest that fits the rest of
            the budget, at most the nominal one (every stage scaled alike; the count is printed); schedules
            follow the new count from iteration 2 on. None: the method's default cap
            (:meth:`Method.default_time_budget`: on the CPU, when the iteration count is the default one, so
            that a default ``denoise`` of a 256x256 image stays within 90 s on a slow machine; it binds, and
            prints, only when the default count would not fit; none on CUDA and none for an explicit
            ``iters``); 0: no limit.
        init: ``"start"``: every network begins from the method's shipped start
            (``fastdenoise/weights/<method>_start[_gray].pt``, trained by ``scripts/pretrain.py``) where one
            exists for this network (same layers and shapes), else from its random init; ``"scratch"``:
            random init (the pure zero-shot setting). ``weights`` (a method field) overrides both.
            ``Trainer.init_from`` says what each network started from.
        tta: self-ensemble at inference: the mean of the network's outputs over 1, 2 (flip), 4 (rot90) or 8
            (all dihedral) transforms of the image, each undone (None: the method's default for the device,
            :meth:`Method.default_tta`; 1 is the papers' single pass). Applies to :meth:`Trainer.denoise` and
            the final output of a fit, not to an output EMA of step estimates.
        warmup: linear learning-rate warm-up over this fraction of each stage's iterations (from lr/n to the
            schedule's lr over the first n), in [0, 1); 0: none. A fresh Adam's first steps move every weight by about lr, which can knock a
            trained start off its optimum before the moments are estimated.
        weight_ema: decay of an exponential moving average of the trained network's weights (Polyak
            averaging), in [0, 1); the average replaces the weights when a stage ends (0: off; None: the
            method's default, :meth:`Method.default_weight_ema`). Steps on random crops of one image make the
            last iterate of a fine-tuned start scatter from seed to seed; the average does not.
        freeze_bn: BatchNorm layers normalise with their running statistics (eval-mode BatchNorm, statistics
            not updated) while a single image trains; None: the method's default
            (:meth:`Method.default_freeze_bn`). Dataset mode (pretraining) always uses batch statistics. A
            start's running statistics come from thousands of crops of many images; batch statistics of
            a few copies of one crop of one image are noisy, and the running averages they leave behind
            are what inference normalises with.
    """

    iters: int | None = None
    lr: float = 1e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    cuda_graph: bool = True
    ema: float | None = None
    progress: bool = False
    log_every: int = 10
    backend: str | None = None
    reference: bool = False
    checkpoint: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    max_memory: float | str | None = None
    tile_overlap: int = 64
    time_budget: float | None = None
    init: str = "start"
    tta: int | None = None
    warmup: float = 0.0
    weight_ema: float | None = None
    freeze_bn: bool | None = None

    def replace(self, **kw) -> "FitConfig":
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **kw)

    @property
    def op_backend(self) -> str | None:
        """The op backend in effect (the reference configuration forces ``"torch"``)."""
        return "torch" if self.reference else self.backend


@dataclass
class FitResult:
    """What a fit returns.

    Attributes:
        output: (B, C, H, W) denoised input after the last step (the method's inference).
        ema_output: output EMA (None when ``ema`` is None or the method's steps give no estimate).
        losses: loss per iteration (floats; every stage in order).
        psnr: list of (iteration, PSNR dB of the step's estimate) when a clean reference was given.
        iters: iterations run in this call (after any resume; every stage).
        seconds: wall time of the loop(s).
    """

    output: torch.Tensor
    ema_output: torch.Tensor | None = None
    losses: list = field(default_factory=list)
    psnr: list = field(default_factory=list)
    iters: int = 0
    seconds: float = 0.0

    @property
    def best(self) -> torch.Tensor:
        """The EMA output when there is one, else the last output."""
        return self.ema_output if self.ema_output is not None else self.output


# ---------------------------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; a requested CUDA device that is missing raises."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but no CUDA device is available (use device='cpu' or 'auto')")
    return dev


def make_optimizer(params, cfg: FitConfig, device: torch.device, lr: float | None = None) -> torch.optim.Optimizer:
    """The config's Adam/AdamW over ``params`` (fused single-kernel update on CUDA)."""
    params = list(params)
    name = cfg.optimizer.lower()
    kw = {"lr": cfg.lr if lr is None else lr}
    if device.type == "cuda":
        kw["fused"] = True   # one kernel for the whole parameter update
    if name == "adamw":
        return torch.optim.AdamW(params, weight_decay=cfg.weight_decay, **kw)
    if name == "adam":
        return torch.optim.Adam(params, **kw)
    raise ValueError(f"optimizer must be 'adam' or 'adamw', got {cfg.optimizer!r}")


def iter_seed(seed: int, t: int) -> int:
    """Seed of iteration ``t`` for base ``seed`` (a SplitMix64-style mix; in [0, 2**63))."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(t) + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def ema_update(ema: torch.Tensor | None, est: torch.Tensor, decay: float) -> torch.Tensor:
    """One step of the output EMA: ``est`` (as float32) when ``ema`` is None, else ``ema`` updated in place
    to ``decay * ema + (1 - decay) * est``."""
    est = est.detach().float()
    return est.clone() if ema is None else ema.mul_(decay).add_(est, alpha=1 - decay)


def staircase_lr(base_lr: float, t: int, every: int, factor: float) -> float:
    """``base_lr * factor ** (t // every)`` (constant when ``every`` <= 0)."""
    return base_lr if every <= 0 else base_lr * factor ** (t // every)


CPU_TIME_BUDGET = 80.0
"""Seconds of training a default-length CPU fit may take (:meth:`Method.default_time_budget`)."""


def _same_layout(sd: dict, have: dict) -> bool:
    """Whether state dict ``sd`` has exactly the layers and shapes of ``have``."""
    return set(sd) == set(have) and all(sd[k].shape == v.shape for k, v in have.items())


def cosine_lr(base_lr: float, t: int, total: int) -> float:
    """Cosine decay from ``base_lr`` at t=0 to 0 at t=total."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(t, total) / max(1, total)))


def psnr_quick(pred: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR in dB with the library's default convention (clamp, round to uint8, peak 255)."""
    from fastdenoise.metrics import psnr

    return float(psnr(pred.detach().float().cpu(), clean.detach().float().cpu()).mean())


def load_state(path: str, part: str | None = None) -> dict:
    """fp32 state dict of a network from ``path``: a plain (or fp16) state dict, a ``{"state_dict": ...}``
    file, or a file of several networks (an engine checkpoint or a shipped start: ``{"parts": {name: {"model":
    state dict}}}``; ``part`` picks one, default the first)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ck, dict) and isinstance(ck.get("parts"), dict):
        parts = ck["parts"]
        if part is not None and part not in parts:
            raise ValueError(f"{path} holds the networks {list(parts)}, not {part!r}")
        entry = parts[part] if part is not None else next(iter(parts.values()))
        ck = entry["model"] if isinstance(entry, dict) and isinstance(entry.get("model"), dict) else entry
    elif isinstance(ck, dict) and "state_dict" in ck:
        ck = ck["state_dict"]
    elif isinstance(ck, dict) and isinstance(ck.get("model"), dict):
        ck = ck["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in ck.items()}


def rgb_state_to_gray(sd: dict, gray: dict) -> dict:
    """An RGB network's weights ``sd`` reshaped to the grayscale network whose state dict is ``gray``.

    The weights that read the image (the first conv, and any decoder conv fed the input as a skip: the last
    3 input channels of a concatenation that ends with the image) are summed over those 3 channels; the
    output conv and its bias are averaged over the 3 output channels. The result computes exactly what the
    RGB network computes on the grayscale image replicated to RGB, with its three outputs averaged (before
    an output nonlinearity such as Blind2Grad's sigmoid: the logits are averaged, close but not equal).
    Raises ``ValueError`` when a weight maps no such way (another architecture)."""
    if set(sd) != set(gray):
        raise ValueError(f"the RGB weights and the grayscale network have different layers: "
                         f"{sorted(set(sd) ^ set(gray))[:4]}")
    out = {}
    for k, v in gray.items():
        w = sd[k].float().clone()
        if w.shape != v.shape:
            if w.dim() >= 2 and w.shape[1] - v.shape[1] == 2:       # reads the image: sum its 3 channels
                w = torch.cat([w[:, :-3], w[:, -3:].sum(1, keepdim=True)], 1)
            if w.shape[0] == 3 and v.shape[0] == 1:                 # writes the image: average
                w = w.mean(0, keepdim=True)
            if w.shape != v.shape:
                raise ValueError(f"cannot map RGB weight {k} {tuple(sd[k].shape)} to grayscale {tuple(v.shape)}")
        out[k] = w.to(v.dtype)
    return out


def _weight_ema_pairs(avg: dict[str, torch.Tensor], model: torch.nn.Module):
    """(averages, live tensors) of the floating entries and of the others, paired once per stage: the
    optimiser and BatchNorm update the live tensors in place, so the pairs stay valid."""
    live = model.state_dict()
    fl = [k for k in avg if avg[k].is_floating_point()]
    other = [k for k in avg if not avg[k].is_floating_point()]
    return ([avg[k] for k in fl], [live[k].detach() for k in fl]), ([avg[k] for k in other], [live[k] for k in other])


@torch.no_grad()
def _weight_ema_update(pairs, decay: float) -> None:
    """``avg <- decay * avg + (1 - decay) * weights`` for floating tensors (one foreach launch); the
    integer buffers copied."""
    (fa, fl), (oa, ol) = pairs
    if fa:
        torch._foreach_lerp_(fa, fl, 1.0 - decay)
    for a, v in zip(oa, ol):
        a.copy_(v)


def _save_atomic(obj, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def saved_parts(path: str) -> list[str] | None:
    """Names of the networks in a multi-network file (None: a single network's state dict)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return list(ck["parts"]) if isinstance(ck, dict) and isinstance(ck.get("parts"), dict) else None


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """torch's global RNG seeded with ``seed`` inside, the caller's RNG state restored outside.

    Only the CPU generator (and the generator of ``device`` when it is a CUDA device) is touched."""
    cuda = device is not None and device.type == "cuda"
    devs = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devs):
        torch.default_generator.manual_seed(int(seed))
        if cuda:
            with torch.cuda.device(devs[0]):
                torch.cuda.manual_seed(int(seed))
        yield


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


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the 8 dihedral transforms of the last two axes (rot90 by k % 4, flipped if k >= 4)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, (-2, -1)) if k % 4 else x


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undoes :func:`dihedral` ``(x, k)``."""
    x = torch.rot90(x, -(k % 4), (-2, -1)) if k % 4 else x
    return x.flip(-1) if k >= 4 else x


TTA_COUNTS = (1, 2, 4, 8)


def crop_sampler(images: list, crop: int, batch: int, seed: int = 0,
                 augment: bool = False) -> Callable[[int], torch.Tensor]:
    """Dataset-mode sampler: ``sampler(t)`` -> (batch, C, crop, crop) random crops of ``images``.

    ``images`` are (C, H, W) (or (1, C, H, W)) float tensors with the same C; images smaller than
    ``crop`` are reflect/replicate padded; ``augment`` applies a random dihedral transform per crop.
    Crops depend only on (seed, t), so a resumed run sees the same batches; they stay on the images'
    device.
    """
    if not len(images):
        raise ValueError("images must not be empty")
    if crop < 1 or batch < 1:
        raise ValueError(f"crop and batch must be >= 1, got crop={crop}, batch={batch}")
    imgs = []
    for im in images:
        im = torch.as_tensor(im).float()
        if im.dim() == 4 and im.shape[0] == 1:
            im = im[0]
        if im.dim() != 3:
            raise ValueError(f"images must be (C, H, W), got shape {tuple(im.shape)}")
        h, w = im.shape[-2:]
        if h < crop or w < crop:
            ph, pw = max(0, crop - h), max(0, crop - w)
            mode = "reflect" if ph < h and pw < w else "replicate"
            im = torch.nn.functional.pad(im[None], (0, pw, 0, ph), mode=mode)[0]
        imgs.append(im)

    def sampler(t: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(iter_seed(seed + 7919, t))
        out = []
        for _ in range(batch):
            im = imgs[int(torch.randint(len(imgs), (1,), generator=g))]
            h, w = im.shape[-2:]
            y0 = int(torch.randint(h - crop + 1, (1,), generator=g))
            x0 = int(torch.randint(w - crop + 1, (1,), generator=g))
            k = int(torch.randint(8, (1,), generator=g))
            c = im[:, y0:y0 + crop, x0:x0 + crop]
            out.append(dihedral(c, k) if augment else c)
        return torch.stack(out).contiguous()

    return sampler


def _canonical_strides(shape, fmt) -> tuple:
    c, h, w = shape[1], shape[2], shape[3]
    if fmt == torch.channels_last:
        return (h * w * c, 1, w * c, c)
    return (c * h * w, h * w, w, 1)


# ---------------------------------------------------------------------------------------------- methods
@dataclass
class Stage:
    """One training phase of a method: the network ``part`` it trains and its ``step``.

    Attributes:
        name: stage name (progress bar, checkpoints, logs).
        part: name of the network (see :meth:`Method.parts`) the stage trains.
        step: ``step(run, y, t, total, seed) -> (loss, estimate)`` (None: the method's ``step``).
        lr: base learning rate of the stage's optimiser.
        lr_at: schedule ``lr_at(t, total) -> lr`` (None: constant ``lr``).
        iters: ``iters(total)`` maps the fit's iteration count to the stage's (None: the same).
        on_start: ``on_start(run)`` before the first iteration (e.g. a student initialised from a teacher).
    """

    name: str
    part: str
    step: Callable | None
    lr: float
    lr_at: Callable[[int, int], float] | None = None
    iters: Callable[[int], int] | None = None
    on_start: Callable[["Run"], None] | None = None


class Method:
    """Base class of the methods: the hooks the engine calls, with their defaults.

    A method object holds only its (read-only) config; everything a run changes lives in :class:`Run`.
    """

    name = "method"
    summary = ""          # one line for the CLI's method list
    Config: type = FitConfig
    #: the method's inference draws from torch's global RNG (e.g. dropout): the engine seeds it per run
    uses_torch_rng = False
    #: smallest image side the method takes (the 2x2-cell samplers of Nb2Nb and ZS-N2N need 2)
    min_size = 2

    def __init__(self, cfg: FitConfig):
        self.cfg = cfg
        self.init_from: dict[str, str] = {}     # part -> weights file it was loaded from (load_init)

    inits: tuple[str, ...] = ("start", "scratch")     # accepted values of cfg.init

    # --- configuration
    def resolve(self, cfg: FitConfig, device: torch.device) -> FitConfig:
        """``cfg`` with device-dependent defaults (fields left None) filled in."""
        return cfg

    def check(self) -> None:
        """Raise ValueError for an invalid config."""

    def default_iters(self, device: torch.device) -> int:
        return 100

    def default_tta(self, device: torch.device) -> int:
        """Transforms averaged at inference when ``cfg.tta`` is None (1: the single pass of the papers)."""
        return 1

    def default_weight_ema(self, device: torch.device) -> float:
        """Weight-EMA decay when ``cfg.weight_ema`` is None (0: none, the papers' last iterate)."""
        return 0.0

    cpu_time_budget: float = CPU_TIME_BUDGET   # less for a method whose inference is long

    def default_time_budget(self, device: torch.device) -> float | None:
        """Seconds the training loop of a default-length fit may take when ``cfg.time_budget`` is None
        (None: no cap): ``cpu_time_budget`` on the CPU, none on CUDA."""
        return None if device.type == "cuda" else self.cpu_time_budget

    def default_freeze_bn(self, device: torch.device) -> bool:
        """Whether BatchNorm keeps its running statistics in single-image training when ``cfg.freeze_bn``
        is None (False: batch statistics, as the papers train)."""
        return False

    # --- networks
    def parts(self) -> tuple[str, ...]:
        """Names of the networks the method trains (one optimiser each)."""
        return ("model",)

    def model_channels(self, in_ch: int) -> int:
        """Channels of the network for ``in_ch``-channel images (P2N: RGB weights for grayscale too)."""
        return in_ch

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        raise NotImplementedError

    def start_path(self, in_ch: int) -> str | None:
        """The shipped start of this method for ``in_ch``-channel networks (None: there is none)."""
        p = os.path.join(WEIGHTS_DIR, f"{self.name}_start{'_gray' if in_ch == 1 else ''}.pt")
        return p if os.path.exists(p) else None

    def load_init(self, model: torch.nn.Module, part: str, in_ch: int) -> bool:
        """Load initial weights into the fresh ``model``; True when every weight was loaded (the initial
        state no longer depends on the seed) and ``self.init_from[part]`` names the file.

        ``cfg.weights``: one network's state dict for the first part, or a file of several networks such as
        a trainer checkpoint or a start written by ``scripts/pretrain.py``. Else, with ``cfg.init ==
        "start"``, the shipped start (:meth:`start_path`) when it holds this part with the same layers and
        shapes (e.g. not the CPU-width Noise2Same start for the CUDA-width network). A grayscale network
        with no grayscale start gets the RGB start folded over the colour channels (:func:`rgb_state_to_gray`:
        the RGB network on the replicated image, outputs averaged)."""
        path = getattr(self.cfg, "weights", None)
        if path:
            if not os.path.exists(path):
                raise FileNotFoundError(f"weights file not found: {path}")
            names = saved_parts(path)
            if names is None:                   # one network's weights: the first part's
                if part != self.parts()[0]:
                    return False
                sd = load_state(path)
            elif part not in names:
                return False
            else:
                sd = load_state(path, part)
            model.load_state_dict(self._fit_weights(sd, model.state_dict(), in_ch, path, part))
            self.init_from[part] = path
            return True
        if self.cfg.init != "start":
            return False
        start, have = self.start_path(in_ch), model.state_dict()
        if start is None and in_ch == 1 and self.start_path(3) is not None:
            # no grayscale start: the RGB start, its image-facing weights folded over the colour channels
            # (exactly the RGB network on the image replicated to RGB, outputs averaged)
            start = self.start_path(3)
            try:
                sd = rgb_state_to_gray(load_state(start, part), have)
            except ValueError:
                return False
        elif start is None:
            return False
        else:
            try:
                sd = load_state(start, part)
            except ValueError:                  # the start has no such part
                return False
        if not _same_layout(sd, have):
            return False
        model.load_state_dict(sd)
        self.init_from[part] = start
        return True

    @staticmethod
    def _fit_weights(sd: dict, have: dict, in_ch: int, path: str, part: str) -> dict:
        """``sd`` as ``have`` needs it: as is, or RGB weights folded for a grayscale network (as the shipped
        RGB starts are); a clear error when neither fits."""
        if _same_layout(sd, have):
            return sd
        if in_ch == 1:
            try:
                folded = rgb_state_to_gray(sd, have)
            except ValueError:
                folded = None
            if folded is not None and _same_layout(folded, have):
                return folded
        bad = sorted(k for k in have if k in sd and sd[k].shape != have[k].shape)
        miss = sorted(set(have) ^ set(sd))
        what = (f"{bad[0]} has shape {tuple(sd[bad[0]].shape)} there, the network needs "
                f"{tuple(have[bad[0]].shape)}" if bad else f"layers differ ({', '.join(miss[:3])})")
        raise ValueError(f"weights {path!r} do not fit the {part!r} network for {in_ch}-channel images: {what} "
                         f"(another method, width or channel count?)")

    @property
    def started(self) -> bool:
        """Whether the networks begin from loaded weights (a start or ``weights``): methods may pick
        fine-tuning defaults (fewer iterations) then."""
        return bool(self.init_from)

    # --- data
    def prepare(self, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Input transform before training and inference; returns ``(x, ctx)`` for :meth:`finish`."""
        return y, None

    def finish(self, out: torch.Tensor, ctx: Any) -> torch.Tensor:
        """Output transform (inverse of :meth:`prepare`)."""
        return out

    def batches(self, run: "Run", x: torch.Tensor) -> Callable[[int], torch.Tensor]:
        """What single-image mode trains on at iteration t (default: the whole prepared image)."""
        return lambda t: x

    def dataset_crops(self, device: torch.device, crop: int | None, batch: int | None) -> tuple[int, int]:
        """Crop side and batch size of dataset-mode training (``train``; None: the method's default)."""
        return crop or 128, batch or 4

    def augment_crops(self) -> bool:
        """Random dihedral transform per dataset-mode crop."""
        return False

    # --- training
    def new_state(self, run: "Run") -> dict:
        """Per-run state of the method (kept in ``run.state``)."""
        return {}

    def stages(self) -> list[Stage]:
        return [Stage(self.name, self.parts()[0], None, self.cfg.lr, self.lr_at)]

    lr_at = None  # a method with a schedule defines lr_at(self, t, total)

    def step(self, run: "Run", y: torch.Tensor, t: int, total: int, seed: int):
        raise NotImplementedError

    # --- inference
    def infer(self, run: "Run", x: torch.Tensor, **options) -> torch.Tensor:
        """Denoise the prepared input (default: one eval-mode pass of the first network)."""
        return run.forward(x)


class CropTraining:
    """Method mixin: single-image mode trains on random crops of the one (prepared) image, ``cfg.crop``
    square, ``cfg.batch`` per step, a random dihedral transform each when ``cfg.augment`` (the crops
    depend only on the run's seed and t); dataset mode uses the same sizes by default."""

    def batches(self, run: "Run", x: torch.Tensor) -> Callable[[int], torch.Tensor]:
        c = self.cfg
        sampler = crop_sampler(list(x), c.crop, c.batch, run.seed, augment=c.augment)
        return lambda t: run.trainer.to_input(sampler(t))

    def dataset_crops(self, device: torch.device, crop: int | None, batch: int | None) -> tuple[int, int]:
        return crop or self.cfg.crop, batch or self.cfg.batch

    def augment_crops(self) -> bool:
        return self.cfg.augment


# ---------------------------------------------------------------------------------------------- networks
class Part:
    """One network of a trainer: the model, the callable that runs it in steps, its optimiser and the
    initial weights :meth:`Trainer.reset` restores (re-drawn from the seed when ``make`` is set)."""

    def __init__(self, name: str, model: torch.nn.Module, tr: "Trainer", lr: float,
                 make: Callable[[int], dict] | None, init_seed: int | None):
        self.name, self.model = name, model.to(tr.device)
        if tr.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.init_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.opt = make_optimizer(self.model.parameters(), tr.cfg, tr.device, lr)
        # graphs capture CUDA inputs (or any input under graphs.capture_with): see fastdenoise.methods.graphs
        self.net = GraphedNet(self.model, bool(tr.cfg.cuda_graph and not tr.cfg.reference), tr.amp)
        self.make, self.init_seed = make, init_seed

    @torch.no_grad()
    def reset(self, seed: int) -> None:
        """Initial weights back in place (re-drawn for a new ``seed``), optimiser state zeroed."""
        if self.make is not None and seed != self.init_seed:
            for k, v in self.make(seed).items():
                self.init_state[k].copy_(v)
            self.init_seed = seed
        for k, v in self.model.state_dict().items():
            v.copy_(self.init_state[k])
        for st in self.opt.state.values():
            for v in st.values():
                if isinstance(v, torch.Tensor):
                    v.zero_()
        self.model.zero_grad(set_to_none=True)

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr


class Run:
    """The state of one fit: seed, progress per stage, output EMA, logs and the method's own state.

    Steps see the trainer's networks through it: ``run.net`` (the network the current stage trains,
    graphed/autocast), ``run.model`` (the module itself), ``run.parts[name].model`` (any network),
    ``run.backend``, ``run.device`` and ``run.autocast()``.
    """

    def __init__(self, tr: "Trainer", seed: int):
        self.trainer, self.seed = tr, int(seed)
        self.stage = 0                      # index of the current stage
        self.t = 0                          # iterations done in the current stage
        self.done: list[str] = []           # stages finished
        self.dataset_mode = False           # batches of crops of many images (fit_dataset)
        self.ema: torch.Tensor | None = None
        self.wema: dict[str, torch.Tensor] | None = None   # weight EMA of the current stage's network
        self.losses: list[float] = []
        self.psnr: list[tuple[int, float]] = []
        self.part = tr.parts[tr.stages[0].part]
        self.state = tr.method.new_state(self)
        self.tile_stats: dict | None = None   # BatchNorm statistics over inference tiles (tile_stats_bn)

    # what steps use
    @property
    def net(self) -> Callable:
        return self.part.net

    @property
    def model(self) -> torch.nn.Module:
        return self.part.model

    @property
    def parts(self) -> dict[str, Part]:
        return self.trainer.parts

    @property
    def backend(self) -> str | None:
        return self.trainer.backend

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    @property
    def cfg(self) -> FitConfig:
        return self.trainer.cfg

    def autocast(self):
        """bf16 autocast on CUDA when the config asks for it (a no-op context on the CPU)."""
        dev = self.device.type
        return torch.autocast(dev, dtype=torch.bfloat16, enabled=self.trainer.amp and dev == "cuda",
                              cache_enabled=False)

    def torch_rng(self, offset: int = 0):
        """torch's global RNG seeded from (seed + offset, t) inside (restored outside)."""
        return seeded(iter_seed(self.seed + offset, self.t), self.device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, part: str | None = None, *, batch_stats: bool = False,
                **kw) -> torch.Tensor:
        """One eval-mode pass of a network (default: the first) under autocast; fp32.
        ``batch_stats``: BatchNorm layers normalise with the statistics of ``x`` (running ones untouched)."""
        model = self.trainer.parts[part or self.trainer.stages[0].part].model
        model.eval()
        bn = contextlib.nullcontext()
        if batch_stats:   # over tiles: the whole image's statistics (Trainer._infer's two passes)
            bn = batch_stats_bn(model) if self.tile_stats is None else tile_stats_bn(model, self.tile_stats)
        try:
            with bn, self.autocast():
                out = model(x, **kw)
        finally:
            self.trainer.train_mode(model)
        return out.float()

    def state_dict(self) -> dict:
        return {"seed": self.seed, "stage": self.stage, "t": self.t, "done": list(self.done), "ema": self.ema,
                "dataset_mode": self.dataset_mode, "wema": self.wema,
                "losses": list(self.losses), "psnr": list(self.psnr), "state": dict(self.state)}

    def load_state_dict(self, ck: dict) -> None:
        self.seed, self.stage, self.t = int(ck["seed"]), int(ck["stage"]), int(ck["t"])
        self.done, self.ema, self.dataset_mode = list(ck["done"]), ck["ema"], bool(ck["dataset_mode"])
        self.wema = ck.get("wema")
        self.losses, self.psnr = list(ck["losses"]), list(ck["psnr"])
        self.state = dict(ck["state"])
        self.part = self.trainer.parts[self.trainer.stages[self.stage].part]


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    """The networks, optimisers and loop of one method (see the module docstring). Use :func:`build`.

    Attributes:
        cfg: the method's resolved config (read-only).
        method: the :class:`Method`.
        parts: the networks by name; ``model``/``opt``/``net`` are those of the first.
        run: the state of the last (or current) fit.
        backend: the op backend to pass to the fused ops.
    """

    def __init__(self, method: Method, models: dict[str, torch.nn.Module],
                 makers: dict[str, Callable[[int], dict] | None] | None = None, init_seed: int = 0):
        cfg = method.cfg
        self.cfg, self.method = cfg, method
        self.device = resolve_device(cfg.device)
        cuda, ref = self.device.type == "cuda", cfg.reference
        self.amp = bool(cfg.amp and cuda and not ref)
        self.channels_last = bool(cfg.channels_last and cuda and not ref)
        self.backend = cfg.op_backend
        self.stages = method.stages()
        lrs = {s.part: s.lr for s in reversed(self.stages)}
        makers = makers or {}
        self.parts = {name: Part(name, m, self, lrs.get(name, cfg.lr), makers.get(name), init_seed)
                      for name, m in models.items()}
        self.run = Run(self, init_seed)
        self.in_ch: int | None = None          # image channels the trainer takes (set by build)
        self.wrap_step: Callable | None = None   # (stage, step) -> step, set by fastdenoise.distributed
        self.plan: dict = {}                      # the last memory_plan (crops, tiles) of fit/denoise
        self._per_pixel: float | None = None

    # first network (what most methods have)
    @property
    def model(self) -> torch.nn.Module:
        return next(iter(self.parts.values())).model

    @property
    def opt(self) -> torch.optim.Optimizer:
        return next(iter(self.parts.values())).opt

    @property
    def net(self) -> Callable:
        return next(iter(self.parts.values())).net

    @property
    def ema(self) -> torch.Tensor | None:
        return self.run.ema

    # ------------------------------------------------------------------ state
    def seed_of(self, seed: int | None) -> int:
        from fastdenoise._runtime import check_seed

        return check_seed(self.cfg.seed if seed is None else seed)

    def reset(self, seed: int | None = None) -> None:
        """Initial weights back in place for ``seed`` (default: the config's), optimisers zeroed, a new run."""
        seed = self.seed_of(seed)
        for p in self.parts.values():
            p.reset(seed)
        self.run = Run(self, seed)

    def to_input(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as the networks take it: float32 (B, C, H, W) on the device, in the trainer's memory format
        with canonical strides (also on size-1 axes, whose strides change the reduction order of some CPU
        kernels: the same image must give the same bits however it was made)."""
        y = y.to(self.device, torch.float32)
        if y.dim() == 3:
            y = y.unsqueeze(0)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if not y.is_contiguous(memory_format=fmt) or y.stride() != _canonical_strides(y.shape, fmt):
            y = y.clone(memory_format=fmt)
        return y

    def total_iters(self, iters: int | None) -> int:
        if iters is None:
            iters = self.cfg.iters
        if iters is None:
            iters = self.method.default_iters(self.device)
        if isinstance(iters, bool) or int(iters) != iters or int(iters) < 0:
            raise ValueError(f"iters must be an integer >= 0, got {iters!r}")
        return int(iters)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"method": self.method.name, "config": dataclasses.asdict(self.cfg), "run": self.run.state_dict(),
                "parts": {n: {"model": p.model.state_dict(), "opt": p.opt.state_dict()}
                          for n, p in self.parts.items()}}

    def save_checkpoint(self, path: str) -> None:
        """Atomic checkpoint: every network, optimiser state, the run (stage, iteration, EMA, logs); under
        torch.distributed only rank 0 writes it."""
        if _rank() != 0:
            return
        _save_atomic(self.state_dict(), path)

    def save_weights(self, path: str, *, half: bool = True, meta: dict | None = None) -> None:
        """Atomic weights file of every network (fp16 by default), no optimiser state:
        ``{"method", "parts": {name: {"model": state dict}}, "meta"}``, loadable with ``weights=path`` and,
        named ``fastdenoise/weights/<method>_start[_gray].pt``, the method's shipped start (``init="start"``)."""
        cast = (lambda v: v.detach().half() if half and v.is_floating_point() else v.detach())  # noqa: E731
        parts = {n: {"model": {k: cast(v).cpu() for k, v in p.model.state_dict().items()}}
                 for n, p in self.parts.items()}
        _save_atomic({"method": self.method.name, "parts": parts, "meta": dict(meta or {})}, path)

    def load_checkpoint(self, path: str) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        if ck.get("method") != self.method.name:
            raise ValueError(f"checkpoint {path} is of method {ck.get('method')!r}, not {self.method.name!r}")
        with torch.no_grad():
            for n, p in self.parts.items():
                for k, v in p.model.state_dict().items():
                    v.copy_(ck["parts"][n]["model"][k])
                p.opt.load_state_dict(ck["parts"][n]["opt"])
        self.run = Run(self, ck["run"]["seed"])
        self.run.load_state_dict(ck["run"])

    def _resuming(self) -> bool:
        c = self.cfg
        return bool(c.resume and c.checkpoint and os.path.exists(c.checkpoint))

    # ------------------------------------------------------------------ loop
    def _train(self, get_batch: Callable[[int], torch.Tensor], iters: int | None,
               clean: torch.Tensor | None, use_ema: bool) -> tuple[float, int]:
        """Run every stage (from where the run stands) on ``get_batch(t)`` batches."""
        totals = {"0": self.total_iters(iters)}
        secs, n = 0.0, 0
        run = self.run
        of = lambda st, t0: st.iters(t0) if st.iters else t0  # noqa: E731  (a stage's share of the count)
        budget, quiet = self.cfg.time_budget, False
        if budget is None and iters is None and self.cfg.iters is None and not run.dataset_mode:
            budget, quiet = self.method.default_time_budget(self.device), True   # the default cap
        budget = budget or None                                                   # 0: no limit
        for i, stage in enumerate(self.stages):
            if i < run.stage:
                continue
            if i > run.stage:               # a fresh stage
                run.stage, run.t = i, 0
            run.part = self.parts[stage.part]
            total = of(stage, totals["0"])
            if run.t == 0 and stage.on_start is not None:
                stage.on_start(run)
            retotal = None
            if budget is not None and run.t == 0 and not run.done and total > 2:

                def retotal(elapsed: float, dt: float, done: int = 2, i: int = i, stage: Stage = stage,
                            nominal: int = totals["0"]) -> int:
                    before = totals["0"]
                    share = sum(of(st, nominal) for st in self.stages[i:]) / max(1, nominal)
                    more = int(max(0.0, budget - elapsed) / max(dt * share, 1e-9))
                    totals["0"] = max(done, min(nominal, done + more))
                    changed = totals["0"] != before and (not quiet or totals["0"] < nominal)
                    if changed or (not quiet and done == 2):
                        print(f"{self.method.name}: time budget {budget:g}s, one iteration {dt:.3f}s -> "
                              f"{totals['0']} iterations (nominal {nominal})", file=sys.stderr, flush=True)
                    return of(stage, totals["0"])

            s, k = self._loop(stage, get_batch, total, clean, use_ema, retotal)
            secs, n = secs + s, n + k
            if stage.name not in run.done:
                run.done.append(stage.name)
        run.stage = len(self.stages)
        return secs, n

    def _loop(self, stage: Stage, get_batch, total: int, clean, use_ema: bool,
              retotal: Callable[[float, float], int] | None = None) -> tuple[float, int]:
        cfg, run, part = self.cfg, self.run, self.run.part
        start = run.t
        bar = None
        if cfg.progress and start < total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=start, desc=stage.name, dynamic_ncols=True)
        pending: list[torch.Tensor] = []
        rng = run.torch_rng() if self.method.uses_torch_rng else contextlib.nullcontext()
        step = stage.step or self.method.step
        decay = self.weight_ema_decay()
        if decay and run.wema is None and start < total:
            run.wema = {k: v.detach().clone() for k, v in part.model.state_dict().items()}
        pairs = _weight_ema_pairs(run.wema, part.model) if decay and run.wema is not None else None
        t0 = time.perf_counter()
        self.train_mode(part.model)
        with rng:
            t = start
            while t < total:
                ti = time.perf_counter()
                loss, est = self._iteration(stage, step, get_batch(t), t, total)
                if retotal is not None and t in (start + 1, start + 9):
                    # time budget: count from the second iteration, then again from the mean of iterations 2-9
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    now = time.perf_counter()
                    if t == start + 1:
                        t_mark = now
                        total = retotal(now - t0, now - ti)
                    elif t < total:
                        total = retotal(now - t0, (now - t_mark) / 8, t + 1 - start)
                    if bar is not None:
                        bar.total = total
                pending.append(loss.detach().float())
                if pairs is not None:
                    _weight_ema_update(pairs, decay)
                if use_ema and cfg.ema is not None and est is not None:
                    run.ema = ema_update(run.ema, est, cfg.ema)
                run.t = t + 1
                last = run.t == total
                if last or (run.t - start) % max(1, cfg.log_every) == 0:
                    run.losses.extend(torch.stack(pending).cpu().tolist())
                    pending = []
                    post = {"loss": f"{run.losses[-1]:.4g}"}
                    if clean is not None and est is not None and clean.shape == est.shape:
                        p = psnr_quick(run.ema if run.ema is not None else est, clean)
                        run.psnr.append((t, p))
                        post["psnr"] = f"{p:.2f}"
                    if bar is not None:
                        bar.set_postfix(post, refresh=False)
                        bar.update(run.t - bar.n)
                if cfg.checkpoint and cfg.checkpoint_every and run.t % cfg.checkpoint_every == 0 and not last:
                    if pending:
                        run.losses.extend(torch.stack(pending).cpu().tolist())
                        pending = []
                    self.save_checkpoint(cfg.checkpoint)
                t += 1
        if pending:
            run.losses.extend(torch.stack(pending).cpu().tolist())
        if run.wema is not None and run.t >= total:      # the stage is over: its network becomes the average
            with torch.no_grad():
                part.model.load_state_dict(run.wema)
            run.wema = None
        if bar is not None:
            bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        secs = time.perf_counter() - t0
        if cfg.checkpoint:
            self.save_checkpoint(cfg.checkpoint)
        return secs, run.t - start

    def freeze_bn_active(self) -> bool:
        """Whether BatchNorm layers stay in eval mode while training (``cfg.freeze_bn`` or the method's
        default; never in dataset mode)."""
        if self.run.dataset_mode:
            return False
        f = self.cfg.freeze_bn
        return bool(self.method.default_freeze_bn(self.device) if f is None else f)

    def train_mode(self, model: torch.nn.Module) -> None:
        """``model.train()``, its BatchNorm layers back in eval mode when :meth:`freeze_bn_active`."""
        model.train()
        if self.freeze_bn_active():
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def weight_ema_decay(self) -> float:
        """The weight-EMA decay in effect (``cfg.weight_ema``, checked by :func:`build`, or the method's)."""
        d = self.cfg.weight_ema
        return float(self.method.default_weight_ema(self.device) if d is None else d)

    def _iteration(self, stage: Stage, step: Callable, batch: torch.Tensor, t: int, total: int):
        """One training iteration of ``stage``: schedule, step, backward, optimiser step."""
        run, part = self.run, self.run.part
        n = int(self.cfg.warmup * total)
        if stage.lr_at is not None or n:
            lr = stage.lr_at(t, total) if stage.lr_at is not None else None
            lr = stage.lr if lr is None else lr
            part.set_lr(lr * min(1.0, (t + 1) / n) if n else lr)
        if self.wrap_step is not None:      # e.g. fastdenoise.distributed: the step inside DDP
            step = self.wrap_step(stage, step)
        for p in self.parts.values():
            p.net.new_step()
        loss, est = step(run, batch, t, total, iter_seed(run.seed, t))
        part.opt.zero_grad(set_to_none=True)   # never in place: graphs hand back their own buffers
        loss.backward()
        part.opt.step()
        return loss, est

    def stepper(self, y: torch.Tensor, *, total: int | None = None, seed: int | None = None) -> Callable:
        """A fresh single-image run on ``y`` and a function ``it(t) -> loss`` running its first stage's
        iteration ``t`` of ``total`` (what benchmarks time: exactly the loop's iteration, no logging)."""
        self.reset(seed)
        x, _ = self.method.prepare(self.to_input(y))
        batches = self.method.batches(self.run, x)
        stage = self.stages[0]
        self.run.part = self.parts[stage.part]
        if stage.on_start is not None:
            stage.on_start(self.run)
        step = stage.step or self.method.step
        total = self.total_iters(total)

        def it(t: int) -> torch.Tensor:
            return self._iteration(stage, step, batches(t), t, total)[0]

        return it

    # ------------------------------------------------------------------ modes
    def fit(self, y: torch.Tensor, *, iters: int | None = None, clean: torch.Tensor | None = None,
            seed: int | None = None, reset: bool = True) -> FitResult:
        """Single-image mode: fit to the noisy ``y`` (B, C, H, W) and return it denoised.

        Args:
            y: noisy image(s), float on [0, 1] (batch entries are fitted jointly).
            iters: iterations (default: the config's, else the method's default for the device; a method
                with a second stage maps it to that stage's count).
            clean: optional clean reference (same shape) for the PSNR log and progress bar.
            seed: seed of every draw of this fit (default: the config's).
            reset: re-initialise weights and optimiser first (False continues the current run).
        """
        if self._resuming():
            self.load_checkpoint(self.cfg.checkpoint)
        elif reset:
            self.reset(seed)
        y = self.to_input(y)
        self.check_size(y)
        x, ctx = self.method.prepare(y)
        if clean is not None:
            clean = self.method.prepare(clean.to(self.device, torch.float32).reshape(y.shape))[0]
        batches = self.method.batches(self.run, x)
        self.plan = self.memory_plan(x, batches)
        if self.plan.get("crop") is None:
            secs, n = self._train(batches, iters, clean, use_ema=True)
        else:                               # too large for whole-image steps: dataset mode over its crops
            self.run.dataset_mode = True
            sampler = crop_sampler(list(x), self.plan["crop"], self.plan["batch"], self.run.seed,
                                   augment=self.method.augment_crops())
            secs, n = self._train(lambda t: self.to_input(sampler(t)), iters, None, use_ema=False)
        out = self.method.finish(self._infer(x), ctx)
        ema = None if self.run.ema is None else self.method.finish(self.run.ema.clone(), ctx)
        return FitResult(out, ema, list(self.run.losses), list(self.run.psnr), n, secs)

    def fit_dataset(self, sampler: Callable[[int], torch.Tensor], *, iters: int | None = None,
                    seed: int | None = None, prepared: bool = False) -> FitResult:
        """Dataset mode: train on ``sampler(t)`` batches (B, C, h, w) for ``iters`` iterations.

        The weights are not reset (call :meth:`reset` to start over) but a new run starts (seed ``seed``);
        ``cfg.resume`` continues from the checkpoint. Use :meth:`denoise` afterwards. No output EMA: every
        iteration sees different crops. Batches go through the method's :meth:`Method.prepare` (per crop)
        unless ``prepared`` (crops of images that were prepared whole, as ``train`` does).
        """
        if self._resuming():
            self.load_checkpoint(self.cfg.checkpoint)
        else:
            self.run = Run(self, self.seed_of(seed))
        self.run.dataset_mode = True
        prep = (lambda b: b) if prepared else (lambda b: self.method.prepare(b)[0])
        secs, n = self._train(lambda t: prep(self.to_input(sampler(t))), iters, None, use_ema=False)
        return FitResult(torch.empty(0), None, list(self.run.losses), [], n, secs)

    def tta_count(self) -> int:
        n = self.cfg.tta if self.cfg.tta is not None else self.method.default_tta(self.device)
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
                    for ys in _partition(x.shape[-2], tile):
                        for xs in _partition(x.shape[-1], tile):
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

            self._per_pixel = max(activation_bytes(p.model, in_ch) for p in self.parts.values())
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
               * max(1, int(getattr(self.cfg, "infer_batch", 1))))  # ensembles run copies per forward
        limit = self.budget()
        if per * x.shape[-2] * x.shape[-1] <= limit:
            return None
        from fastdenoise.tiling import tile_side

        return tile_side(per, limit, self.cfg.tile_overlap)


def _partition(n: int, tile: int) -> list[slice]:
    """Slices of [0, n) of length ``tile`` without overlap (a remainder under 32 joins the last slice)."""
    starts = list(range(0, n, tile))
    if len(starts) > 1 and n - starts[-1] < 32:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [n])]


def _rank() -> int:
    """This process's rank under torch.distributed (0 when not distributed)."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


# ---------------------------------------------------------------------------------------------- build
def build(method_cls: type[Method], config: FitConfig | None = None, *, in_ch: int = 3,
          model: torch.nn.Module | None = None, models: dict | None = None, **overrides) -> Trainer:
    """A :class:`Trainer` for ``method_cls``: its config (``overrides`` replace fields), its networks with
    their initial weights (random ones drawn from ``config.seed`` without touching the caller's RNG, and
    re-drawn in place when a fit asks for another seed). ``model`` (the first network) or ``models`` (by
    part name; None entries are built) supply networks whose current weights are the init."""
    cfg = config if config is not None else method_cls.Config()
    if not isinstance(cfg, method_cls.Config):
        raise TypeError(f"config must be a {method_cls.Config.__name__}, got {type(cfg).__name__}")
    if overrides:
        cfg = cfg.replace(**overrides)
    if isinstance(in_ch, bool) or not isinstance(in_ch, int) or in_ch < 1:
        raise ValueError(f"in_ch must be a positive int, got {in_ch!r}")
    device = resolve_device(cfg.device)
    method = method_cls(cfg)
    cfg = method.resolve(cfg, device)
    method = method_cls(cfg)
    if cfg.init not in method.inits:
        raise ValueError(f"init must be one of {method.inits}, got {cfg.init!r}")
    if cfg.freeze_bn is not None and not isinstance(cfg.freeze_bn, bool):
        raise ValueError(f"freeze_bn must be True, False or None, got {cfg.freeze_bn!r}")
    if isinstance(cfg.warmup, bool) or not 0.0 <= float(cfg.warmup) < 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {cfg.warmup!r}")
    if cfg.weight_ema is not None and (isinstance(cfg.weight_ema, bool)
                                       or not isinstance(cfg.weight_ema, (int, float))
                                       or not 0.0 <= float(cfg.weight_ema) < 1.0):
        raise ValueError(f"weight_ema must be a decay in [0, 1) (or None: the method's default), "
                         f"got {cfg.weight_ema!r}")
    if cfg.tta is not None and (isinstance(cfg.tta, bool) or cfg.tta not in TTA_COUNTS):
        raise ValueError(f"tta must be one of {TTA_COUNTS} (or None: the method's default), got {cfg.tta!r}")
    method.check()
    from fastdenoise._runtime import check_seed

    seed = check_seed(cfg.seed)
    net_ch = method.model_channels(in_ch)
    given = dict(models or {})
    if model is not None:
        given[method.parts()[0]] = model
    unknown = set(given) - set(method.parts())
    if unknown:
        raise ValueError(f"models has unknown parts {sorted(unknown)}; {method.name} has {list(method.parts())}")
    models, makers = {}, {}
    for i, name in enumerate(method.parts()):
        if given.get(name) is not None:
            models[name], makers[name] = given[name], None     # the given network's weights are the init
            continue

        def make(s: int, name: str = name, i: int = i) -> dict:
            with seeded(s + i):
                return method.make_model(net_ch, name).state_dict()

        with seeded(seed + i):
            m = method.make_model(net_ch, name)
        fixed = method.load_init(m, name, in_ch=net_ch)
        models[name], makers[name] = m, (None if fixed else make)
    tr = Trainer(method, models, makers, seed)
    tr.in_ch = in_ch
    tr.init_from = {n: method.init_from.get(n, "given" if makers[n] is None else "scratch") for n in models}
    return tr


def method_api(method_cls: type[Method]):
    """The module-level ``build``, ``fit`` and ``train`` functions of a method."""

    def build_(config: FitConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
               **overrides) -> Trainer:
        return build(method_cls, config, in_ch=in_ch, model=model, **overrides)

    def fit(y: torch.Tensor, config: FitConfig | None = None, *, clean: torch.Tensor | None = None,
            trainer: Trainer | None = None, seed: int | None = None, **overrides) -> FitResult:
        tr = trainer or build_(config, in_ch=int(y.shape[-3]), **overrides)
        return tr.fit(y, clean=clean, seed=seed)

    def train(images: list, config: FitConfig | None = None, *, crop: int | None = None,
              batch: int | None = None, iters: int | None = None, trainer: Trainer | None = None,
              seed: int | None = None, **overrides) -> Trainer:
        tr = trainer or build_(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), **overrides)
        method = tr.method
        imgs = [method.prepare(torch.as_tensor(im, dtype=torch.float32).reshape(1, *im.shape[-3:]))[0][0]
                for im in images]
        crop_, batch_ = method.dataset_crops(tr.device, crop, batch)
        sampler = crop_sampler(imgs, crop_, batch_, tr.seed_of(seed), augment=method.augment_crops())
        tr.fit_dataset(sampler, iters=iters, seed=seed, prepared=True)
        return tr

    name = method_cls.__name__
    build_.__doc__ = f"A :class:`~fastdenoise.methods.engine.Trainer` for {name} (see :func:`engine.build`)."
    fit.__doc__ = (f"Single-image mode: fit {name} to ``y`` (B, C, H, W) on [0, 1] and return the "
                   ":class:`FitResult` (``trainer`` from ``build`` is re-initialised in place and reused).")
    train.__doc__ = (f"Dataset mode: train {name} on random crops of ``images`` ((C, H, W) tensors) and return "
                     "the trainer; denoise afterwards with ``trainer.denoise(y)``. Checkpoint/resume through "
                     "the config.")
    build_.__name__ = "build"
    return build_, fit, train
