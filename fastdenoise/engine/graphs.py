"""CUDA graphs for the network calls of a training step.

A graph replays recorded kernels on static buffers, so it is right only when every call it serves looks
like the call it was captured from. :class:`GraphedNet` makes that hold by construction:

* one graph per **call site** of a step: the key is the input's shape and dtype, whether autograd is
  recording, whether the input itself requires grad, the training flags of the network's modules, and the
  call's rank among the step's calls with that same key. A step that runs the network twice on one shape
  (Noise2Same's full and masked passes) gets two graphs, so the second call cannot overwrite the first
  call's outputs and saved activations before backward;
* the capture sample's ``requires_grad`` is the real input's, so a graph captured for an input that carries
  gradients (P2N's renoised batch depends on ``x_hat``) returns a gradient for it;
* capturing has no side effect on training: the warm-up passes that ``make_graphed_callables`` runs update
  BatchNorm statistics and draw random numbers, so the module's buffers and the RNG state are restored
  after capture;
* graphs return their parameter gradients in static buffers that autograd may adopt as ``param.grad``;
  the engine therefore clears gradients with ``zero_grad(set_to_none=True)``: zeroing them in place would
  zero the graph's own buffer, which the next replay refills, and autograd would then add the buffer to
  itself (doubled gradients from the second iteration on).

The capture itself sits behind one small interface, ``capture(module, sample_args, num_warmup_iters) ->
callable``: on CUDA it is :func:`torch.cuda.make_graphed_callables`; :func:`capture_with` installs another
(the tests install a CPU stand-in with the same documented semantics, so the rules above are checked
without a GPU).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable
from typing import Iterator

import torch

__all__ = ["GraphedNet", "cuda_capture", "capture_with", "active_capture", "MAX_CALLS_PER_KEY"]

Capture = Callable[[torch.nn.Module, tuple, int], Callable]

#: calls with the same key in one step beyond this count run eagerly (bounds captures of a call site that
#: is reached in a loop or outside the training step)
MAX_CALLS_PER_KEY = 4

_override: Capture | None = None


def cuda_capture(module: torch.nn.Module, sample_args: tuple, num_warmup_iters: int = 3) -> Callable:
    """:func:`torch.cuda.make_graphed_callables` on one module."""
    return torch.cuda.make_graphed_callables(module, sample_args, num_warmup_iters=num_warmup_iters)


def active_capture() -> Capture | None:
    """The capture installed by :func:`capture_with`, else None (CUDA graphs on CUDA inputs only)."""
    return _override


@contextlib.contextmanager
def capture_with(fn: Capture) -> Iterator[None]:
    """Inside the block, networks built with graphs enabled capture with ``fn`` on any device."""
    global _override
    prev, _override = _override, fn
    try:
        yield
    finally:
        _override = prev


class _Shared(torch.nn.Module):
    """A module that runs (and owns the parameters of) ``model``; one per captured call site, because
    ``make_graphed_callables`` patches the forward of the module it is given."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GraphedNet:
    """Callable network: one graph per call site of a step when enabled, else the module itself.

    ``new_step()`` is called by the engine before each training step (it restarts the per-key call count).
    ``enabled`` graphs CUDA inputs with :func:`cuda_capture`, or any input while :func:`capture_with` is
    active. A capture that fails warns once and the network runs eagerly from then on.
    """

    def __init__(self, model: torch.nn.Module, enabled: bool, amp: bool):
        self.model, self.enabled, self.amp = model, enabled, amp
        self.graphs: dict[tuple, Callable] = {}
        self.calls: dict[tuple, int] = {}
        self.failed = False
        self._modules: list[torch.nn.Module] | None = None

    def new_step(self) -> None:
        self.calls.clear()

    def _autocast(self):
        dev = next(self.model.parameters()).device
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp and dev.type == "cuda",
                              cache_enabled=False)

    def _capture_fn(self, x: torch.Tensor) -> Capture | None:
        if not self.enabled or self.failed:
            return None
        if _override is not None:
            return _override
        return cuda_capture if x.is_cuda else None

    def _modes(self) -> int:
        if self._modules is None:
            self._modules = list(self.model.modules())
        return sum(1 << i for i, m in enumerate(self._modules) if m.training)

    def key(self, x: torch.Tensor) -> tuple:
        """The call-site key of ``x`` (and counts the call)."""
        grad = torch.is_grad_enabled()
        base = (tuple(x.shape), x.dtype, grad, bool(grad and x.requires_grad), self._modes())
        k = self.calls.get(base, 0)
        self.calls[base] = k + 1
        return base + (k,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        capture = self._capture_fn(x)
        if capture is None:
            with self._autocast():
                return self.model(x)
        key = self.key(x)
        fn = self.graphs.get(key)
        if fn is None:
            if key[-1] >= MAX_CALLS_PER_KEY:
                with self._autocast():
                    return self.model(x)
            try:
                fn = self._capture(capture, x, requires_grad=key[3])
            except Exception as e:  # noqa: BLE001 - capture is an optimisation: fall back to eager
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); running eagerly",
                              stacklevel=2)
                self.failed = True
                with self._autocast():
                    return self.model(x)
            self.graphs[key] = fn
        with self._autocast():
            return fn(x)

    def _capture(self, capture: Capture, x: torch.Tensor, requires_grad: bool) -> Callable:
        """Capture ``model`` on a copy of ``x`` whose ``requires_grad`` is the real call's, leaving the
        module's buffers (BatchNorm statistics) and the RNG state as they were."""
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        devices = [x.device] if x.is_cuda else []
        try:
            with torch.random.fork_rng(devices=devices), torch.enable_grad(), self._autocast():
                sample = x.detach().clone().requires_grad_(requires_grad)
                return capture(_Shared(self.model), (sample,), 3)
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.data.copy_(saved)   # .data: no version bump (the real call's saved tensors stay valid)
