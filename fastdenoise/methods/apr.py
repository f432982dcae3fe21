"""APR-RD (AAAI 2025) on the fused ops (METHODS.md section 4): APR training of the AT-BSN blind-spot
network, then optional Recharged Distillation (RD) into a non-blind student.

Stage 1, APR (per iteration, on a batch of crops ``y``):

1. ``f(y)`` with the s=5 blind spot (9x9 hole) under ``no_grad`` (the paper's stop-gradient; with
   ``grad_through_reg=True`` it carries a gradient, as the official trainer does);
2. ``h1(y)`` from the fused Adjacent Pixel Replacer (:func:`fastdenoise.functional.apr_sample`);
3. ``out = f_5(h1(y))``;
4. ``L = mean|out - h2 y| + 4 mean|out - h2 y - (h1 f(y) - h2 f(y))|`` with the fused
   :func:`~fastdenoise.functional.apr_loss` (same seed, so the same pairs; nothing else materialised).

Inference of the BSN uses s=1 (APR paper; AT-BSN uses 2: ``s_infer``).

Stage 2, RD: teachers ``T_s = BSN_s(y)``, s = 0..5, under ``no_grad`` from one trunk pass
(:meth:`~fastdenoise.models.atbsn.ATBSN.teachers`), student ``fD(y)`` (``Student``, "1.00M" by default,
fresh init by default; ``student_init="bsn"`` copies the BSN's U-Net weights as AT-BSN's distiller
does), loss ``sum_j mean|fD(y) - recharge_j|`` with the fused
:func:`~fastdenoise.functional.recharge_l1_loss`. The student is the final denoiser when RD ran.

Both stages: Adam, lr 3e-4, cosine decay to 0 over the stage's iterations (the engine has no scheduler:
the step sets the learning rate from the iteration index, so resumed runs follow the same curve;
``schedule="constant"`` disables it).

Either stage runs alone: ``stages="apr"`` (BSN only, RD off), ``stages="rd"`` (distil a BSN given by
``weights``), ``stages="apr+rd"`` (default).

Single-image [DECISION] (METHODS 4.8; no official zero-shot recipe): random crops of the one image with a
random dihedral transform each, capped iterations, RD optional. Defaults (``iters``/``crop``/``batch``
None): CUDA 3000 APR iterations on 8 x 128^2 crops, then 1500 RD iterations; CPU 150 APR iterations
on 2 x 48^2 crops, then 75 RD iterations (the 4-branch BSN costs about 4 U-Net passes per forward, so
this is already several minutes per image on two cores; it is far from converged: pass ``iters`` for
quality). ``rd_iters`` None = half the APR
iterations (the APR paper's 200k/400k ratio). Per-step estimates are crops, so the engine's output EMA
and PSNR log are not used (the step returns no estimate).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import torch

from fastdenoise.methods.engine import FitConfig
from fastdenoise.methods.engine import FitResult
from fastdenoise.methods.engine import Trainer
from fastdenoise.methods.noise2same import dihedral_crop_sampler
from fastdenoise.methods.noise2same import set_lr

CUDA_ITERS, CPU_ITERS = 3000, 150
CUDA_CROP, CPU_CROP = 128, 48
CUDA_BATCH, CPU_BATCH = 8, 2
STAGES = ("apr", "rd", "apr+rd")

__all__ = ["APRConfig", "APR", "RD", "APRTrainer", "build", "fit", "train", "distill", "cosine_lr"]


@dataclass
class APRConfig(FitConfig):
    """APR-RD defaults (see the module docstring). Extra fields:

    Attributes:
        lam: APR regulariser weight (4, constant).
        s_train: blind-spot shift of the BSN in training (5: 9x9 hole).
        s_infer: shift used when the BSN denoises (1: single-pixel blind spot).
        grad_through_reg: gradient also through f(y) (official code) instead of the paper's stop-grad.
        schedule: ``"cosine"`` (to 0 over each stage) or ``"constant"``.
        crop, batch: training crops (None: 128/8 on CUDA, 48/2 on the CPU).
        augment: random dihedral transform per crop.
        stages: ``"apr+rd"``, ``"apr"`` (no distillation) or ``"rd"`` (distil the BSN of ``weights``).
        rd_iters: RD iterations (None: half the APR iterations).
        rd_lr: RD learning rate.
        rd_shifts: teacher shifts (0..5, J=6).
        student: ``"1.00M"`` (AT-BSN code) or ``"1.02M"`` (APR paper).
        student_init: ``"fresh"`` (APR-RD) or ``"bsn"`` (copy the BSN's U-Net weights, AT-BSN's distiller).
        base, head: BSN widths (48, 96).
        weights: BSN initial weights (a state dict or trainer checkpoint).
    """

    iters: int | None = None
    lr: float = 3e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lam: float = 4.0
    s_train: int = 5
    s_infer: int = 1
    grad_through_reg: bool = False
    schedule: str = "cosine"
    crop: int | None = None
    batch: int | None = None
    augment: bool = True
    stages: str = "apr+rd"
    rd_iters: int | None = None
    rd_lr: float = 3e-4
    rd_shifts: tuple = (0, 1, 2, 3, 4, 5)
    student: str = "1.00M"
    student_init: str = "fresh"
    base: int = 48
    head: int = 96
    weights: str | None = None


def cosine_lr(base_lr: float, t: int, total: int) -> float:
    """Cosine decay from ``base_lr`` at t=0 to 0 at t=total."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(t, total) / max(1, total)))


