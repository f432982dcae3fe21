"""The ops pasted into a user's own training loop: per-iteration seeds (seed=None, generator=, tensor
seeds), tensor scalars, mixed dtypes under autocast, and the README loop's seed handling."""
import pytest
import torch

import fastdenoise.functional as F
from common import ALL_BACKENDS
from common import DEVICE
from common import make_input
from fastdenoise.ops.apr.reference import apr_loss_ref
from fastdenoise.ops.neighbor.reference import nb2nb_loss_ref
from fastdenoise.ops.p2n.reference import p2n_loss_ref
from fastdenoise.ops.zsn2n.reference import zsn2n_loss_ref

X = (2, 3, 8, 8)


def _samplers():
    """(name, call(x, **seed_kwargs) -> tuple of tensors) for every op that draws random numbers."""
    t = make_input((2, *X), gen_seed=3)
    return [
        ("neighbor_subsample", lambda x, **k: F.neighbor_subsample(x, **k)),
        ("apr_sample", lambda x, **k: F.apr_sample(x, **k)),
        ("stratified_mask", lambda x, **k: F.stratified_mask(x, perc=10.0, **k)),
        ("dual_mask", lambda x, **k: (F.dual_mask(x, x * 0.9, **k),)),
        ("rdc_renoise", lambda x, **k: F.rdc_renoise(x, x * 0.9, **k)),
        ("recharge_l1_loss", lambda x, **k: (F.recharge_l1_loss(x, x * 0.5, t.to(x.device), **k),)),
    ]


SAMPLERS = _samplers()


