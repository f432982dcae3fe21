"""The batched fit (K images, one network copy each) is an engine capability: P2N declares it, and the engine's
batched fit reproduces the stand-alone batched loop P2N used to have, bit for bit."""
import pytest
import torch
from common import noisy_pair

from fastdenoise.methods.p2n import P2N
from fastdenoise.methods.p2n import p2n_step

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.cpu_only("bit-exact comparison of two CPU loops")]


def fit_many_reference(images, *, trainer, iters=None, seed=None):
    """The stand-alone batched loop P2N had before the engine fitted K images itself (its own AdamW and
    output EMA, no warm-up, schedule or weight EMA): the engine's batched fit must reproduce it."""
    from fastdenoise.engine import ema_update
    from fastdenoise.engine import iter_seed
    from fastdenoise.engine import make_optimizer

    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (K, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    tr = trainer
    c = tr.cfg
    if not isinstance(tr.method, P2N):
        raise TypeError("trainer must be a P2N trainer (from fastdenoise.methods.p2n.build)")
    seed = tr.seed_of(seed)
    tr.reset(seed)                   # initial weights for this seed (a no-op for the pretrained start)
    dev = tr.device
    y, gray = tr.method.prepare(images.to(dev, torch.float32).contiguous())
    k = y.shape[0]
    total = tr.total_iters(iters)
    model = tr.model
    names = [n for n, _ in model.named_parameters()]
    init = tr.parts["model"].init_state
    params = {n: init[n].to(dev).unsqueeze(0).repeat(k, *([1] * init[n].dim()))
              .requires_grad_(True) for n in names}
    buffers = {n: b.unsqueeze(0).expand(k, *b.shape) for n, b in model.named_buffers()}
    opt = make_optimizer(params.values(), c, dev)

    def one(p, b, x):
        return torch.func.functional_call(model, (p, b), (x,))

    batched = torch.vmap(one)
    amp = tr.amp

    def net(x):  # (K, n, C, H, W) -> (K, n, C, H, W) fp32
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            return batched(params, buffers, x).float()

    def single(x):  # (K, C, H, W): image i through model i
        return net(x.unsqueeze(1)).squeeze(1)

    def pair(z):  # z is [positives (K); negatives (K)]: model i gets (z[i], z[K + i])
        out = net(z.view(2, k, *y.shape[1:]).transpose(0, 1))
        return out[:, 0], out[:, 1]

    model.train()
    ema = None
    for t in range(total):
        loss, est = p2n_step(c, tr.backend, single, pair, y, t, total, iter_seed(seed, t))
        loss = loss * k  # the mean over K images -> the sum of the K models' own losses
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if c.ema is not None:
            ema = ema_update(ema, est, c.ema)
    if ema is not None:
        return tr.method.finish(ema, gray).contiguous()
    with torch.no_grad():
        model.eval()
        res = single(y)
        model.train()
    return tr.method.finish(res, gray).contiguous()


def test_engine_batched_fit_equals_the_standalone_loop():
    from fastdenoise.methods import p2n

    _, y = noisy_pair(3)
    ys = torch.cat([y, y.flip(-1), torch.rand_like(y)])
    for ema in (0.9, None):
        tr = p2n.build(device="cpu", iters=3, ema=ema)
        want = fit_many_reference(ys, trainer=tr, seed=5)
        got = p2n.fit_many(ys, trainer=tr, seed=5)
        assert torch.equal(got, want), (got - want).abs().max()


def test_batched_is_declared_and_asked_for():
    from fastdenoise.methods import get_builder
    from fastdenoise.methods import nb2nb

    assert P2N.batched and not nb2nb.Nb2Nb.batched
    tr = get_builder("nb2nb")(device="cpu")
    with pytest.raises(ValueError, match="no batched fit"):
        tr.fit_many(torch.rand(2, 3, 16, 16))