def _lr(cfg: APRConfig, base_lr: float, t: int, total: int) -> float:
    return cosine_lr(base_lr, t, total) if cfg.schedule == "cosine" else base_lr


def _autocast(tr: Trainer):
    dev = tr.device.type
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=tr.amp and dev == "cuda", cache_enabled=False)


class APR:
    """Stage 1: the APR step on the BSN (``tr.model``)."""

    name = "apr"

    def __init__(self, config: APRConfig):
        self.cfg = config

    def default_iters(self, device: torch.device) -> int:
        return CUDA_ITERS if device.type == "cuda" else CPU_ITERS

    def step(self, tr: Trainer, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, tr.backend
        set_lr(tr, _lr(c, c.lr, t, total))
        # f(y) runs eagerly (not through a captured graph: it has the shape of the next pass)
        if c.grad_through_reg:
            with _autocast(tr):
                fy = tr.model(y, s=c.s_train).float()
        else:
            with torch.no_grad(), _autocast(tr):
                fy = tr.model(y, s=c.s_train).float()
        h1, _ = F.apr_sample(y, seed, need_h2=False, backend=be)
        out = tr.net(h1).float()             # tr.model.s == s_train
        loss = F.apr_loss(out, y, fy, seed, c.lam, c.grad_through_reg, backend=be)
        return loss, None                    # crops: no whole-image estimate


class RD:
    """Stage 2: Recharged Distillation of ``bsn`` into the student (``tr.model``)."""

    name = "apr-rd"

    def __init__(self, config: APRConfig, bsn: torch.nn.Module, default: int = 0):
        self.cfg, self.bsn, self.default = config, bsn, default

    def default_iters(self, device: torch.device) -> int:
        return self.default

    def step(self, tr: Trainer, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, tr.backend
        set_lr(tr, _lr(c, c.rd_lr, t, total))
        with torch.no_grad(), _autocast(tr):
            teachers = torch.stack([o.float() for o in self.bsn.teachers(y, c.rd_shifts)])
        out = tr.net(y).float()
        loss = F.recharge_l1_loss(out, y, teachers, seed, backend=be)
        return loss, None


class APRTrainer(Trainer):
    """:class:`Trainer` of the BSN (stage 1) that also owns the RD student's trainer (stage 2).

    :meth:`fit` runs the configured stages on crops of one image and denoises it (with the student when
    RD ran, else with the BSN at ``s_infer``); :meth:`reset` re-initialises both networks in place.
    """

    def __init__(self, model: torch.nn.Module, method: APR, config: APRConfig,
                 student: torch.nn.Module | None = None):
        super().__init__(model, method, config)
        self.model.s = config.s_train        # what tr.net (single-argument) runs in training
        self._student = student
        self.rd: Trainer | None = None
        self.distilled = False

    # ------------------------------------------------------------------ sizes
    def crop_size(self) -> int:
        return self.cfg.crop or (CUDA_CROP if self.device.type == "cuda" else CPU_CROP)

    def batch_size(self) -> int:
        return self.cfg.batch or (CUDA_BATCH if self.device.type == "cuda" else CPU_BATCH)

    def rd_total(self, apr_total: int) -> int:
        c = self.cfg
        if c.rd_iters is not None:
            return int(c.rd_iters)
        return max(1, apr_total // 2) if "apr" in c.stages.split("+") else apr_total

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self.distilled = False

    def student_trainer(self) -> Trainer:
        """The RD trainer (built on first use; the student is seeded by ``seed + 1``)."""
        if self.rd is None:
            from fastdenoise.models.atbsn import Student

            c = self.cfg
            st = self._student
            if st is None:
                torch.manual_seed(c.seed + 1)
                st = Student(self.model.in_ch, c.student)
            rcfg = c.replace(lr=c.rd_lr, checkpoint=(c.checkpoint + ".rd") if c.checkpoint else None)
            self.rd = Trainer(st, RD(rcfg, self.model), rcfg)
        return self.rd

    def _bsn_init_for_student(self, rd: Trainer) -> dict:
        """The student's init state with the BSN's U-Net weights copied in (except dec_conv1a/b)."""
        state = {k: v.clone() for k, v in rd.init_state.items()}
        bsn = self.model.state_dict()
        for k in state:
            if k.startswith("unet.dec_conv1"):
                continue
            if k in bsn and bsn[k].shape == state[k].shape:
                state[k] = bsn[k].detach().clone()
        return state

    def run_rd(self, get_batch: Callable[[int], torch.Tensor], iters: int) -> tuple[float, int]:
        """Stage 2 on batches ``get_batch(t)`` for ``iters`` iterations (student re-initialised first,
        unless resuming from its checkpoint)."""
        rd = self.student_trainer()
        rd.method.default = iters
        c = rd.cfg
        resuming = c.resume and c.checkpoint and os.path.exists(c.checkpoint)
        if not resuming:
            if self.cfg.student_init == "bsn":
                keep = {k: v.clone() for k, v in rd.init_state.items()}
                rd.set_init_state(self._bsn_init_for_student(rd))
                for k, v in keep.items():    # restore the fresh init for the next reset
                    rd.init_state[k].copy_(v)
            else:
                rd.reset()
        self.model.eval()
        try:
            secs, n = rd._loop(lambda t: rd.to_input(get_batch(t)), iters, None, "rd")
        finally:
            self.model.train()
        self.distilled = True
        return secs, n

    # ------------------------------------------------------------------ modes
    def _run(self, get_batch: Callable[[int], torch.Tensor], iters: int | None) -> tuple[float, int, list]:
        stages = self.cfg.stages.split("+")
        total = self.total_iters(iters)
        secs, n, losses = 0.0, 0, []
        if "apr" in stages:
            secs, n = self._loop(get_batch, total, None, "apr")
            losses += list(self.loss_log)
        if "rd" in stages:
            s2, n2 = self.run_rd(get_batch, self.rd_total(total))
            secs, n = secs + s2, n + n2
            losses += list(self.rd.loss_log)
        return secs, n, losses

    def fit(self, y: torch.Tensor, *, iters: int | None = None, clean: torch.Tensor | None = None,
            reset: bool = True) -> FitResult:
        """Single-image mode: the configured stages on random (augmented) crops of ``y``, then denoise it.

        ``iters`` are the APR iterations (RD: ``rd_iters``, default half). The result's ``losses`` hold the
        APR losses followed by the RD losses, ``iters`` and ``seconds`` both stages. ``clean`` is
        accepted for API symmetry (per-step estimates are crops: no PSNR log).
        """
        c = self.cfg
        if reset and not (c.resume and c.checkpoint and os.path.exists(c.checkpoint)):
            self.reset()
        y = self.to_input(y)
        sampler = dihedral_crop_sampler(list(y), self.crop_size(), self.batch_size(), c.seed, c.augment)
        secs, n, losses = self._run(lambda t: self.to_input(sampler(t)), iters)
        return FitResult(self.denoise(y), None, losses, [], n, secs)

    def fit_dataset(self, sampler: Callable[[int], torch.Tensor], *, iters: int | None = None) -> FitResult:
        """Dataset mode: the configured stages on ``sampler(t)`` batches (no reset)."""
        secs, n, losses = self._run(lambda t: self.to_input(sampler(t)), iters)
        return FitResult(torch.empty(0), None, losses, [], n, secs)

    @torch.no_grad()
    def denoise(self, y: torch.Tensor, *, use_student: bool | None = None) -> torch.Tensor:
        """Denoise ``y``: the student when RD ran (``use_student`` None/True), else the BSN at ``s_infer``."""
        if use_student is None:
            use_student = self.distilled
        if use_student:
            return self.student_trainer().denoise(y)
        y = self.to_input(y)
        self.model.eval()
        with _autocast(self):
            out = self.model(y, s=self.cfg.s_infer)
        self.model.train()
        return out.float().contiguous()


def _check(cfg: APRConfig) -> None:
    if cfg.stages not in STAGES:
        raise ValueError(f"stages must be one of {STAGES}, got {cfg.stages!r}")
    if cfg.schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    if cfg.student_init not in ("fresh", "bsn"):
        raise ValueError(f"student_init must be 'fresh' or 'bsn', got {cfg.student_init!r}")
    if cfg.s_train < 1:
        raise ValueError(f"s_train must be >= 1 (s=0 is not blind), got {cfg.s_train}")
    if len(cfg.rd_shifts) < 1:
        raise ValueError("rd_shifts must not be empty")


def build(config: APRConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
          student: torch.nn.Module | None = None, **overrides) -> APRTrainer:
    """An :class:`APRTrainer` (a fresh AT-BSN seeded by ``config.seed`` with optional ``weights``, or
    ``model``; the RD student is built on first use, or ``student``)."""
    cfg = config or APRConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    _check(cfg)
    if cfg.stages == "rd" and not cfg.weights and model is None:
        raise ValueError("stages='rd' distils a trained BSN: pass weights=... (or model=)")
    if model is None:
        from fastdenoise.models.atbsn import ATBSN

        torch.manual_seed(cfg.seed)
        model = ATBSN(in_ch, base=cfg.base, head=cfg.head, s=cfg.s_train, backend=cfg.op_backend)
        if cfg.weights:
            from fastdenoise.methods.p2n import load_weights

            model.load_state_dict(load_weights(cfg.weights))
    return APRTrainer(model, APR(cfg), cfg, student)


def fit(y: torch.Tensor, config: APRConfig | None = None, *, clean: torch.Tensor | None = None,
        trainer: Trainer | None = None, **overrides) -> FitResult:
    """Single-image mode: APR (+ RD) on ``y`` (B, C, H, W) on [0, 1]; returns the denoised result."""
    tr = trainer or build(config, in_ch=y.shape[-3], **overrides)
    return tr.fit(y, clean=clean)


def train(images: list, config: APRConfig | None = None, *, crop: int | None = None, batch: int | None = None,
          iters: int | None = None, trainer: Trainer | None = None, **overrides) -> APRTrainer:
    """Dataset mode: the configured stages on random augmented crops of ``images`` ((C, H, W) tensors).

    Denoise afterwards with ``trainer.denoise(y)``.
    """
    tr = trainer or build(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), **overrides)
    sampler = dihedral_crop_sampler(list(images), crop or tr.crop_size(), batch or tr.batch_size(), tr.cfg.seed,
                                    tr.cfg.augment)
    tr.fit_dataset(sampler, iters=iters)
    return tr


def distill(images: list, weights: str | None = None, config: APRConfig | None = None, *,
            model: torch.nn.Module | None = None, **kw) -> APRTrainer:
    """Stage 2 alone (dataset mode): distil the BSN of ``weights`` (or ``model``) into a student."""
    if weights is None and model is None:
        raise ValueError("distill needs the BSN: weights=... or model=...")
    over = {"stages": "rd"}
    if weights is not None:
        over["weights"] = weights
    tr = build(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), model=model, **over,
               **{k: v for k, v in kw.items() if k not in ("crop", "batch", "iters")})
    return train(images, trainer=tr, crop=kw.get("crop"), batch=kw.get("batch"), iters=kw.get("iters"))
