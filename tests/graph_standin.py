"""A CPU stand-in for :func:`torch.cuda.make_graphed_callables` with its documented semantics.

What a captured graph does, and so what this stand-in does on any device:

* warm-up: ``num_warmup_iters`` eager forward passes on the sample, each followed by ``autograd.grad`` of
  the outputs with respect to the inputs that require grad and the parameters (buffers such as BatchNorm
  statistics are updated, random numbers are drawn, ``param.grad`` is untouched); capturing itself runs
  nothing;
* the sample tensors are the graph's **static inputs**: a call copies its arguments into them, so the
  returned outputs are not connected to the arguments' autograd history;
* the outputs are the graph's **static outputs**: every call overwrites them, and the tensors an earlier
  call returned (views of them) change with it;
* the activations saved for backward belong to the graph: the next forward overwrites them, so a backward
  run after another forward of the same graph uses the later call's activations;
* backward returns gradients only for the sample tensors captured with ``requires_grad`` (None for the
  others) and for the parameters, in static buffers that the next backward overwrites;
* a module's forward is replaced by the graph while ``module.training`` is what it was at capture.

It replays by running the module eagerly, which is what the recorded kernels compute; random draws inside
the module therefore follow the CPU generator, as an eager call does.
"""
from __future__ import annotations

import torch


class _Graph:
    def __init__(self, module: torch.nn.Module, samples: tuple, num_warmup_iters: int):
        self.module = module
        self.fwd = module.forward                    # the eager forward (the module's is patched below)
        self.static_in = samples
        self.params = tuple(module.parameters())
        self.surface = self.static_in + self.params
        self.diff = tuple(t for t in self.surface if t.requires_grad)
        for _ in range(num_warmup_iters):
            out = self.fwd(*self.static_in)
            if out.requires_grad:
                torch.autograd.grad(out, self.diff, torch.zeros_like(out))
        self.static_out: torch.Tensor | None = None
        self.saved: torch.Tensor | None = None      # the recorded forward's autograd graph (its activations)
        self.static_grad_out: torch.Tensor | None = None
        self.static_grad_in: tuple | None = None

    def replay_forward(self) -> torch.Tensor:
        with torch.enable_grad():
            out = self.fwd(*self.static_in)
        self.saved = out                             # overwrites the previous call's activations
        if self.static_out is None:
            self.static_out = torch.empty_like(out.detach())
        self.static_out.copy_(out.detach())
        return self.static_out

    def replay_backward(self, grad: torch.Tensor) -> tuple:
        if self.static_grad_out is None:
            self.static_grad_out = torch.empty_like(grad)
        self.static_grad_out.copy_(grad)
        grads = torch.autograd.grad(self.saved, self.diff, self.static_grad_out, retain_graph=True,
                                    allow_unused=True)
        if self.static_grad_in is None:
            self.static_grad_in = tuple(None if g is None else torch.empty_like(g) for g in grads)
        for buf, g in zip(self.static_grad_in, grads):
            if buf is not None:
                buf.copy_(g)
        it = iter(self.static_grad_in)
        return tuple(next(it) if t.requires_grad else None for t in self.surface)


def make_graphed_callables_standin(module: torch.nn.Module, sample_args: tuple, num_warmup_iters: int = 3):
    """Same contract as ``torch.cuda.make_graphed_callables(module, sample_args, num_warmup_iters)`` for one
    module with one tensor output; returns the module with its forward patched."""
    graph = _Graph(module, tuple(sample_args), num_warmup_iters)
    n_user = len(graph.static_in)

    class Graphed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            with torch.no_grad():
                for static, new in zip(graph.static_in, inputs[:n_user]):
                    if static.data_ptr() != new.data_ptr():
                        static.copy_(new)
            return graph.replay_forward().detach()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            return tuple(None if g is None else g.detach() for g in graph.replay_backward(grad))

    training = module.training
    eager = graph.fwd

    def forward(*args):
        if module.training == training:
            return Graphed.apply(*args, *graph.params)
        return eager(*args)

    module.forward = forward
    return module


class CountingCapture:
    """The stand-in as a capture for :func:`fastdenoise.engine.graphs.capture_with`, counting captures."""

    def __init__(self):
        self.captures = 0

    def __call__(self, module, sample_args, num_warmup_iters):
        self.captures += 1
        return make_graphed_callables_standin(module, sample_args, num_warmup_iters)
