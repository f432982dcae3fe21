"""CUDA graphs, checked on the CPU with a stand-in that has make_graphed_callables' semantics.

``pytest -k graph`` runs every graph test: the stand-in's own semantics, the rules GraphedNet follows
(input gradients, one graph per call site, no side effect of capture, gradients never accumulated across
replays), and for every method a few training steps with graphs equal to the same steps run eagerly.
"""
import pytest
import torch
from common import noisy_pair
from graph_standin import CountingCapture
from graph_standin import make_graphed_callables_standin

from fastdenoise.engine import graphs
from fastdenoise.engine.graphs import GraphedNet

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("the CUDA-graph rules checked with a CPU stand-in (gpu_check fits every method with graphs on a GPU)")]


def _net(bn: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 4, 3, padding=1)]
    if bn:
        layers.append(torch.nn.BatchNorm2d(4))
    layers += [torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1)]
    return torch.nn.Sequential(*layers).double()


def _x(seed: int, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


# ------------------------------------------------------------------------- the stand-in itself
def test_graph_standin_semantics():
    """Static outputs overwritten by the next call; a sample captured without requires_grad gets no
    gradient; the activations used by backward are the latest call's."""
    net = _net()
    g = make_graphed_callables_standin(net, (_x(9),))
    a, b = _x(1), _x(2)
    out_a = g(a)
    first = out_a.clone()
    out_b = g(b)
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, first)   # a's output was overwritten
    xin = _x(3, requires_grad=True)
    g(xin).sum().backward()
    assert xin.grad is None                                            # captured without requires_grad
    net2 = _net()
    g2 = make_graphed_callables_standin(net2, (_x(9, requires_grad=True),))
    xa = _x(1, requires_grad=True)
    ya = g2(xa)
    g2(_x(2, requires_grad=True))                                       # overwrites saved activations
    ya.sum().backward()
    eager = _x(1, requires_grad=True)
    _net()(eager).sum().backward()
    assert not torch.allclose(xa.grad, eager.grad)                      # backward of the wrong input


def test_graph_standin_grad_buffers_alias_param_grad():
    """The graph's gradient buffers become ``param.grad``: zeroing in place then doubles the next one."""
    net = _net()
    g = make_graphed_callables_standin(net, (_x(9),))
    w = net[0].weight
    g(_x(1)).sum().backward()
    once = w.grad.clone()
    net.zero_grad(set_to_none=False)
    g(_x(1)).sum().backward()
    torch.testing.assert_close(w.grad, 2 * once)                        # what set_to_none=False gives
    net.zero_grad(set_to_none=True)
    g(_x(1)).sum().backward()
    torch.testing.assert_close(w.grad, once)


# ------------------------------------------------------------------------- GraphedNet's rules
def _pair(bn: bool = False):
    eager = GraphedNet(_net(bn), enabled=False, amp=False)
    graphed = GraphedNet(_net(bn), enabled=True, amp=False)
    return eager, graphed


def test_graph_input_gradient_flows():
    """An input that carries gradients (P2N's z = f(x_hat)) gets them through the graph."""
    eager, graphed = _pair()
    with graphs.capture_with(CountingCapture()):
        for net in (eager, graphed):
            net.new_step()
            x = _x(1, requires_grad=True)
            net(x * 2).square().sum().backward()
            net.grad_x = x.grad
    assert graphed.grad_x is not None
    torch.testing.assert_close(graphed.grad_x, eager.grad_x)


