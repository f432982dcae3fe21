"""The training loop: :class:`Trainer` runs every method's stages, in single-image mode (:meth:`Trainer.fit`)
dataset mode (:meth:`Trainer.fit_dataset`) and batched fits of K images (:meth:`Trainer.fit_many`), through the one loop :meth:`Trainer._loop` that calls the
callbacks of :mod:`fastdenoise.engine.callbacks` (progress, logs, output and weight EMAs, time budget,
checkpoints). Inference and checkpoints come from the :class:`~fastdenoise.engine.inference.Inference` and
:class:`~fastdenoise.engine.checkpoint.Checkpoints` mixins.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch

from fastdenoise.engine import callbacks as cb
from fastdenoise.engine.batched import Batched
from fastdenoise.engine.checkpoint import Checkpoints
from fastdenoise.engine.common import iter_seed
from fastdenoise.engine.common import resolve_device
from fastdenoise.engine.config import FitResult
from fastdenoise.engine.data import canonical_strides
from fastdenoise.engine.data import crop_sampler
from fastdenoise.engine.inference import Inference
from fastdenoise.engine.method import Method
from fastdenoise.engine.method import Stage
from fastdenoise.engine.state import Part
from fastdenoise.engine.state import Run


class Trainer(Inference, Checkpoints, Batched):
    """The networks, optimisers and loop of one method. Use :func:`fastdenoise.engine.build`.

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
        self.run = self.new_run(init_seed)
        self.in_ch: int | None = None          # image channels the trainer takes (set by build)
        self.wrap_step: Callable | None = None   # (stage, step) -> step, set by fastdenoise.distributed
        self.plan: dict = {}                      # the last memory_plan (crops, tiles) of fit/denoise
        self._per_pixel: float | None = None


    def default(self, name: str):
        """The method's default of the shared option ``name`` here (:meth:`Method.defaults`)."""
        return self.method.defaults(self.device, self.method.started)[name]

    def new_run(self, seed: int) -> Run:
        return Run(self, seed)

    # ------------------------------------------------------------------ the first network (most methods have one)
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

    def seed_of(self, seed: int | None) -> int:
        from fastdenoise._runtime import check_seed

        return check_seed(self.cfg.seed if seed is None else seed)

    def reset(self, seed: int | None = None) -> None:
        """Initial weights back in place for ``seed`` (default: the config's), optimisers zeroed, a new run."""
        seed = self.seed_of(seed)
        for p in self.parts.values():
            p.reset(seed)
        self.run = self.new_run(seed)

    def to_input(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as the networks take it: float32 (B, C, H, W) on the device, in the trainer's memory format
        with canonical strides (also on size-1 axes, whose strides change the reduction order of some CPU
        kernels: the same image must give the same bits however it was made)."""
        y = y.to(self.device, torch.float32)
        if y.dim() == 3:
            y = y.unsqueeze(0)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if not y.is_contiguous(memory_format=fmt) or y.stride() != canonical_strides(y.shape, fmt):
            y = y.clone(memory_format=fmt)
        return y

    def total_iters(self, iters: int | None) -> int:
        if iters is None:
            iters = self.cfg.iters
        if iters is None:
            iters = self.default("iters")
        if isinstance(iters, bool) or int(iters) != iters or int(iters) < 0:
            raise ValueError(f"iters must be an integer >= 0, got {iters!r}")
        return int(iters)

    # ------------------------------------------------------------------ loop
    def _train(self, get_batch: Callable[[int], torch.Tensor], iters: int | None,
               clean: torch.Tensor | None, use_ema: bool) -> tuple[float, int]:
        """Run every stage (from where the run stands) on ``get_batch(t)`` batches."""
        nominal = self.total_iters(iters)
        run = self.run

        def share(i: int, count: int) -> int:      # stage i's share of the fit's iteration count
            st = self.stages[i]
            return st.iters(count) if st.iters else count

        budget = None
        if self.cfg.time_budget:
            budget = cb.TimeBudget(self, self.cfg.time_budget, nominal, share)
        secs, n = 0.0, 0
        for i, stage in enumerate(self.stages):
            if i < run.stage:
                continue
            if i > run.stage:               # a fresh stage
                run.stage, run.t = i, 0
            run.part = self.parts[stage.part]
            total = share(i, budget.count if budget is not None else nominal)
            if run.t == 0 and stage.on_start is not None:
                stage.on_start(run)
            s, k = self._loop(stage, get_batch, total, clean, use_ema, budget)
            secs, n = secs + s, n + k
            if stage.name not in run.done:
                run.done.append(stage.name)
        run.stage = len(self.stages)
        return secs, n

    def callbacks(self, use_ema: bool, budget: cb.TimeBudget | None) -> list[cb.Callback]:
        """What runs around each step of a stage, in order (see :mod:`fastdenoise.engine.callbacks`)."""
        cfg = self.cfg
        out: list[cb.Callback] = [budget] if budget is not None else []
        decay = self.weight_ema_decay()
        if decay:
            out.append(cb.WeightEMA(decay))
        if use_ema and cfg.ema is not None:
            out.append(cb.OutputEMA(cfg.ema))
        guard = self.collapse_guard()
        if guard:
            out.append(cb.CollapseGuard(self, guard))   # after the output EMA: it may reset it
        losses = cb.LossLog()
        out += [losses, cb.PSNRLog()]
        if cfg.progress:
            out.append(cb.Progress())
        if cfg.checkpoint:
            out.append(cb.Checkpointer(cfg.checkpoint, cfg.checkpoint_every, losses))
        return out

    def _loop(self, stage: Stage, get_batch, total: int, clean, use_ema: bool,
              budget: cb.TimeBudget | None = None) -> tuple[float, int]:
        """The one training loop: iterations ``run.t`` .. ``total`` of ``stage``, the callbacks around them."""
        run = self.run
        loop = cb.StageLoop(self, stage, total, clean, use_ema)
        calls = self.callbacks(use_ema, budget)
        rng = run.torch_rng() if self.method.uses_torch_rng else contextlib.nullcontext()
        step = stage.step or self.method.step
        for c in calls:
            c.stage_start(loop)
        loop.t0 = time.perf_counter()
        self.train_mode(loop.part.model)
        with rng:
            t = loop.start
            while t < loop.total:
                loop.t, loop.t_iter = t, time.perf_counter()
                loop.batch = get_batch(t)
                loop.loss, loop.est = self._iteration(stage, step, loop.batch, t, loop.total)
                run.t = t + 1
                for c in calls:
                    c.after_step(loop)
                t += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        secs = time.perf_counter() - loop.t0
        for c in calls:
            c.stage_end(loop)
        return secs, run.t - loop.start

    def freeze_bn_active(self) -> bool:
        """Whether BatchNorm layers stay in eval mode while training (``cfg.freeze_bn`` or the method's
        default; never in dataset mode)."""
        if self.run.dataset_mode:
            return False
        f = self.cfg.freeze_bn
        return bool(self.default("freeze_bn") if f is None else f)

    def train_mode(self, model: torch.nn.Module) -> None:
        """``model.train()``, its BatchNorm layers back in eval mode when :meth:`freeze_bn_active`."""
        model.train()
        if self.freeze_bn_active():
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def collapse_guard(self) -> float | None:
        """The :class:`~fastdenoise.engine.callbacks.CollapseGuard` ratio in effect (a method's ``guard``
        config field, or its default; None: no guard)."""
        g = getattr(self.cfg, "guard", None)
        if g is None:
            g = self.method.defaults(self.device, self.method.started).get("guard")
        return float(g) if g else None

    def weight_ema_decay(self) -> float:
        """The weight-EMA decay in effect (``cfg.weight_ema``, checked by :func:`build`, or the method's)."""
        d = self.cfg.weight_ema
        return float(self.default("weight_ema") if d is None else d)

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
        # a batched fit's loss is the mean over its K images: K times it gives each copy its own loss's gradient
        (loss if run.batched == 1 else loss * run.batched).backward()
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
            self.run = self.new_run(self.seed_of(seed))
        self.run.dataset_mode = True
        prep = (lambda b: b) if prepared else (lambda b: self.method.prepare(b)[0])
        secs, n = self._train(lambda t: prep(self.to_input(sampler(t))), iters, None, use_ema=False)
        return FitResult(torch.empty(0), None, list(self.run.losses), [], n, secs)

    def train_images(self, images: list, *, crop: int | None = None, batch: int | None = None,
                     iters: int | None = None, seed: int | None = None, crop_seed: int | None = None) -> FitResult:
        """Dataset mode on a list of noisy images: the one entry of the API (``M.train``), ``fastdenoise train``
        and stacks, so that they train the same way for the same method and seed.

        Each image ((C, H, W) or (1, C, H, W)) goes through the method's :meth:`Method.prepare` whole (e.g.
        Noise2Same's standardisation of the whole image); steps take ``batch`` random crops of side ``crop``
        (None: the method's :meth:`Method.dataset_crops`; at most the largest image side, smaller images
        padded), with the method's augmentation (:meth:`Method.augment_crops`). ``crop_seed`` seeds the crops
        (default: the run's seed; distributed runs give each rank its own).
        """
        if not len(images):
            raise ValueError("images must not be empty")
        method = self.method
        imgs = [method.prepare(torch.as_tensor(im, dtype=torch.float32).reshape(1, *im.shape[-3:]))[0][0]
                for im in images]
        side, b = method.dataset_crops(self.device, crop, batch)
        side = max(2, min(side, max(im.shape[-2] for im in imgs), max(im.shape[-1] for im in imgs)))
        seed = self.seed_of(seed)
        sampler = crop_sampler(imgs, side, b, seed if crop_seed is None else crop_seed,
                               augment=method.augment_crops())
        self.plan = {"crop": side, "batch": b}
        return self.fit_dataset(sampler, iters=iters, seed=seed, prepared=True)
