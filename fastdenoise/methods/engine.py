"""Shared training engine for the self-supervised methods.

A method is a small object with a config dataclass (its defaults, a subclass of :class:`FitConfig`) and a
``step(trainer, y, t, total, seed)`` written only with the public fused ops of
:mod:`fastdenoise.functional`; it returns ``(loss, estimate)`` where ``estimate`` is a denoised image of
``y`` the step computed anyway (used for the output EMA and the progress PSNR at no extra cost).

:class:`Trainer` owns the model, a copy of its initial weights, the optimiser and the loop:

* single-image mode :meth:`Trainer.fit` (fit to one noisy image and return it denoised) and dataset mode
  :meth:`Trainer.fit_dataset` (train on batches from a sampler, then :meth:`Trainer.denoise` anything);
* :meth:`Trainer.reset` re-initialises the weights in place (one copy per tensor) and zeroes the
  optimiser state, so many images reuse one model, one optimiser and (on CUDA) the same captured graphs;
* bf16 autocast, channels-last and CUDA-graph capture of the network (forward and backward, through
  ``torch.cuda.make_graphed_callables``) on CUDA; all three are ignored on the CPU;
* per-iteration seeds derived from ``(seed, t)``, so a resumed run repeats an uninterrupted one;
* loss log per iteration (kept on the device, synchronised only when the progress bar refreshes),
  optional tqdm progress bar with loss and PSNR against a clean reference, checkpoint save/resume.

``FitConfig(reference=True)`` selects the reference configuration: the plain-torch backend of every op,
fp32, no graph capture, no channels-last. It exists to show that the fused path reaches the same quality.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Callable

import torch

__all__ = ["FitConfig", "FitResult", "Trainer", "iter_seed", "resolve_device", "psnr_quick"]


@dataclass
class FitConfig:
    """Options shared by every method (each method subclasses this with its own defaults).

    Attributes:
        iters: iterations (None: the method's default for the device).
        lr: learning rate.
        optimizer: ``"adamw"`` or ``"adam"``.
        weight_decay: AdamW weight decay (ignored by Adam).
        seed: base seed; iteration t uses :func:`iter_seed` (seed, t).
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

    def replace(self, **kw) -> "FitConfig":
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **kw)

    # effective settings (the reference configuration overrides the speed options)
    @property
    def op_backend(self) -> str | None:
        return "torch" if self.reference else self.backend


@dataclass
class FitResult:
    """What a fit returns.

    Attributes:
        output: (B, C, H, W) network output on the input after the last step.
        ema_output: output EMA (None when ``ema`` is None).
        losses: loss per iteration (floats).
        psnr: list of (iteration, PSNR dB of the step's estimate) when a clean reference was given.
        iters: iterations run in this call (after any resume).
        seconds: wall time of the loop.
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


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; a requested CUDA device that is missing raises."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but no CUDA device is available (use device='cpu' or 'auto')")
    return dev


def make_optimizer(params, cfg: FitConfig, device: torch.device) -> torch.optim.Optimizer:
    """The config's Adam/AdamW over ``params`` (fused single-kernel update on CUDA)."""
    params = list(params)
    name = cfg.optimizer.lower()
    kw = {"lr": cfg.lr}
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