def test_graph_two_calls_one_shape_get_two_graphs():
    """Noise2Same's two passes on one shape: two graphs, both outputs and all gradients right."""
    eager, graphed = _pair()
    cap = CountingCapture()
    with graphs.capture_with(cap):
        for net in (eager, graphed):
            net.new_step()
            a, b = net(_x(1)), net(_x(2))
            net.out = (a.detach().clone(), b.detach().clone())
            ((a - b).square().sum() + a.abs().sum()).backward()
    assert cap.captures == 2
    torch.testing.assert_close(graphed.out[0], eager.out[0])
    torch.testing.assert_close(graphed.out[1], eager.out[1])
    for pg, pe in zip(graphed.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(pg.grad, pe.grad)


def test_graph_key_per_call_site():
    """Grad mode, the input's requires_grad, the training flags and the call's rank select the graph;
    a new step reuses the graphs of the previous one."""
    net = GraphedNet(_net(bn=True), enabled=True, amp=False)
    cap = CountingCapture()
    with graphs.capture_with(cap):
        for _ in range(2):
            net.new_step()
            with torch.no_grad():
                net(_x(1))
            net(_x(1))
            net(_x(1, requires_grad=True))
            net(_x(1))
            net.model.eval()
            net(_x(1))
            net.model.train()
    assert cap.captures == 5


def test_graph_capture_leaves_batchnorm_and_rng_alone():
    eager, graphed = _pair(bn=True)
    with graphs.capture_with(CountingCapture()):
        for net in (eager, graphed):
            torch.manual_seed(5)
            net.new_step()
            net(_x(1))
            net.rng = torch.rand(3)
    for be, bg in zip(eager.model.buffers(), graphed.model.buffers()):
        torch.testing.assert_close(bg, be)
    assert torch.equal(graphed.rng, eager.rng)


def test_graph_calls_beyond_the_cap_run_eagerly():
    net = GraphedNet(_net(), enabled=True, amp=False)
    cap = CountingCapture()
    with graphs.capture_with(cap), torch.no_grad():
        net.new_step()
        outs = [net(_x(1)).clone() for _ in range(graphs.MAX_CALLS_PER_KEY + 2)]
    assert cap.captures == graphs.MAX_CALLS_PER_KEY
    assert all(torch.equal(o, outs[0]) for o in outs)


def test_graph_failed_capture_falls_back_to_eager():
    def broken(module, sample, n):
        raise RuntimeError("no graphs here")

    net = GraphedNet(_net(), enabled=True, amp=False)
    with graphs.capture_with(broken), pytest.warns(UserWarning, match="capture failed"):
        out = net(_x(1))
    torch.testing.assert_close(out, _net()(_x(1)))
    assert net.failed


# ------------------------------------------------------------------------- every method: graphs == eager
def _builders():
    from fastdenoise.methods import apr
    from fastdenoise.methods import blind2grad
    from fastdenoise.methods import nb2nb
    from fastdenoise.methods import noise2same
    from fastdenoise.methods import p2n
    from fastdenoise.methods import zsn2n
    from test_trainer_nb2nb import tiny

    return {
        "p2n": lambda **k: p2n.build(device="cpu", model=tiny(), **k),
        "nb2nb": lambda **k: nb2nb.build(device="cpu", model=tiny(), **k),
        "noise2same": lambda **k: noise2same.build(base=8, crop=16, batch=2, device="cpu", **k),
        "apr": lambda **k: apr.build(base=8, head=16, crop=32, batch=1, device="cpu", stages="apr", **k),
        "blind2grad": lambda **k: blind2grad.build(base=8, n_masks=2, n_samples=4, infer_batch=2,
                                                   device="cpu", **k),
        "zsn2n": lambda **k: zsn2n.build(device="cpu", **k),
    }


def _steps(make, y, n: int, seed: int = 3):
    torch.manual_seed(0)        # the stepper leaves dropout to the global generator (fit seeds it per run)
    tr = make(cuda_graph=True, init="scratch", warmup=0.0)
    it = tr.stepper(y, total=n + 2, seed=seed)
    grads, losses = [], []
    for t in range(n):
        losses.append(float(it(t).detach()))
        grads.append({k: p.grad.detach().clone() for k, p in tr.run.model.named_parameters()
                      if p.grad is not None})
    weights = {k: v.detach().clone() for k, v in tr.run.model.state_dict().items()}
    return losses, grads, weights


@pytest.mark.parametrize("method", ["p2n", "nb2nb", "noise2same", "apr", "blind2grad", "zsn2n"])
def test_graph_training_equals_eager(method):
    """Three training steps with the graph stand-in give the losses, gradients and weights of three eager
    steps (same seed)."""
    make = _builders()[method]
    _, y = noisy_pair()
    y = y[..., :32, :32]
    eager = _steps(make, y, 3)
    cap = CountingCapture()
    with graphs.capture_with(cap):
        graphed = _steps(make, y, 3)
    assert cap.captures >= 1, "the step never went through a graph"
    assert graphed[0] == pytest.approx(eager[0], rel=1e-5, abs=1e-7)
    for ge, gg in zip(eager[1], graphed[1]):
        assert ge.keys() == gg.keys()
        for k in ge:
            torch.testing.assert_close(gg[k], ge[k], rtol=1e-4, atol=1e-6, msg=f"{method} grad {k}")
    for k in eager[2]:
        torch.testing.assert_close(graphed[2][k], eager[2][k], rtol=1e-4, atol=1e-6, msg=f"{method} {k}")
