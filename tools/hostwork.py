"""Counting the aten ops and kernel launches around the fused ops (the host work of a fast path).

:class:`OpCounter` is a ``TorchDispatchMode`` that records every aten op with the devices of its tensor
arguments and results (custom ``fastdenoise::`` ops are entered, so the ops of their implementations, the
launchers included, are seen too; kernel launches are stubbed by ``gpucheck.Recorder``). :func:`fused_cases` lists one forward call of every public fused op; tests run them under the
counter with real tensors (kernel launches stubbed and counted by ``gpucheck.Recorder``) and under
``FakeTensorMode`` on ``cuda`` (no CPU-tensor op, no CPU-to-CUDA copy, no ``_local_scalar_dense``).
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# aten ops that allocate or only change metadata (no kernel, no traffic), and the fill of a new buffer
FREE_OPS = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "view", "_unsafe_view", "reshape",
    "as_strided", "select", "slice", "detach", "alias", "unsqueeze", "squeeze", "expand", "t", "permute",
    "transpose", "_reshape_alias", "unbind", "split", "split_with_sizes", "view_as_real", "device",
    "promote_types",   # dtype arithmetic, no tensor touched
}


def tensor_bytes(tensors) -> int:
    """Bytes of distinct tensors (a tensor passed twice, or two views of one buffer at the same offset,
    count once)."""
    from torch._subclasses.fake_tensor import FakeTensor

    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, FakeTensor):  # no data pointer: count each fake tensor object once
            key = id(t)
        else:
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


class OpCounter(TorchDispatchMode):
    """Records ``(name, input devices, output devices)`` of every aten op dispatched inside it."""

    def __init__(self, enter_ops: bool = True):
        super().__init__()
        self.enter_ops = enter_ops
        self.ops: list[tuple[str, frozenset, frozenset]] = []
        self.nbytes: list[int] = []  # bytes each op reads and writes (its tensor arguments and results, once)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if func.namespace == "fastdenoise" and self.enter_ops:
            from fastdenoise._library import IMPLS

            with self:  # look inside the fused op: the ops of its impl count
                return IMPLS[name](*args, **kwargs)
        tin = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        out = func(*args, **kwargs)
        tout = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.ops.append((name, frozenset(t.device.type for t in tin), frozenset(t.device.type for t in tout)))
        self.nbytes.append(0 if name in FREE_OPS else tensor_bytes(tin) + tensor_bytes(tout))
        return out

    def compute_ops(self) -> list[str]:
        """Names of the ops that launch work (everything but allocations and views)."""
        return [n for n, _, _ in self.ops if n not in FREE_OPS]

    def cpu_ops(self) -> list[str]:
        """Ops with a CPU tensor among inputs or outputs (none may appear on the CUDA path)."""
        return [n for n, i, o in self.ops if "cpu" in i or "cpu" in o]

    def host_to_device(self) -> list[str]:
        """Ops that move data from the CPU to another device."""
        return [n for n, i, o in self.ops if "cpu" in i and (o - {"cpu"})]


def fused_cases(device, shape=(2, 3, 16, 16), dtype=torch.float32, backend: str = "triton", fill=torch.empty):
    """``{name: (make_inputs, call)}``: ``make_inputs()`` builds the inputs (outside any counter, with
    requires_grad where the op has a backward); ``call(*inputs)`` runs the public op's forward on the
    Triton backend (``backend="torch"``: the reference) and returns the outputs to backprop. ``fill``
    makes the values (``torch.empty`` when only shapes matter)."""
    import fastdenoise.functional as F

    b, c, h, w = shape
    half = (b, c, h // 2, w // 2)

    def r(s, grad=False):
        return lambda: fill(s, device=device, dtype=dtype).requires_grad_(grad)

    def mk(*fs):
        return lambda: tuple(f() for f in fs)

    be = backend
    return {
        "apr_sample": (mk(r(shape, True)), lambda x: F.apr_sample(x, 3, backend=be)),
        "apr_loss": (mk(r(shape, True), r(shape), r(shape)), lambda o, y, fy: F.apr_loss(o, y, fy, 3, backend=be)),
        "dual_mask": (mk(r(shape), r(shape)), lambda y, xm: F.dual_mask(y, xm, 3, backend=be)),
        "blind2grad_loss": (mk(r(shape, True), r(shape), r(shape), r((b, 1, h, w))),
                            lambda a, f, y, m: F.blind2grad_loss(a, f, y, m, backend=be)),
        "shifted_max_pool2d": (mk(r(shape, True)), lambda x: F.shifted_max_pool2d(x, "down", backend=be)),
        "neighbor_subsample": (mk(r(shape, True)), lambda x: F.neighbor_subsample(x, 3, backend=be)),
        "nb2nb_loss": (mk(r(half, True), r(shape), r(shape)), lambda o, y, fy: F.nb2nb_loss(o, y, fy, 3, backend=be)),
        "stratified_mask(gaussian)": (mk(r(shape, True)), lambda x: F.stratified_mask(x, 3, backend=be)),
        "stratified_mask(donut)": (mk(r(shape, True)), lambda x: F.stratified_mask(x, 3, replace="donut", backend=be)),
        "noise2same_loss": (mk(r(shape, True), r(shape, True), r(shape), r(shape)),
                            lambda f, g, x, m: F.noise2same_loss(f, g, x, m, backend=be)),
        "rdc_renoise": (mk(r(shape, True), r(shape)), lambda y, xh: F.rdc_renoise(y, xh, 3, backend=be)[0]),
        "rdc_renoise(pixel)": (mk(r(shape, True), r(shape)),
                               lambda y, xh: F.rdc_renoise(y, xh, 3, granularity="pixel", backend=be)[0]),
        "p2n_loss": (mk(r(shape, True), r(shape, True)), lambda p, q: F.p2n_loss(p, q, 1.7, backend=be)),
        "recharge_l1_loss": (mk(r(shape, True), r(shape), r((3, *shape))),
                             lambda s, y, t: F.recharge_l1_loss(s, y, t, 3, backend=be)),
        "pair_downsample": (mk(r(shape, True)), lambda x: F.pair_downsample(x, backend=be)),
        "zsn2n_loss": (mk(r(shape), r(shape, True), r(half, True), r(half, True)),
                       lambda y, ny, n1, n2: F.zsn2n_loss(y, ny, n1, n2, backend=be)),
    }


def grad_targets(out) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(outputs that require grad, matching gradients of ones) for ``torch.autograd.backward``."""
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)
            and o.requires_grad]
    return outs, [torch.ones_like(o) for o in outs]