def _same(a, b):
    return all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("name,call", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_seed_none_follows_torch_manual_seed(name, call):
    """seed=None draws a fresh seed from torch's default generator: consecutive calls differ, and the
    same torch.manual_seed gives the same sequence (same global seed, same run)."""
    x = make_input(X, device=DEVICE).abs()
    torch.manual_seed(5)
    a1, a2 = call(x), call(x)
    torch.manual_seed(5)
    b1, b2 = call(x), call(x)
    assert _same(a1, b1) and _same(a2, b2)
    assert not _same(a1, a2)


@pytest.mark.parametrize("name,call", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_generator_and_tensor_seed(name, call):
    """generator= draws from that generator only (the global stream is untouched); a one-element
    integer tensor seed equals the int seed; seed and generator together are an error."""
    x = make_input(X, device=DEVICE).abs()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = call(x, generator=torch.Generator().manual_seed(9))
    assert torch.equal(torch.get_rng_state(), before)
    b = call(x, generator=torch.Generator().manual_seed(9))
    assert _same(a, b)
    assert _same(call(x, seed=torch.tensor(1234)), call(x, seed=1234))
    with pytest.raises(ValueError, match="either seed or generator"):
        call(x, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="one integer"):
        call(x, seed=torch.tensor(1.5))


def test_draw_seed():
    """draw_seed is reproducible under torch.manual_seed and different on every call."""
    torch.manual_seed(1)
    s = [F.draw_seed() for _ in range(4)]
    torch.manual_seed(1)
    assert s == [F.draw_seed() for _ in range(4)] and len(set(s)) == 4
    assert all(0 <= v < 2**62 for v in s)
    g = torch.Generator().manual_seed(3)
    assert F.draw_seed(g) == F.draw_seed(torch.Generator().manual_seed(3))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_tensor_scalars(backend):
    """One-element tensors are accepted wherever a number is (seed, gamma, lam, lambda1, sigma) and
    give the same result as the Python numbers."""
    y, fy = make_input(X, gen_seed=1), make_input(X, gen_seed=2)
    out = make_input((2, 3, 4, 4))
    t = torch.tensor
    assert torch.equal(F.nb2nb_loss(out, y, fy, t(7), t(1.5), lambda1=t(0.5), backend=backend),
                       F.nb2nb_loss(out, y, fy, 7, 1.5, lambda1=0.5, backend=backend))
    assert torch.equal(F.apr_loss(y, y, fy, t(3), t(4.0), backend=backend),
                       F.apr_loss(y, y, fy, 3, 4.0, backend=backend))
    assert torch.equal(F.p2n_loss(y, fy, t(1.75), backend=backend), F.p2n_loss(y, fy, 1.75, backend=backend))
    za, _ = F.rdc_renoise(y, fy, t(2), t(0.5), backend=backend)
    zb, _ = F.rdc_renoise(y, fy, 2, 0.5, backend=backend)
    assert torch.equal(za, zb)
    with pytest.raises(TypeError, match="one-element real tensor"):
        F.nb2nb_loss(out, y, fy, 7, t([1.0, 2.0]), backend=backend)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_autocast_mixed_dtypes(backend):
    """Under bfloat16 autocast the network outputs are bfloat16 while the data stays float32: the
    losses upcast to float32 as the references do (same values and gradients as the reference on the
    float32-cast outputs), and gradients reach the parameters in their own dtype."""
    torch.manual_seed(0)
    net = _Net().to(DEVICE)
    y = make_input(X, gen_seed=1)
    seed = 11
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        g1, _ = F.neighbor_subsample(y, seed, need_g2=False, backend=backend)
        out = net(g1)
        with torch.no_grad():
            fy = net(y)
        d1, d2 = F.pair_downsample(y, backend=backend)
        n_y, n1, n2 = net(y), net(d1), net(d2)
    assert out.dtype == torch.bfloat16 and y.dtype == torch.float32
    cases = {
        "nb2nb": (lambda o: F.nb2nb_loss(o, y, fy, seed, 2.0, backend=backend),
                  lambda o: nb2nb_loss_ref(o.float(), y, fy.float(), seed, 2.0), out),
        "apr": (lambda o: F.apr_loss(o, y, fy, seed, 4.0, backend=backend),
                lambda o: apr_loss_ref(o.float(), y, fy.float(), seed, 4.0), n_y),
        "p2n": (lambda o: F.p2n_loss(o, y, 1.5, backend=backend),
                lambda o: p2n_loss_ref(o.float(), y, 1.5, 1e-8), n_y),
        "zsn2n": (lambda o: F.zsn2n_loss(y, o, n1, n2, backend=backend),
                  lambda o: zsn2n_loss_ref(y, o.float(), n1.float(), n2.float()), n_y),
    }
    for name, (fused, ref, o) in cases.items():
        a = o.detach().clone().requires_grad_(True)
        b = o.detach().clone().requires_grad_(True)
        la, lb = fused(a), ref(b)
        assert la.dtype == torch.float32, name
        torch.testing.assert_close(la, lb, msg=name)
        ga, gb = torch.autograd.grad(la, a)[0], torch.autograd.grad(lb, b)[0]
        assert ga.dtype == torch.bfloat16, name
        torch.testing.assert_close(ga, gb, msg=name)
    z, _ = F.rdc_renoise(y, fy, seed, backend=backend)
    assert z.dtype == torch.float32
    # the whole step: gradients reach the float32 parameters
    net.zero_grad()
    F.nb2nb_loss(out, y, fy, seed, 2.0, backend=backend).backward()
    assert net.conv.weight.grad is not None and net.conv.weight.grad.dtype == torch.float32


def test_per_iteration_seed_loop(one_thread):
    """The README loop: a seed drawn per iteration gives a new sampling pattern every iteration and the
    same run after the same torch.manual_seed; a constant seed (the pitfall) repeats one pattern."""
    y = make_input((1, 3, 16, 16), gen_seed=4)

    def run(seed_of):
        torch.manual_seed(0)
        net = _Net()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        picks, losses = [], []
        for it in range(4):
            seed = seed_of(it)
            g1, _ = F.neighbor_subsample(y, seed, need_g2=False)
            with torch.no_grad():
                fy = net(y)
            loss = F.nb2nb_loss(net(g1), y, fy, seed, gamma=2.0 * (it + 1) / 4)
            opt.zero_grad()
            loss.backward()
            opt.step()
            picks.append(F.neighbor_pairs(y, seed))
            losses.append(loss.item())
        return picks, losses

    picks, losses = run(lambda it: F.draw_seed())
    again, losses2 = run(lambda it: F.draw_seed())
    assert losses == losses2 and all(torch.equal(a, b) for a, b in zip(picks, again))
    assert all(not torch.equal(picks[0], p) for p in picks[1:])
    const, _ = run(lambda it: 1234)
    assert all(torch.equal(const[0], p) for p in const[1:])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_compile_with_per_iteration_seed(backend):
    """torch.compile(fullgraph=True) of a step taking the seed as an argument, drawn outside per
    iteration: results equal to eager, and the seed is symbolic after the first new value (two
    compilations for six seeds, not one per seed)."""
    def step(x, y, fy, seed):
        g1, _ = F.neighbor_subsample(x, seed, need_g2=False, backend=backend)
        h1, _ = F.apr_sample(x, seed, need_h2=False, backend=backend)
        return F.nb2nb_loss(g1 * 2, y, fy, seed, 2.0, backend=backend) + h1.mean()

    compilations = []

    def counting(gm, example_inputs):
        compilations.append(gm)
        return gm.forward

    torch._dynamo.reset()
    x = make_input((1, 2, 6, 6), requires_grad=True)
    y, fy = make_input((1, 2, 6, 6), gen_seed=1), make_input((1, 2, 6, 6), gen_seed=2)
    compiled = torch.compile(step, fullgraph=True, backend=counting)
    for _ in range(6):
        seed = F.draw_seed()
        torch.testing.assert_close(compiled(x, y, fy, seed), step(x, y, fy, seed))
    assert len(compilations) == 2


def test_own_training_loop_doc_examples_run(one_thread):
    """The per-method examples of docs/OWN_TRAINING_LOOP.md run as written, with a tiny network."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "OWN_TRAINING_LOOP.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "# Neighbor2Neighbor (CVPR 2021)" in b)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    ns = {"net": net, "bsn": net, "opt": torch.optim.Adam(net.parameters()), "y": torch.rand(2, 3, 16, 16),
          "t": 3, "total": 10}
    ns["x_m"] = ns["y"] * 0.9
    exec(compile(code, "docs/OWN_TRAINING_LOOP.md", "exec"), ns)
    assert torch.isfinite(ns["loss"]) and net.weight.grad is not None
    loop = next(b for b in blocks if "F.draw_seed()" in b and "for it in range(iters)" in b)
    exec(compile(loop.replace("...", "pass"), "docs/OWN_TRAINING_LOOP.md", "exec"),
         {"iters": 2, "y": torch.rand(1, 3, 8, 8), "net": net, "fy": torch.rand(1, 3, 8, 8)})
