"""The options every method shares (each method subclasses :class:`FitConfig` with its own defaults), their one
validation (:func:`validate`), and what a fit returns (:class:`FitResult`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field

import torch

#: transforms a self-ensemble may average (``tta``)
TTA_COUNTS = (1, 2, 4, 8)


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
        time_budget: seconds the training loop of a fit may take (None or 0: no limit, the default). The
            second iteration is timed (the first one pays one-off set-up costs), then the mean of iterations
            2-9, and the iteration count becomes the largest that fits the rest of the budget, at most the
            nominal one (every stage scaled alike; the count is printed); schedules follow the new count.
            The result then depends on the machine's speed: the defaults never set it.
        init: ``"start"``: every network begins from the method's shipped start
            (``fastdenoise/weights/<method>_start[_gray].pt``, trained by ``scripts/pretrain.py``) where one
            exists for this network (same layers and shapes), else from its random init; ``"scratch"``:
            random init (the pure zero-shot setting). ``weights`` (a method field) overrides both.
            ``Trainer.init_from`` says what each network started from.
        tta: self-ensemble at inference: the mean of the network's outputs over 1, 2 (flip), 4 (rot90) or 8
            (all dihedral) transforms of the image, each undone (None: the method's default for the device,
            :meth:`Method.defaults`; 1 is the papers' single pass). Applies to :meth:`Trainer.denoise` and
            the final output of a fit, not to an output EMA of step estimates.
        warmup: linear learning-rate warm-up over this fraction of each stage's iterations (from lr/n to the
            schedule's lr over the first n), in [0, 1); 0: none. A fresh Adam's first steps move every weight by about lr, which can knock a
            trained start off its optimum before the moments are estimated.
        weight_ema: decay of an exponential moving average of the trained network's weights (Polyak
            averaging), in [0, 1); the average replaces the weights when a stage ends (0: off; None: the
            method's default, :meth:`Method.defaults`). Steps on random crops of one image make the
            last iterate of a fine-tuned start scatter from seed to seed; the average does not.
        weights: a weights file every network begins from (a start, a checkpoint, or one network's state
            dict for the first network); RGB weights fold for a grayscale network. Overrides ``init``.
        infer_batch: copies of the image one inference forward runs (methods that average stochastic passes
            set it; the memory plan sizes inference tiles with it).
        freeze_bn: BatchNorm layers normalise with their running statistics (eval-mode BatchNorm, statistics
            not updated) while a single image trains; None: the method's default
            (:meth:`Method.defaults`). Dataset mode (pretraining) always uses batch statistics. A
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
    weights: str | None = None
    infer_batch: int = 1

    def replace(self, **kw) -> "FitConfig":
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **kw)

    @property
    def op_backend(self) -> str | None:
        """The op backend in effect (the reference configuration forces ``"torch"``)."""
        return "torch" if self.reference else self.backend


def validate(cfg: FitConfig, method) -> None:
    """ValueError naming the field for a config value the engine cannot use (the method's own fields are
    checked by its :meth:`~fastdenoise.engine.Method.check`)."""
    missing = [f for f in getattr(method, "config_fields", ()) if not hasattr(cfg, f)]
    if missing:
        raise TypeError(f"{type(cfg).__name__} must declare {missing}: {type(method).__name__} trains through "
                        f"engine code that reads them")
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
    if isinstance(cfg.infer_batch, bool) or not isinstance(cfg.infer_batch, int) or cfg.infer_batch < 1:
        raise ValueError(f"infer_batch must be an integer >= 1, got {cfg.infer_batch!r}")
    if cfg.time_budget is not None and (isinstance(cfg.time_budget, bool)
                                        or not isinstance(cfg.time_budget, (int, float)) or cfg.time_budget < 0):
        raise ValueError(f"time_budget must be seconds >= 0 (or None: no limit), got {cfg.time_budget!r}")


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
