"""One file format for checkpoints, weights files and starts, always written atomically.

A checkpoint holds every network, its optimiser state and the run (stage, iteration, output and weight
EMAs, logs): ``{"method", "config", "run", "parts": {name: {"model", "opt"}}}``. A weights file (and a
shipped start) holds the networks alone, fp16 by default: ``{"method", "parts": {name: {"model"}}, "meta"}``.
Both load with :func:`fastdenoise.engine.starts.load_state` and ``weights=``.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from fastdenoise.engine.common import rank


def save_atomic(obj, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Checkpoints:
    """Trainer mixin: checkpoints and weights files."""

    def state_dict(self) -> dict:
        return {"method": self.method.name, "config": dataclasses.asdict(self.cfg), "run": self.run.state_dict(),
                "parts": {n: {"model": p.model.state_dict(), "opt": p.opt.state_dict()}
                          for n, p in self.parts.items()}}

    def save_checkpoint(self, path: str) -> None:
        """Atomic checkpoint: every network, optimiser state, the run (stage, iteration, EMA, logs); under
        torch.distributed only rank 0 writes it."""
        if rank() != 0:
            return
        save_atomic(self.state_dict(), path)

    def save_weights(self, path: str, *, half: bool = True, meta: dict | None = None) -> None:
        """Atomic weights file of every network (fp16 by default), no optimiser state:
        ``{"method", "parts": {name: {"model": state dict}}, "meta"}``, loadable with ``weights=path`` and,
        named ``fastdenoise/weights/<method>_start[_gray].pt``, the method's shipped start (``init="start"``)."""
        cast = (lambda v: v.detach().half() if half and v.is_floating_point() else v.detach())  # noqa: E731
        parts = {n: {"model": {k: cast(v).cpu() for k, v in p.model.state_dict().items()}}
                 for n, p in self.parts.items()}
        save_atomic({"method": self.method.name, "parts": parts, "meta": dict(meta or {})}, path)

    def load_checkpoint(self, path: str) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        if ck.get("method") != self.method.name:
            raise ValueError(f"checkpoint {path} is of method {ck.get('method')!r}, not {self.method.name!r}")
        with torch.no_grad():
            for n, p in self.parts.items():
                for k, v in p.model.state_dict().items():
                    v.copy_(ck["parts"][n]["model"][k])
                p.opt.load_state_dict(ck["parts"][n]["opt"])
        self.run = self.new_run( ck["run"]["seed"])
        self.run.load_state_dict(ck["run"])

    def _resuming(self) -> bool:
        c = self.cfg
        return bool(c.resume and c.checkpoint and os.path.exists(c.checkpoint))
