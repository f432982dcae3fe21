"""Batched fits: K images fitted at once, one copy of the network each, through the one training loop.

A method declares the capability with ``Method.batched = True`` (P2N does; its networks have no BatchNorm
running statistics, which a vmapped network cannot update). :meth:`Batched.fit_many` stacks K copies of
the trainer's networks into a :class:`BatchedModel` (the K copies run as one network through
``torch.func.functional_call`` under ``torch.vmap``, batched weights becoming grouped convolutions, so a GPU is
busy with K images per kernel), and trains it with the same loop, schedules, warm-up, output and weight EMAs,
BatchNorm policy and checkpoints as a single fit. The optimiser is elementwise (Adam/AdamW), so one optimiser
over the stacked weights is exactly K independent ones; the loss (the mean over the K images) is scaled by
K before backward so that each copy gets the gradient of its own loss. Not supported: CUDA graphs, tiles
and crops (the K images must fit the memory budget together), DDP.
"""
from __future__ import annotations

import torch

from fastdenoise.engine.config import FitResult


class BatchedModel(torch.nn.Module):
    """K copies of ``base`` (its current weights) as one network: image i of every block of K maps through
    copy i. An input of n*K images is n blocks of K (``[x_1 .. x_K, x'_1 .. x'_K, ...]``); so is the output."""

    def __init__(self, base: torch.nn.Module, k: int):
        super().__init__()
        self.k = int(k)
        self._base = [base]                  # not a submodule: its own weights stay as they are
        self.names = [n for n, _ in base.named_parameters()]
        for i, (_, p) in enumerate(base.named_parameters()):
            self.register_parameter(f"p{i}", torch.nn.Parameter(
                p.detach().unsqueeze(0).repeat(self.k, *([1] * p.dim())).clone()))
        self.buffer_views = {n: b.unsqueeze(0).expand(self.k, *b.shape) for n, b in base.named_buffers()}
        self._call = torch.vmap(self._one)

    def _one(self, params, buffers, x):
        return torch.func.functional_call(self._base[0], (params, buffers), (x,))

    def train(self, mode: bool = True):
        self._base[0].train(mode)
        return super().train(mode)

    def copy(self, i: int) -> dict[str, torch.Tensor]:
        """Copy ``i``'s weights as a state dict of the base network's parameters."""
        return {n: getattr(self, f"p{j}")[i].detach() for j, n in enumerate(self.names)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k
        if x.shape[0] % k:
            raise ValueError(f"a batched network of {k} copies takes n*{k} images, got {x.shape[0]}")
        n = x.shape[0] // k
        params = {name: getattr(self, f"p{j}") for j, name in enumerate(self.names)}
        xs = x.reshape(n, k, *x.shape[1:]).transpose(0, 1)         # (K, n, C, H, W): copy i's images
        out = self._call(params, self.buffer_views, xs)
        return out.transpose(0, 1).reshape(n * k, *out.shape[2:])


class Batched:
    """Trainer mixin: :meth:`fit_many`."""

    def fit_many(self, images: torch.Tensor, *, iters: int | None = None, seed: int | None = None,
                 clean: torch.Tensor | None = None) -> FitResult:
        """Fit one independent copy of the networks to each of the K ``images`` (K, C, H, W) at once.

        Copy k sees only image k; every copy starts from the trainer's initial weights for ``seed``. The
        draws differ from K separate :meth:`fit` calls (one seed stream for the batch), so results are
        statistically, not bitwise, equal to them. The trainer's own networks are left at their initial
        weights. Returns the :class:`FitResult` of the K images (``best``: the output EMA when ``ema`` is set).
        """
        from fastdenoise.engine.loop import Trainer

        if not getattr(self.method, "batched", False):
            raise ValueError(f"{self.method.name} has no batched fit (Method.batched); fit the images one by one")
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a (K, C, H, W) tensor, got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        seed = self.seed_of(seed)
        self.reset(seed)
        y = self.to_input(images)
        self.check_size(y)
        x, ctx = self.method.prepare(y)
        if clean is not None:
            clean = self.method.prepare(clean.to(self.device, torch.float32).reshape(y.shape))[0]
        k = x.shape[0]
        models = {name: BatchedModel(p.model, k) for name, p in self.parts.items()}
        bt = Trainer(self.method, models, None, seed)
        bt.in_ch, bt.wrap_step = self.in_ch, None
        for p in bt.parts.values():
            p.net.enabled = False            # no CUDA graphs of the vmapped network
        bt.run = bt.new_run(seed)
        bt.run.batched = k
        batches = self.method.batches(bt.run, x)
        secs, n = bt._train(batches, iters, clean, use_ema=True)
        out = self.method.finish(bt._infer(x, tile=0), ctx)
        ema = None if bt.run.ema is None else self.method.finish(bt.run.ema.clone(), ctx)
        self.batched_trainer = bt
        return FitResult(out, ema, list(bt.run.losses), list(bt.run.psnr), n, secs)
