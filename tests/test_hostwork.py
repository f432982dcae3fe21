"""No host work in the fused ops' fast paths: aten ops besides the kernels counted around every forward
and backward, and under FakeTensorMode on 'cuda' no CPU-tensor op, no CPU-to-CUDA copy, no sync."""
from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fastdenoise._runtime import HAS_TRITON
from fastdenoise._runtime import interpreting
from tools.hostwork import OpCounter
from tools.hostwork import fused_cases
from tools.hostwork import grad_targets

pytestmark = pytest.mark.skipif(not (HAS_TRITON and interpreting()), reason="needs TRITON_INTERPRET=1")

CASES = sorted(fused_cases("cpu"))
# Compute ops (aten ops that launch work, allocations and views excepted) allowed besides the kernels.
# Reductions finish with part.sum() (and a division); the losses with many listed below still
# combine their sums with small torch ops on the device (no sync, no copy, but one launch each):
# the gap the GPU notes (docs/GPU.md) state.
# nb2nb_loss: the two means it returns for logging (return_terms) are weighted into the loss on the device
BUDGET_FWD = {"blind2grad_loss": 16, "noise2same_loss": 23, "dual_mask": 2, "p2n_loss": 3, "zsn2n_loss": 3,
              "nb2nb_loss": 6}
BUDGET_BWD = {"noise2same_loss": 2, "p2n_loss": 2, "shifted_max_pool2d": 1, "stratified_mask(gaussian)": 1,
              "stratified_mask(donut)": 1}


def _launch_counted(call, *args):
    from tools.gpucheck import Recorder

    with Recorder() as rec, OpCounter() as counter:
        out = call(*args)
    return out, counter, len(rec.launches)


@pytest.mark.parametrize("name", CASES)
def test_forward_and_backward_op_counts(name):
    """Each fused op's forward and backward launches its kernels plus at most the budgeted compute ops
    (reductions' final sums), and never reads a device value on the host except in the CPU-only
    'incoming gradient is exactly 1' shortcut of the fused losses' backward."""
    mk, call = fused_cases("cpu")[name]
    inputs = mk()
    out, fwd, n_fwd = _launch_counted(call, *inputs)
    assert n_fwd >= 1
    assert len(fwd.compute_ops()) <= BUDGET_FWD.get(name, 2), fwd.compute_ops()
    assert "_local_scalar_dense" not in fwd.compute_ops()
    outs, grads = grad_targets(out)
    _, bwd, n_bwd = _launch_counted(lambda: torch.autograd.backward(outs, grads))
    extra = [n for n in bwd.compute_ops() if n != "_local_scalar_dense"]
    assert len(extra) <= BUDGET_BWD.get(name, 0), extra
    # scale_saved_grad reads the incoming scalar only for CPU tensors (its device check comes first)
    assert bwd.compute_ops().count("_local_scalar_dense") <= 3


@pytest.mark.parametrize("name", sorted(fused_cases("cuda")))
def test_fake_cuda_forward_has_no_host_work(name):
    """Under FakeTensorMode on 'cuda' (public op, custom op impl and launcher all run; kernel launches
    are recorded, not run): no op touches a CPU tensor, nothing is copied from the host, no value is
    read back."""
    from tools.gpucheck import Recorder

    mk, call = fused_cases("cuda")[name]
    with FakeTensorMode(allow_non_fake_inputs=False):
        inputs = [t.detach() for t in mk()]  # autograd on fake CUDA tensors aborts on CPU-only builds
        with Recorder() as rec, OpCounter() as counter:
            call(*inputs)
    assert rec.launches, "no kernel launched"
    assert counter.cpu_ops() == [] and counter.host_to_device() == []
    assert "_local_scalar_dense" not in counter.compute_ops()


def test_rng_draws_happen_on_the_device():
    """P2N's scales and Noise2Same's Gaussian values are drawn by kernels (the host Philox + copy of
    before showed up as ~250 CPU ops and one CPU-to-CUDA copy per call)."""
    from tools.gpucheck import Recorder

    for name, kernel in (("rdc_renoise", "_scales_kernel"), ("stratified_mask(gaussian)", "_mask_fwd_kernel")):
        mk, call = fused_cases("cuda")[name]
        with FakeTensorMode(allow_non_fake_inputs=False):
            inputs = [t.detach() for t in mk()]
            with Recorder() as rec, OpCounter() as counter:
                call(*inputs)
        assert kernel in [la["kernel"] for la in rec.launches]
        assert len(counter.compute_ops()) == 0, counter.compute_ops()


@pytest.mark.parametrize("name", CASES)
def test_channels_last_inputs_cost_one_copy_each(name):
    """Layout decision (docs/GPU.md): the kernels index NCHW, so a channels_last 4-D input is copied
    once by its launcher (one extra read and write of that input), never more; same-layout NCHW inputs
    are not copied at all."""
    from tools.gpucheck import Recorder

    def cl(s, **kw):
        return torch.empty(s, memory_format=torch.channels_last, **kw) if len(s) == 4 else torch.empty(s, **kw)

    for fill, expect_copies in ((cl, None), (torch.empty, 0)):
        mk, call = fused_cases("cpu", fill=fill)[name]
        inputs = [t.detach() for t in mk()]
        with Recorder(), OpCounter() as counter:
            call(*inputs)
        copies = [n for n, _, _ in counter.ops if n in ("contiguous", "clone", "copy_", "_to_copy")]
        relaid = sum(t.dim() == 4 and not t.is_contiguous() for t in inputs)
        assert len(copies) == (relaid if expect_copies is None else 0), copies
