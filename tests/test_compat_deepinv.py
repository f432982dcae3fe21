"""fastdenoise.compat.deepinv.Neighbor2Neighbor against deepinv's own Neighbor2Neighbor loss (same
draws: equal losses and gradients), deferring for metrics it does not fuse, and deepinv's Trainer
running with it. deepinv is optional (requirements-compat.txt, `make test-compat`)."""
import pytest
import torch

from deepinv_env import import_deepinv

dinv = import_deepinv()
pytestmark = [pytest.mark.skipif(dinv is None, reason="deepinv is not installed (optional: pip install --no-deps "
                                 "-r requirements-compat.txt, or make test-compat)"),
              pytest.mark.cpu_only("deepinv's Trainer on CPU tensors")]

if dinv is not None:
    from fastdenoise.compat.deepinv import Neighbor2Neighbor
    from fastdenoise.compat.neighbor2neighbor import generate_mask_pair

    class Net(torch.nn.Module):
        """A deepinv-style reconstructor: forward(y, physics)."""

        def __init__(self, ch=3):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(ch, 8, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, ch, 3, padding=1))

        def forward(self, y, physics=None, **kwargs):
            return y - self.body(y)


def _deepinv_with_draws(loss, seed):
    """Make deepinv's loss draw the masks of ``seed`` (its generate_mask_pair's randint replaced by our
    per-cell choices, in its own boolean layout)."""
    def mask_pair(img):
        m1, m2 = generate_mask_pair(img, seed=seed)
        return m1.to_bool(), m2.to_bool()

    loss.generate_mask_pair = mask_pair
    return loss


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_same_draws_same_loss_and_gradients(gamma, one_thread):
    """With the same per-cell draws, deepinv's loss and the fastdenoise one give the same value and the
    same parameter gradients; the Trainer's x_net is reused (one network pass fewer)."""
    torch.manual_seed(0)
    net = Net()
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    y = torch.rand(2, 3, 16, 12)
    ours = Neighbor2Neighbor(gamma=gamma, generator=torch.Generator().manual_seed(4))
    x_net = net(y, physics)
    l_ours = ours(x=None, x_net=x_net, y=y, physics=physics, model=net, epoch=0)
    seed = ours.last_seed
    g_ours = torch.autograd.grad(l_ours, list(net.parameters()))
    theirs = _deepinv_with_draws(dinv.loss.Neighbor2Neighbor(gamma=gamma), seed)
    l_theirs = theirs(x=None, x_net=x_net, y=y, physics=physics, model=net, epoch=0)
    g_theirs = torch.autograd.grad(l_theirs, list(net.parameters()))
    torch.testing.assert_close(l_ours, l_theirs)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)
    # without x_net (or reuse_x_net=False) the network runs on y under no_grad: same result
    ours2 = Neighbor2Neighbor(gamma=gamma, reuse_x_net=False, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(ours2(x=None, x_net=x_net, y=y, physics=physics, model=net), l_ours)


def test_defers_for_other_metrics_and_odd_sizes():
    """Metrics it does not fuse run deepinv's own code (same draws from torch's generator)."""
    net = Net()
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    y = torch.rand(1, 3, 8, 8)
    ours = Neighbor2Neighbor(metric=torch.nn.L1Loss(), gamma=1.0)
    assert not ours.fused(y)
    torch.manual_seed(7)
    a = ours(y=y, physics=physics, model=net)
    torch.manual_seed(7)
    b = dinv.loss.Neighbor2Neighbor(metric=torch.nn.L1Loss(), gamma=1.0)(y=y, physics=physics, model=net)
    torch.testing.assert_close(a, b)
    assert not Neighbor2Neighbor().fused(torch.rand(1, 3, 7, 8))
    assert isinstance(ours, dinv.loss.Neighbor2Neighbor) and ours.name == "neigh2neigh"


def test_follows_torch_manual_seed_and_autocast():
    """Seeds come from torch's default generator (same torch.manual_seed, same loss); under bfloat16
    autocast the bfloat16 network outputs are accepted with float32 measurements."""
    torch.manual_seed(0)
    net = Net()
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    y = torch.rand(2, 3, 8, 8)
    loss = Neighbor2Neighbor()
    torch.manual_seed(3)
    a = loss(y=y, physics=physics, model=net)
    torch.manual_seed(3)
    assert torch.equal(loss(y=y, physics=physics, model=net), a)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lb = loss(y=y, physics=physics, model=Net().to(memory_format=torch.channels_last).eval())
    assert lb.dtype == torch.float32 and torch.isfinite(lb)


@pytest.mark.parametrize("mixed_precision", [False, "bf16"])
def test_trainer_runs_with_fastdenoise_loss(mixed_precision, one_thread):
    """deepinv's own Trainer trains for a few steps with the fastdenoise loss as its only loss, in float32
    and with bfloat16 mixed precision (its autocast wraps the loss call)."""
    torch.manual_seed(0)
    clean = torch.rand(8, 3, 16, 16)

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(clean)

        def __getitem__(self, i):
            return clean[i]

    loader = torch.utils.data.DataLoader(Images(), batch_size=4)
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.1))
    net = Net()
    before = [p.detach().clone() for p in net.parameters()]
    trainer = dinv.Trainer(model=net, physics=physics, optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
                           train_dataloader=loader, epochs=2, losses=[Neighbor2Neighbor(gamma=2.0)],
                           online_measurements=True, device="cpu", save_path=None, verbose=False,
                           show_progress_bar=False, plot_images=False, metrics=dinv.metric.PSNR(),
                           non_blocking_transfers=False, mixed_precision=mixed_precision)
    trained = trainer.train()
    assert trained is net or isinstance(trained, torch.nn.Module)
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert all(torch.isfinite(p).all() for p in net.parameters())
