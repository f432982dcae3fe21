"""The state of a trainer: its networks (:class:`Part`) and the run of one fit (:class:`Run`)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from typing import Callable

import torch

from fastdenoise.engine.common import iter_seed
from fastdenoise.engine.common import seeded
from fastdenoise.engine.config import FitConfig
from fastdenoise.engine.graphs import GraphedNet
from fastdenoise.engine.inference import batch_stats_bn
from fastdenoise.engine.inference import tile_stats_bn
from fastdenoise.engine.optim import make_optimizer

if TYPE_CHECKING:
    from fastdenoise.engine.loop import Trainer


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
        # graphs capture CUDA inputs (or any input under graphs.capture_with): see fastdenoise.engine.graphs
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
        self.guard_stops: dict[int, int] = {}   # image (copy) -> iteration a CollapseGuard stopped its fit at
        self.dataset_mode = False           # batches of crops of many images (fit_dataset)
        self.batched = 1                    # copies of the networks fitted at once (Trainer.fit_many)
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
