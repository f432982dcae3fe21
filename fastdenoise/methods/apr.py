"""APR-RD (AAAI 2025) on the fused ops: APR training of the AT-BSN blind-spot
network, then optional Recharged Distillation (RD) into a non-blind student.

Stage 1, APR (per iteration, on a batch of crops ``y``):

1. ``f(y)`` with the s=5 blind spot (9x9 hole) under ``no_grad`` (the paper's stop-gradient; with
   ``grad_through_reg=True`` it carries a gradient, as the official trainer does);
2. ``h1(y)`` from the fused Adjacent Pixel Replacer (:func:`fastdenoise.functional.apr_sample`);
3. ``out = f_5(h1(y))``;
4. ``L = mean|out - h2 y| + 4 mean|out - h2 y - (h1 f(y) - h2 f(y))|`` with the fused
   :func:`~fastdenoise.functional.apr_loss` (same seed, so the same pairs; nothing else materialised).

Stage 2, RD (a second network, the student, trained after stage 1 on the same batches):

1. teachers ``T_s = BSN_s(y)``, s = 0..5, under ``no_grad`` from one trunk pass
   (:meth:`~fastdenoise.models.atbsn.ATBSN.teachers`);
2. the student ``fD(y)`` (``Student``, "1.00M" by default, fresh init by default; ``student_init="bsn"``
   copies the BSN's U-Net weights as AT-BSN's distiller does);
3. ``L = sum_j mean|fD(y) - recharge_j|`` with the fused :func:`~fastdenoise.functional.recharge_l1_loss`.

The student is the final denoiser when RD ran; otherwise the BSN denoises with the blind-spot shift
``s_infer`` (1 on CUDA, the APR paper's; 0 on the CPU: no blind spot, every branch also sees its own row).

Both stages: Adam, lr 3e-4, cosine decay to 0 over the stage's iterations (set from the iteration index, so
a resumed run follows the same curve; ``schedule="constant"`` disables it). Either stage runs alone:
``stages="apr"`` (BSN only), ``stages="rd"`` (distil a BSN given by ``weights``), ``stages="apr+rd"``.

The BSN denoises in overlapping, blended tiles of its training crop (``bsn_tile``; half a tile of overlap,
the windows stacked on the batch axis), and the RD teachers come from the same tiles: its receptive field is
one-sided and spans the whole image, so a BSN trained on small crops does not transfer to a larger input.

Single-image defaults (``iters``/``crop``/``batch``/``stages``/``s_infer``/``tta`` None;
[DECISION]: random crops of the one image with a random dihedral transform each):

* CUDA: 3000 APR iterations on 8 x 128^2 crops, then 1500 RD iterations; BSN inference at s=1, tta 1.
* CPU: 120 APR iterations on 8 x 32^2 crops from the shipped start (``fastdenoise/weights/apr_start.pt``),
  no RD (the BSN's output is final), s=0, 32^2 tiles, the output averaged over 4 rotations (``tta=4``).

A grayscale image: the RGB start folded over the colour channels (the engine's grayscale policy).
``rd_iters`` None = half the APR iterations (the APR paper's 200k/400k ratio). Per-step estimates are
crops, so the engine's output EMA and PSNR log are not used (the step returns no estimate).
Measurements: ``docs/methods/apr.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastdenoise.engine import FitConfig
from fastdenoise.engine import Method
from fastdenoise.engine import Stage
from fastdenoise.engine import build as _build
from fastdenoise.engine import cosine_lr
from fastdenoise.engine import CropTraining
from fastdenoise.engine import method_api

CUDA_ITERS, CPU_ITERS = 3000, 120
CUDA_CROP, CPU_CROP = 128, 32   # CPU: the BSN start is trained on, and denoises in, 32^2 tiles
CUDA_BATCH, CPU_BATCH = 8, 8
CUDA_STAGES, CPU_STAGES = "apr+rd", "apr"   # CPU: the BSN (on tiles) beats the student within 90 s
CUDA_S_INFER, CPU_S_INFER = 1, 0            # CPU: the BSN's output is final, no blind spot
CPU_TTA = 4                                 # CPU: 4 rotations at inference (docs/methods/apr.md)
STAGES = ("apr", "rd", "apr+rd")

__all__ = ["APRConfig", "APR", "build", "fit", "train", "distill", "cosine_lr"]


@dataclass
class APRConfig(FitConfig):
    """APR-RD defaults (see the module docstring). Extra fields:

    Attributes:
        lam: APR regulariser weight (4, constant).
        s_train: blind-spot shift of the BSN in training (5: 9x9 hole).
        s_infer: shift used when the BSN denoises (None: 1 on CUDA, the APR paper's single-pixel blind
            spot; 0 on the CPU, no blind spot, see the module docstring; AT-BSN uses 2).
        bsn_tile: the BSN denoises (its own output, and the RD teachers) in overlapping, blended tiles of
            this side (None: the training ``crop``, 32 on the CPU; overlap half a tile); 0 = the whole
            input. The BSN's one-sided receptive field spans a whole image, and one trained on small crops
            does not transfer to larger inputs (module docstring).
        grad_through_reg: gradient also through f(y) (official code) instead of the paper's stop-grad.
        schedule: ``"cosine"`` (to 0 over each stage) or ``"constant"``.
        crop, batch: training crops (None: 128/8 on CUDA, 32/8 on the CPU).
        augment: random dihedral transform per crop.
        stages: ``"apr+rd"``, ``"apr"`` (no distillation) or ``"rd"`` (distil the BSN of ``weights``);
            None: ``"apr+rd"`` on CUDA, ``"apr"`` on the CPU (module docstring).
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
    s_infer: int | None = None
    bsn_tile: int | None = None
    grad_through_reg: bool = False
    schedule: str = "cosine"
    crop: int | None = None
    batch: int | None = None
    augment: bool = True
    stages: str | None = None
    rd_iters: int | None = None
    rd_lr: float = 3e-4
    rd_shifts: tuple = (0, 1, 2, 3, 4, 5)
    student: str = "1.00M"
    student_init: str = "fresh"
    base: int = 48
    head: int = 96
    weights: str | None = None


