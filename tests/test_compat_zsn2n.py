"""fastdenoise.compat.zsn2n against the official ZS-N2N formulation (written here from the official
notebook, as benchmarks/bench_zsn2n.py's upstream baseline): equal downsampled images, losses and
parameter gradients; the official global-``model`` call works after the one-line switch."""
import pytest
import torch
import torch.nn.functional as nnf

from fastdenoise.compat import zsn2n as zs
from fastdenoise.models.zsn2n import ZSN2NNet  # the official network's shape

pytestmark = pytest.mark.cpu_only("the official ZS-N2N formulation, compared on CPU tensors")


def official_pair_downsampler(img):
    c = img.shape[1]
    f1 = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]]], dtype=img.dtype).repeat(c, 1, 1, 1)
    f2 = torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]], dtype=img.dtype).repeat(c, 1, 1, 1)
    return nnf.conv2d(img, f1, stride=2, groups=c), nnf.conv2d(img, f2, stride=2, groups=c)


def official_mse(gt, pred):
    return torch.nn.MSELoss()(gt, pred)


def official_loss_func(noisy_img, model):
    noisy1, noisy2 = official_pair_downsampler(noisy_img)
    pred1 = noisy1 - model(noisy1)
    pred2 = noisy2 - model(noisy2)
    loss_res = 1 / 2 * (official_mse(noisy1, pred2) + official_mse(noisy2, pred1))
    noisy_denoised = noisy_img - model(noisy_img)
    denoised1, denoised2 = official_pair_downsampler(noisy_denoised)
    loss_cons = 1 / 2 * (official_mse(pred1, denoised1) + official_mse(pred2, denoised2))
    return loss_res + loss_cons


model = None  # the official notebook's global name, read by loss_func(noisy_img)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 1, 9, 11)])
def test_pair_downsampler_matches_official(shape):
    img = torch.rand(shape)
    for a, b in zip(zs.pair_downsampler(img), official_pair_downsampler(img)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loss_and_gradients_match_official(one_thread):
    """Equal loss and equal parameter gradients, with the model passed and read from the global."""
    global model
    torch.manual_seed(0)
    model = ZSN2NNet(3, 8)
    img = torch.rand(1, 3, 32, 24)
    ref = official_loss_func(img, model)
    g_ref = torch.autograd.grad(ref, list(model.parameters()))
    for loss in (zs.loss_func(img, model), zs.loss_func(img)):
        torch.testing.assert_close(loss, ref)
        for a, b in zip(torch.autograd.grad(loss, list(model.parameters())), g_ref):
            torch.testing.assert_close(a, b)
    assert zs.mse(img, img * 0.5) == official_mse(img, img * 0.5)


def test_official_train_and_denoise(one_thread):
    """The official train/denoise functions: the same parameter trajectory as the official step."""
    torch.manual_seed(0)
    a, b = ZSN2NNet(3, 8), ZSN2NNet(3, 8)
    b.load_state_dict(a.state_dict())
    oa, ob = torch.optim.Adam(a.parameters(), lr=1e-3), torch.optim.Adam(b.parameters(), lr=1e-3)
    img = torch.rand(1, 3, 16, 16)
    for _ in range(3):
        la = zs.train(a, oa, img)
        loss = official_loss_func(img, b)
        ob.zero_grad()
        loss.backward()
        ob.step()
        assert la == pytest.approx(loss.item(), rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
    out = zs.denoise(a, img)
    assert not out.requires_grad and out.min() >= 0 and out.max() <= 1


def test_missing_global_model_is_named():
    def call_from_module_without_model():
        g = {"zs": zs, "img": torch.rand(1, 1, 4, 4)}
        exec("zs.loss_func(img)", g)

    with pytest.raises(NameError, match="global name 'model'"):
        call_from_module_without_model()
