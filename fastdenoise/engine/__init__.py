"""The training engine every method plugs into.

Its parts, one module each: ``config`` (the options every method shares, validated in one place), ``method``
(the plug-in contract), ``state`` (networks and the run), ``loop`` (the one training loop) and ``callbacks``
(what runs around each step), ``inference`` (the one inference path: self-ensembles, tiles, memory plan),
``checkpoint`` (one atomic file format), ``starts`` (shipped starts and the grayscale policy), ``graphs`` (CUDA
graphs), ``data`` (crops and transforms), ``optim`` (optimiser and schedules), ``build`` (a trainer for a
method).

A method (:class:`Method` subclass, one file in ``fastdenoise/methods/``) supplies

* ``Config``: its config dataclass (a :class:`FitConfig` subclass holding its defaults);
* ``make_model(in_ch)``: its network (random init drawn by the engine under the run's seed);
* ``step(run, y, t, total, seed) -> (loss, estimate)``: one iteration, written only with the public fused
  ops of :mod:`fastdenoise.functional`, ``estimate`` being a denoised image of ``y`` it computed anyway
  (the output EMA and progress PSNR use it) or None;

and overrides small hooks only where it really differs: ``resolve`` (device-dependent defaults),
``check``, ``defaults`` (per-device defaults), ``load_init`` (pretrained weights), ``model_channels``/``prepare``/``finish``
(input and output transforms, e.g. P2N's grayscale handling or Noise2Same's standardisation),
``batches`` (what single-image mode trains on, e.g. random crops), ``dataset_crops``, ``lr_at`` (schedule),
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

from fastdenoise.engine.build import build
from fastdenoise.engine.build import method_api
from fastdenoise.engine.callbacks import Callback
from fastdenoise.engine.callbacks import CollapseGuard
from fastdenoise.engine.common import ema_update
from fastdenoise.engine.common import iter_seed
from fastdenoise.engine.common import psnr_quick
from fastdenoise.engine.common import resolve_device
from fastdenoise.engine.common import seeded
from fastdenoise.engine.config import TTA_COUNTS
from fastdenoise.engine.config import FitConfig
from fastdenoise.engine.config import FitResult
from fastdenoise.engine.data import crop_sampler
from fastdenoise.engine.data import dihedral
from fastdenoise.engine.data import dihedral_inverse
from fastdenoise.engine.inference import batch_stats_bn
from fastdenoise.engine.inference import tile_stats_bn
from fastdenoise.engine.loop import Trainer
from fastdenoise.engine.method import CropTraining
from fastdenoise.engine.method import Method
from fastdenoise.engine.method import Stage
from fastdenoise.engine.optim import cosine_lr
from fastdenoise.engine.optim import make_optimizer
from fastdenoise.engine.optim import staircase_lr
from fastdenoise.engine.starts import WEIGHTS_DIR
from fastdenoise.engine.starts import load_state
from fastdenoise.engine.starts import rgb_state_to_gray
from fastdenoise.engine.starts import saved_parts
from fastdenoise.engine.state import Part
from fastdenoise.engine.state import Run

__all__ = ["FitConfig", "FitResult", "Method", "CropTraining", "Stage", "Run", "Part", "Trainer", "Callback",
           "CollapseGuard", "build",
           "method_api", "iter_seed", "resolve_device", "psnr_quick", "make_optimizer", "ema_update", "staircase_lr",
           "cosine_lr", "crop_sampler", "dihedral", "dihedral_inverse", "load_state", "saved_parts",
           "rgb_state_to_gray", "seeded", "batch_stats_bn", "tile_stats_bn", "TTA_COUNTS", "WEIGHTS_DIR"]
