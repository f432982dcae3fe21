"""The plug-in contract: what a method supplies (:class:`Method`), its training phases (:class:`Stage`), and
the crop-training mixin (:class:`CropTraining`).

A method (one file in ``fastdenoise/methods/``) supplies ``Config`` (its :class:`FitConfig` subclass),
``make_model(in_ch)`` and ``step(run, y, t, total, seed) -> (loss, estimate)`` written with the public fused
ops, and overrides small hooks only where it differs: ``resolve`` (device-dependent defaults), ``check``,
``defaults`` (the shared options' defaults per device), ``load_init``,
``model_channels``/``prepare``/``finish``, ``batches``, ``dataset_crops``, ``lr_at``, ``new_state``, ``infer``
and ``stages``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable

import torch

from fastdenoise.engine import starts
from fastdenoise.engine.config import FitConfig
from fastdenoise.engine.data import crop_sampler

if TYPE_CHECKING:
    from fastdenoise.engine.state import Run


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
    #: the method can fit K images at once, one copy of its networks each (:meth:`Trainer.fit_many`; networks
    #: without BatchNorm running statistics)
    batched = False

    def __init__(self, cfg: FitConfig):
        self.cfg = cfg
        self.init_from: dict[str, str] = {}     # part -> weights file it was loaded from (load_init)

    inits: tuple[str, ...] = ("start", "scratch")     # accepted values of cfg.init
    #: fields beyond FitConfig's that engine code reads from the method's config (a mixin's), checked by build
    config_fields: tuple[str, ...] = ()

    # --- configuration
    def resolve(self, cfg: FitConfig, device: torch.device) -> FitConfig:
        """``cfg`` with device-dependent defaults (fields left None) filled in."""
        return cfg

    def check(self) -> None:
        """Raise ValueError for an invalid config."""

    def defaults(self, device: torch.device, started: bool) -> dict:
        """The values of the shared options a config leaves None, for ``device`` and whether the networks
        begin from loaded weights (``started``: a start or ``weights``; methods fine-tune a start for fewer
        iterations): ``iters`` (single-image iterations), ``tta`` (transforms averaged at inference; 1 is the
        papers' single pass), ``weight_ema`` (decay; 0: the papers' last iterate), ``freeze_bn`` (BatchNorm
        keeps its running statistics in single-image training; False: batch statistics, as the papers train).
        A method returns ``{**super().defaults(device, started), ...}`` with what it changes."""
        return {"iters": 100, "tta": 1, "weight_ema": 0.0, "freeze_bn": False}

    # --- networks
    def parts(self) -> tuple[str, ...]:
        """Names of the networks the method trains (one optimiser each)."""
        return ("model",)

    def model_channels(self, in_ch: int) -> int:
        """Channels of the network for ``in_ch``-channel images (P2N: RGB weights for grayscale too)."""
        return in_ch

    def make_model(self, in_ch: int, part: str = "model") -> torch.nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define make_model (its network)")

    def network_channels(self, in_ch: int, part: str) -> int:
        """Input channels network ``part`` takes for ``in_ch``-channel prepared images (Blind2Grad: the image
        and its visible-mask plane); the memory plan probes the networks with them."""
        return in_ch

    def start_path(self, in_ch: int) -> str | None:
        """The shipped start of this method for ``in_ch``-channel networks (None: there is none)."""
        return starts.start_path(self.name, in_ch)

    def load_init(self, model: torch.nn.Module, part: str, in_ch: int) -> bool:
        """Load initial weights into the fresh ``model``; True when every weight was loaded (the initial
        state does not depend on the seed) and ``self.init_from[part]`` names the file
        (:func:`fastdenoise.engine.starts.load_init`: ``cfg.weights``, else the shipped start with
        ``cfg.init == "start"``, RGB starts folded for grayscale networks)."""
        return starts.load_init(self, model, part, in_ch)

    @staticmethod
    def _fit_weights(sd: dict, have: dict, in_ch: int, path: str, part: str) -> dict:
        return starts.fit_weights(sd, have, in_ch, path, part)

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
        raise NotImplementedError(f"{type(self).__name__} must define step (one training iteration)")

    # --- inference
    def infer(self, run: "Run", x: torch.Tensor, **options) -> torch.Tensor:
        """Denoise the prepared input (default: one eval-mode pass of the first network)."""
        return run.forward(x)


class CropTraining:
    """Method mixin: single-image mode trains on random crops of the one (prepared) image, ``cfg.crop``
    square, ``cfg.batch`` per step, a random dihedral transform each when ``cfg.augment`` (the crops
    depend only on the run's seed and t); dataset mode uses the same sizes by default. The method's config
    declares those three fields (checked when the trainer is built)."""

    config_fields = ("crop", "batch", "augment")

    def batches(self, run: "Run", x: torch.Tensor) -> Callable[[int], torch.Tensor]:
        c = self.cfg
        sampler = crop_sampler(list(x), c.crop, c.batch, run.seed, augment=c.augment)
        return lambda t: run.trainer.to_input(sampler(t))

    def dataset_crops(self, device: torch.device, crop: int | None, batch: int | None) -> tuple[int, int]:
        return crop or self.cfg.crop, batch or self.cfg.batch

    def augment_crops(self) -> bool:
        return self.cfg.augment