class APR(CropTraining, Method):
    """APR-RD: stage 1 trains the BSN (part ``"bsn"``) with the APR step, stage 2 distils it into the
    student (part ``"student"``) with the RD step; either stage can run alone (``stages``)."""

    name = "apr"
    summary = "APR sampler on the AT-BSN blind-spot net, then Recharged Distillation"
    Config = APRConfig

    def resolve(self, cfg: APRConfig, device: torch.device) -> APRConfig:
        cuda = device.type == "cuda"
        return cfg.replace(crop=cfg.crop or (CUDA_CROP if cuda else CPU_CROP),
                           batch=cfg.batch or (CUDA_BATCH if cuda else CPU_BATCH),
                           stages=cfg.stages or (CUDA_STAGES if cuda else CPU_STAGES),
                           s_infer=(CUDA_S_INFER if cuda else CPU_S_INFER) if cfg.s_infer is None else cfg.s_infer,
                           bsn_tile=cfg.crop or (CUDA_CROP if cuda else CPU_CROP) if cfg.bsn_tile is None
                           else cfg.bsn_tile)

    def check(self) -> None:
        c = self.cfg
        if c.stages not in STAGES:
            raise ValueError(f"stages must be one of {STAGES}, got {c.stages!r}")
        if c.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {c.schedule!r}")
        if c.student_init not in ("fresh", "bsn"):
            raise ValueError(f"student_init must be 'fresh' or 'bsn', got {c.student_init!r}")
        if c.s_train < 1:
            raise ValueError(f"s_train must be >= 1 (s=0 is not blind), got {c.s_train}")
        if c.s_infer < 0:
            raise ValueError(f"s_infer must be >= 0 (0: no blind spot), got {c.s_infer}")
        if len(c.rd_shifts) < 1:
            raise ValueError("rd_shifts must not be empty")
        if c.bsn_tile is None or c.bsn_tile < 0 or (0 < c.bsn_tile < 8):
            raise ValueError(f"bsn_tile must be 0 (whole input) or a tile side >= 8, got {c.bsn_tile!r}")

    def defaults(self, device: torch.device, started: bool) -> dict:
        cuda = device.type == "cuda"
        return {**super().defaults(device, started), "iters": CUDA_ITERS if cuda else CPU_ITERS,
                "tta": 1 if cuda else CPU_TTA}   # CPU: +0.1 dB for about 14 s (docs/methods/apr.md)

    def parts(self) -> tuple[str, ...]:
        return ("bsn", "student")

    def make_model(self, in_ch: int, part: str = "bsn") -> torch.nn.Module:
        from fastdenoise.models.atbsn import ATBSN
        from fastdenoise.models.atbsn import Student

        c = self.cfg
        if part == "bsn":
            return ATBSN(in_ch, base=c.base, head=c.head, s=c.s_train, backend=c.op_backend)
        return Student(in_ch, c.student)

    def stages(self) -> list[Stage]:
        c, want = self.cfg, self.cfg.stages.split("+")
        sched = (lambda base: lambda t, total: cosine_lr(base, t, total)) if c.schedule == "cosine" else \
            (lambda base: None)
        out = []
        if "apr" in want:
            out.append(Stage("apr", "bsn", self.apr_step, c.lr, sched(c.lr), on_start=self.apr_start))
        if "rd" in want:
            out.append(Stage("rd", "student", self.rd_step, c.rd_lr, sched(c.rd_lr), iters=self.rd_iters,
                             on_start=self.rd_start))
        return out

    def rd_iters(self, apr_total: int) -> int:
        """RD iterations: ``rd_iters``, else half the APR iterations (the APR paper's ratio)."""
        c = self.cfg
        if c.rd_iters is not None:
            return int(c.rd_iters)
        if "apr" not in c.stages.split("+"):
            return apr_total
        return max(1, apr_total // 2) if apr_total else 0      # iters=0: the networks as they are

    # --- stage 1: APR on the BSN
    def apr_start(self, run) -> None:
        run.parts["bsn"].model.s = self.cfg.s_train       # what run.net (single-argument) trains

    def apr_step(self, run, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c, be = self.cfg, run.backend
        # 1. f(y) with the s_train blind spot, eagerly (not a captured graph: it has the next pass's shape);
        #    stop-gradient unless grad_through_reg (the official trainer)
        with torch.set_grad_enabled(c.grad_through_reg), run.autocast():
            fy = run.model(y, s=c.s_train).float()
        # 2. h1(y) from the fused Adjacent Pixel Replacer
        h1, _ = F.apr_sample(y, seed, need_h2=False, backend=be)
        # 3. out = f(h1(y))
        out = run.net(h1).float()
        # 4. L = |out - h2 y| + lam |out - h2 y - (h1 f(y) - h2 f(y))| (same seed: same pairs)
        return F.apr_loss(out, y, fy, seed, c.lam, c.grad_through_reg, backend=be), None  # crops: no estimate

    # --- stage 2: Recharged Distillation into the student
    def rd_start(self, run) -> None:
        """The student starts fresh (or from the BSN's U-Net weights, AT-BSN's distiller)."""
        student = run.parts["student"]
        student.reset(run.seed)
        if self.cfg.student_init == "bsn":
            bsn = run.parts["bsn"].model.state_dict()
            with torch.no_grad():
                for k, v in student.model.state_dict().items():
                    if not k.startswith("unet.dec_conv1") and k in bsn and bsn[k].shape == v.shape:
                        v.copy_(bsn[k])

    def rd_step(self, run, y: torch.Tensor, t: int, total: int, seed: int):
        import fastdenoise.functional as F

        c = self.cfg
        # 1. teachers T_s = BSN_s(y), s in rd_shifts, from one trunk pass, no gradient (the BSN has no
        #    train/eval-dependent layers)
        #    (in bsn_tile tiles, as the BSN denoises)
        bsn, j = run.parts["bsn"].model, len(c.rd_shifts)
        with torch.no_grad(), run.autocast():
            both = self.bsn_tiled(lambda t: torch.cat([o.float() for o in bsn.teachers(t, c.rd_shifts)], 1), y)
        teachers = both.unflatten(1, (j, y.shape[1])).transpose(0, 1).contiguous()   # (J, B, C, H, W)
        # 2. student fD(y)
        out = run.net(y).float()
        # 3. L = sum_j mean|fD(y) - recharge_j| (fused recharge + multi-target L1)
        return F.recharge_l1_loss(out, y, teachers, seed, backend=run.backend), None

    # --- inference: the student when RD ran, else the BSN at s_infer
    def infer(self, run, x: torch.Tensor, *, use_student: bool | None = None) -> torch.Tensor:
        if use_student is None:
            use_student = "rd" in run.done
        if use_student:
            return run.forward(x, "student")
        return self.bsn_tiled(lambda t: run.forward(t, "bsn", s=self.cfg.s_infer), x)

    def bsn_tiled(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn`` (a BSN pass) over overlapping ``bsn_tile`` tiles of ``x``, blended (the whole ``x`` when
        ``bsn_tile`` is 0 or ``x`` fits in one tile)."""
        from fastdenoise.tiling import tiled

        side = int(self.cfg.bsn_tile)
        if side <= 0 or (x.shape[-2] <= side and x.shape[-1] <= side):
            return fn(x)
        # windows stacked on the batch axis, about 2^16 pixels per call on the CPU, 2^20 on CUDA
        px = (1 << 20 if x.device.type == "cuda" else 1 << 16) // max(1, x.shape[0])
        return tiled(fn, x, side, side // 2, chunk=max(1, px // (side * side)))


def build(config: APRConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
          student: torch.nn.Module | None = None, **overrides):
    """An APR-RD trainer: a fresh AT-BSN (or ``model``; ``weights`` loads a trained one) and the RD student
    (fresh, or ``student``), both seeded by the config's seed."""
    stages = overrides.get("stages", (config or APRConfig()).stages)   # None: the device's default
    weights = overrides.get("weights", (config or APRConfig()).weights)
    if stages == "rd" and not weights and model is None:
        raise ValueError("stages='rd' distils a trained BSN: pass weights=... (or model=)")
    return _build(APR, config, in_ch=in_ch, models={"bsn": model, "student": student}, **overrides)


_, fit, train = method_api(APR)


def distill(images: list, weights: str | None = None, config: APRConfig | None = None, *,
            model: torch.nn.Module | None = None, student: torch.nn.Module | None = None,
            crop: int | None = None, batch: int | None = None, iters: int | None = None, **overrides):
    """Stage 2 alone (dataset mode): distil the BSN of ``weights`` (or ``model``) into a student."""
    if weights is None and model is None:
        raise ValueError("distill needs the BSN: weights=... or model=...")
    if weights is not None:
        overrides["weights"] = weights
    tr = build(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), model=model, student=student,
               stages="rd", **overrides)
    return train(images, trainer=tr, crop=crop, batch=batch, iters=iters)