def psnr_quick(pred: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR in dB with the library's default convention (clamp, round to uint8, peak 255)."""
    try:
        from fastdenoise.metrics import psnr

        return float(psnr(pred.detach().float().cpu(), clean.detach().float().cpu()).mean())
    except ImportError:  # metrics module not available: the same convention inline
        q = lambda v: torch.floor(v.detach().float().clamp(0, 1) * 255 + 0.5)  # noqa: E731
        mse = float((q(pred) - q(clean)).pow(2).mean())
        return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


class _Shared(torch.nn.Module):
    """A module that runs (and owns the parameters of) ``model``; one per captured input shape."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _GraphedNet:
    """Callable network: CUDA-graphed per input shape when enabled, else the module itself."""

    def __init__(self, model: torch.nn.Module, enabled: bool, amp: bool):
        self.model, self.enabled, self.amp = model, enabled, amp
        self.graphs: dict[tuple, Callable] = {}
        self.failed = False

    def _autocast(self):
        dev = next(self.model.parameters()).device
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp and dev.type == "cuda",
                              cache_enabled=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled or self.failed or not x.is_cuda:
            with self._autocast():
                return self.model(x)
        key = (tuple(x.shape), x.dtype)
        fn = self.graphs.get(key)
        if fn is None:
            try:
                # capture needs autograd on (the P2N/Nb2Nb first pass calls the net under no_grad)
                with torch.enable_grad(), self._autocast():
                    sample = x.detach().clone().requires_grad_(False)
                    # a fresh wrapper per shape: make_graphed_callables patches the forward of the module it
                    # is given, so the shared model itself stays eager and every shape gets its own graphs
                    fn = torch.cuda.make_graphed_callables(_Shared(self.model), (sample,), num_warmup_iters=3)
                self.graphs[key] = fn
            except Exception as e:  # noqa: BLE001 - capture is an optimisation: fall back to eager
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); running eagerly",
                              stacklevel=2)
                self.failed = True
                with self._autocast():
                    return self.model(x)
        with self._autocast():
            return fn(x)


class Trainer:
    """Model + initial weights + optimiser + loop for one method.

    Args:
        model: the network (moved to the config's device).
        method: object with ``name``, ``step(trainer, y, t, total, seed) -> (loss, estimate)`` and
            ``default_iters(device) -> int``.
        config: the method's config (a :class:`FitConfig` subclass).

    Attributes:
        net: callable to run the network inside ``step`` (graphed on CUDA when enabled; autocast).
        backend: the op backend to pass to the fused ops.
    """

    def __init__(self, model: torch.nn.Module, method: Any, config: FitConfig):
        self.cfg = config
        self.method = method
        self.device = resolve_device(config.device)
        cuda = self.device.type == "cuda"
        ref = config.reference
        self.amp = bool(config.amp and cuda and not ref)
        self.channels_last = bool(config.channels_last and cuda and not ref)
        self.backend = config.op_backend
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.init_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.opt = self._make_optimizer()
        self.net = _GraphedNet(self.model, bool(config.cuda_graph and cuda and not ref), self.amp)
        self.t = 0                       # iterations done since the last reset
        self.ema: torch.Tensor | None = None
        self.loss_log: list[float] = []
        self.psnr_log: list[tuple[int, float]] = []

    # ------------------------------------------------------------------ state
    def _make_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.model.parameters(), self.cfg, self.device)

    def set_init_state(self, state: dict) -> None:
        """Replace the weights that :meth:`reset` restores (and load them now)."""
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                self.init_state[k].copy_(state[k].to(v.dtype))
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Restore the initial weights in place and zero the optimiser state (no reallocation)."""
        for k, v in self.model.state_dict().items():
            v.copy_(self.init_state[k])
        for st in self.opt.state.values():
            for v in st.values():
                if isinstance(v, torch.Tensor):
                    v.zero_()
        self.model.zero_grad(set_to_none=False)
        self.t, self.ema = 0, None
        self.loss_log, self.psnr_log = [], []

    def to_input(self, y: torch.Tensor) -> torch.Tensor:
        y = y.to(self.device, torch.float32)
        if y.dim() == 3:
            y = y.unsqueeze(0)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return y.contiguous() if not self.channels_last else y

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"method": getattr(self.method, "name", "?"), "t": self.t, "model": self.model.state_dict(),
                "opt": self.opt.state_dict(), "ema": self.ema, "losses": list(self.loss_log),
                "psnr": list(self.psnr_log), "config": dataclasses.asdict(self.cfg)}

    def save_checkpoint(self, path: str) -> None:
        """Atomic checkpoint: weights, optimiser state, iteration, EMA and logs."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(ck["model"][k])
        self.opt.load_state_dict(ck["opt"])
        self.t, self.ema = int(ck["t"]), ck.get("ema")
        self.loss_log, self.psnr_log = list(ck.get("losses", [])), list(ck.get("psnr", []))

    # ------------------------------------------------------------------ loop
    def _loop(self, get_batch: Callable[[int], torch.Tensor], total: int, clean: torch.Tensor | None,
              desc: str, use_ema: bool = True) -> tuple[float, int]:
        cfg = self.cfg
        if cfg.resume and cfg.checkpoint and os.path.exists(cfg.checkpoint):
            self.load_checkpoint(cfg.checkpoint)
        start = self.t
        bar = None
        if cfg.progress and start < total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True)
        pending: list[torch.Tensor] = []
        t0 = time.perf_counter()
        self.model.train()
        for t in range(start, total):
            y = get_batch(t)
            loss, est = self.method.step(self, y, t, total, iter_seed(cfg.seed, t))
            self.opt.zero_grad(set_to_none=False)
            loss.backward()
            self.opt.step()
            pending.append(loss.detach().float())
            if use_ema and cfg.ema is not None and est is not None:
                self.ema = ema_update(self.ema, est, cfg.ema)
            self.t = t + 1
            last = self.t == total
            if last or (self.t - start) % max(1, cfg.log_every) == 0:
                self.loss_log.extend(torch.stack(pending).cpu().tolist())
                pending = []
                post = {"loss": f"{self.loss_log[-1]:.4g}"}
                if clean is not None and est is not None and clean.shape == est.shape:
                    p = psnr_quick(self.ema if self.ema is not None else est, clean)
                    self.psnr_log.append((t, p))
                    post["psnr"] = f"{p:.2f}"
                if bar is not None:
                    bar.set_postfix(post, refresh=False)
                    bar.update(self.t - bar.n)
            if cfg.checkpoint and cfg.checkpoint_every and self.t % cfg.checkpoint_every == 0 and not last:
                if pending:
                    self.loss_log.extend(torch.stack(pending).cpu().tolist())
                    pending = []
                self.save_checkpoint(cfg.checkpoint)
        if pending:
            self.loss_log.extend(torch.stack(pending).cpu().tolist())
        if bar is not None:
            bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        secs = time.perf_counter() - t0
        if cfg.checkpoint:
            self.save_checkpoint(cfg.checkpoint)
        return secs, self.t - start

    def fit(self, y: torch.Tensor, *, iters: int | None = None, clean: torch.Tensor | None = None,
            reset: bool = True) -> FitResult:
        """Single-image mode: fit to the noisy ``y`` (B, C, H, W) and return it denoised.

        Args:
            y: noisy image(s), float on [0, 1] (batch entries are fitted jointly).
            iters: iterations (default: the config's, else the method's default for the device).
            clean: optional clean reference (same shape) for the PSNR log and progress bar.
            reset: re-initialise weights and optimiser first (False continues the current state).
        """
        if reset and not (self.cfg.resume and self.cfg.checkpoint and os.path.exists(self.cfg.checkpoint)):
            self.reset()
        y = self.to_input(y)
        if clean is not None:
            clean = clean.to(self.device, torch.float32).reshape(y.shape)
        total = self.total_iters(iters)
        secs, n = self._loop(lambda t: y, total, clean, f"{getattr(self.method, 'name', 'fit')}")
        out = self.denoise(y)
        return FitResult(out, None if self.ema is None else self.ema.clone(), list(self.loss_log),
                         list(self.psnr_log), n, secs)

    def fit_dataset(self, sampler: Callable[[int], torch.Tensor], *, iters: int | None = None) -> FitResult:
        """Dataset mode: train on ``sampler(t)`` batches (B, C, h, w) for ``iters`` iterations.

        The weights are not reset (call :meth:`reset` to start over); ``cfg.resume`` continues from the
        checkpoint. Use :meth:`denoise` afterwards.
        """
        total = self.total_iters(iters)
        # no output EMA in dataset mode: every iteration sees different crops
        secs, n = self._loop(lambda t: self.to_input(sampler(t)), total, None, "train", use_ema=False)
        return FitResult(torch.empty(0), None, list(self.loss_log), [], n, secs)

    def total_iters(self, iters: int | None) -> int:
        if iters is None:
            iters = self.cfg.iters
        if iters is None:
            iters = self.method.default_iters(self.device)
        if int(iters) < 0:
            raise ValueError(f"iters must be >= 0, got {iters}")
        return int(iters)

    @torch.no_grad()
    def denoise(self, y: torch.Tensor) -> torch.Tensor:
        """One forward pass (eval mode, fp32 output)."""
        self.model.eval()
        y = self.to_input(y)
        dev = self.device.type
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=self.amp and dev == "cuda"):
            out = self.model(y)
        self.model.train()
        return out.float().contiguous()


def clone_config(cfg: FitConfig, **kw) -> FitConfig:
    """Deep copy of a config with fields replaced."""
    return dataclasses.replace(copy.deepcopy(cfg), **kw)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the 8 dihedral transforms of the last two axes (rot90 by k % 4, flipped if k >= 4)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, (-2, -1)) if k % 4 else x


def crop_sampler(images: list, crop: int, batch: int, seed: int = 0,
                 augment: bool = False) -> Callable[[int], torch.Tensor]:
    """Dataset-mode sampler: ``sampler(t)`` -> (batch, C, crop, crop) random crops of ``images``.

    ``images`` are (C, H, W) (or (1, C, H, W)) float tensors with the same C; images smaller than
    ``crop`` are reflect/replicate padded; ``augment`` applies a random dihedral transform per crop.
    Crops depend only on (seed, t), so a resumed run sees the same batches; they stay on the images'
    device.
    """
    if not images:
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