TINY_METHODS = {  # small configurations (tests/test_engine.py's) for counting one training step
    "p2n": {"init": "scratch"},
    "nb2nb": {},
    "noise2same": {"base": 8, "crop": 16, "batch": 2},
    "apr": {"base": 8, "head": 16, "crop": 32, "batch": 1},  # a step: one BSN step + one student step
    "blind2grad": {"base": 8, "n_masks": 2, "n_samples": 2, "infer_batch": 2},
    "zsn2n": {},
}


def method_step_counts(image=(1, 3, 32, 32)) -> dict:
    """Per training step of every method (CPU, 1x3x32x32, its small configuration): the aten ops that launch
    work plus the Triton launches, fused (``backend="triton"``, interpreter) and reference
    (``reference=True``); one step = (fit with 3 iterations - fit with 1) / 2, so setup and inference cancel.
    About the number of GPU launches of a step (networks included)."""
    from triton.runtime import interpreter
    from torch.utils._python_dispatch import _disable_current_modes

    from fastdenoise.methods import get_builder

    g = torch.Generator().manual_seed(0)
    y = torch.rand(image, generator=g)
    orig = interpreter.InterpretedFunction.run
    launches = [0]

    def run(self, *args, **kwargs):  # count, then run the kernel outside the counter
        launches[0] += 1
        with _disable_current_modes():
            return orig(self, *args, **kwargs)

    out = {}
    interpreter.InterpretedFunction.run = run
    try:
        for name, cfg in TINY_METHODS.items():
            row = {}
            for label, kw in (("fused", {"backend": "triton"}), ("reference", {"reference": True})):
                counts = []
                for iters in (1, 3):
                    extra = {"iters": iters}
                    if name == "apr":
                        extra["rd_iters"] = iters
                    tr = get_builder(name)(device="cpu", progress=False, **cfg, **kw, **extra)
                    launches[0] = 0
                    with OpCounter() as c:
                        tr.fit(y, iters=iters)
                    counts.append(len(c.compute_ops()) + launches[0])
                row[label] = (counts[1] - counts[0]) // 2
            out[name] = row
    finally:
        interpreter.InterpretedFunction.run = orig
    return out
