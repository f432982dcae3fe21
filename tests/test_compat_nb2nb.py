"""fastdenoise.compat.neighbor2neighbor against the official Neighbor2Neighbor formulation (written here
from the official train.py, as benchmarks/bench_nb2nb.py's upstream baseline): same draws, same
sub-images, losses and gradients; the official loop runs unchanged after the one-line switch."""
import re

import pytest
import torch
import torch.nn.functional as nnf

from fastdenoise.compat import neighbor2neighbor as nb
from fastdenoise.models.unet_nb2nb import UNetNb2Nb

pytestmark = pytest.mark.cpu_only("the official Neighbor2Neighbor formulation, compared on CPU tensors")

IDX_PAIR = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3], [1, 0], [2, 0], [3, 1], [3, 2]], dtype=torch.int64)


def official_mask_pair(img, rd_idx):
    """The official generate_mask_pair with its randint replaced by the given per-cell draws."""
    n, _, h, w = img.shape
    cells = n * (h // 2) * (w // 2)
    mask1 = torch.zeros(cells * 4, dtype=torch.bool)
    mask2 = torch.zeros(cells * 4, dtype=torch.bool)
    pair = IDX_PAIR[rd_idx.reshape(-1)] + torch.arange(0, cells * 4, 4).reshape(-1, 1)
    mask1[pair[:, 0]] = True
    mask2[pair[:, 1]] = True
    return mask1, mask2


def official_subimages(img, mask):
    n, c, h, w = img.shape
    sub = torch.zeros(n, c, h // 2, w // 2, dtype=img.dtype)
    for i in range(c):
        per = nnf.unfold(img[:, i : i + 1], 2, stride=2).view(n, 4, h // 2, w // 2)
        per = per.permute(0, 2, 3, 1).reshape(-1)
        sub[:, i : i + 1] = per[mask].reshape(n, h // 2, w // 2, 1).permute(0, 3, 1, 2)
    return sub


def official_loss(noisy_output, noisy_sub2, sub1_denoised, sub2_denoised, Lambda, Lambda1, Lambda2):  # noqa: N803
    diff = noisy_output - noisy_sub2
    exp_diff = sub1_denoised - sub2_denoised
    loss1 = torch.mean(diff**2)
    loss2 = Lambda * torch.mean((diff - exp_diff) ** 2)
    return loss1, loss2, Lambda1 * loss1 + Lambda2 * loss2


@pytest.mark.parametrize("shape", [(2, 3, 8, 10), (1, 1, 6, 6), (2, 3, 7, 9)])
def test_masks_and_subimages_bit_identical(shape):
    """Fed the adapter's per-cell draws, the official masks and sub-images equal the adapter's bit
    for bit (both members, odd sizes included), and the adapter's to_bool() is the official mask."""
    img = torch.rand(shape)
    m1, m2 = nb.generate_mask_pair(img)
    o1, o2 = official_mask_pair(img, m1.pairs())
    if shape[2] % 2 == 0 and shape[3] % 2 == 0:  # the official unfold needs even sizes
        assert torch.equal(nb.generate_subimages(img, m1), official_subimages(img, o1))
        assert torch.equal(nb.generate_subimages(img, m2), official_subimages(img, o2))
    assert torch.equal(m1.to_bool(), o1) and torch.equal(m2.to_bool(), o2)
    full = img[:, :, : shape[2] // 2 * 2, : shape[3] // 2 * 2].contiguous()
    assert torch.equal(nb.generate_subimages(img, m1), official_subimages(full, o1))


@pytest.mark.parametrize("Lambda1,Lambda2", [(1.0, 1.0), (0.0, 1.0), (2.0, 0.5)])
def test_loss_terms_and_gradients_match_official(Lambda1, Lambda2):  # noqa: N803
    """loss_terms returns the official (loss1, loss2, loss_all), Lambda1 = 0 included, and the same
    gradient for the network output."""
    torch.manual_seed(1)
    noisy, denoised = torch.rand(2, 3, 16, 12), torch.rand(2, 3, 16, 12)
    m1, m2 = nb.generate_mask_pair(noisy)
    o1, o2 = official_mask_pair(noisy, m1.pairs())
    out = torch.randn(2, 3, 8, 6, requires_grad=True)
    ref_out = out.detach().clone().requires_grad_(True)
    Lambda = nb.ramp(37, 100, 2.0)
    loss1, loss2, loss_all = nb.loss_terms(out, noisy, denoised, m1, Lambda, Lambda1, Lambda2)
    r1, r2, r_all = official_loss(ref_out, official_subimages(noisy, o2), official_subimages(denoised, o1),
                                  official_subimages(denoised, o2), Lambda, Lambda1, Lambda2)
    torch.testing.assert_close(loss1, r1.detach())
    torch.testing.assert_close(loss2, r2.detach())
    torch.testing.assert_close(loss_all, r_all.detach())
    loss_all.backward()
    r_all.backward()
    torch.testing.assert_close(out.grad, ref_out.grad)


def test_subimage_pair_shares_one_call_and_gradients():
    """generate_subimages(img, mask1) then (img, mask2) reuse one fused call; gradients through both
    equal the official ones, and a changed image is resampled."""
    img = torch.rand(1, 3, 8, 8, requires_grad=True)
    ref = img.detach().clone().requires_grad_(True)
    m1, m2 = nb.generate_mask_pair(img)
    o1, o2 = official_mask_pair(img, m1.pairs())
    s1, s2 = nb.generate_subimages(img, m1), nb.generate_subimages(img, m2)
    w1, w2 = torch.randn_like(s1), torch.randn_like(s2)
    ((s1 * w1).sum() + (s2 * w2).sum()).backward()
    ((official_subimages(ref, o1) * w1).sum() + (official_subimages(ref, o2) * w2).sum()).backward()
    torch.testing.assert_close(img.grad, ref.grad, rtol=0, atol=0)
    other = torch.rand(1, 3, 8, 8)
    nb.generate_subimages(img, m1)
    assert torch.equal(nb.generate_subimages(other, m2), official_subimages(other, o2))


def test_seeds_follow_torch_manual_seed():
    """A fresh pattern per call, the same sequence after the same torch.manual_seed; the law is the
    official one (8 pairs, uniform: 4 sigma over 2**14 cells)."""
    img = torch.rand(4, 1, 128, 128)
    torch.manual_seed(3)
    a = [nb.generate_mask_pair(img)[0].seed for _ in range(3)]
    torch.manual_seed(3)
    assert a == [nb.generate_mask_pair(img)[0].seed for _ in range(3)] and len(set(a)) == 3
    counts = torch.bincount(nb.generate_mask_pair(img)[0].pairs().flatten(), minlength=8).double()
    n = counts.sum()
    assert ((counts - n / 8).abs() <= 4 * (n * (1 / 8) * (7 / 8)) ** 0.5).all()


def _official_loop(ns, iters=3):
    """The official train.py inner loop body (its names and statements), with the helpers from ``ns``;
    returns the printed lines."""
    torch.manual_seed(0)
    network = UNetNb2Nb(3, 3, 8)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-4)
    lines = []
    epoch, n_epoch, increase_ratio, Lambda1, Lambda2 = 1, 10, 2.0, 1.0, 1.0  # noqa: N806
    for iteration in range(iters):
        noisy = torch.rand(2, 3, 32, 32)
        optimizer.zero_grad()
        mask1, mask2 = ns["generate_mask_pair"](noisy)
        noisy_sub1 = ns["generate_subimages"](noisy, mask1)
        noisy_sub2 = ns["generate_subimages"](noisy, mask2)
        with torch.no_grad():
            noisy_denoised = network(noisy)
        noisy_sub1_denoised = ns["generate_subimages"](noisy_denoised, mask1)
        noisy_sub2_denoised = ns["generate_subimages"](noisy_denoised, mask2)
        noisy_output = network(noisy_sub1)
        noisy_target = noisy_sub2
        Lambda = epoch / n_epoch * increase_ratio  # noqa: N806
        diff = noisy_output - noisy_target
        exp_diff = noisy_sub1_denoised - noisy_sub2_denoised
        loss1 = torch.mean(diff**2)
        loss2 = Lambda * torch.mean((diff - exp_diff) ** 2)
        loss_all = Lambda1 * loss1 + Lambda2 * loss2
        loss_all.backward()
        optimizer.step()
        lines.append("{:04d} {:05d} Loss1={:.6f}, Lambda={}, Loss2={:.6f}, Loss_Full={:.6f}".format(
            epoch, iteration, loss1.item(), Lambda, loss2.item(), loss_all.item()))
    return lines


def test_official_loop_runs_after_one_line_switch(one_thread):
    """The official loop with the compat functions in place of its own runs unchanged (print line
    included), and with the official functions fed the same draws it prints the same numbers."""
    switched = _official_loop({"generate_mask_pair": nb.generate_mask_pair,
                               "generate_subimages": nb.generate_subimages})
    draws = []

    def official_pair(img):
        m1, _ = nb.generate_mask_pair(img)
        draws.append(m1)
        return official_mask_pair(img, m1.pairs())

    def official_sub(img, mask):
        return official_subimages(img, mask)

    official = _official_loop({"generate_mask_pair": official_pair, "generate_subimages": official_sub})
    assert len(switched) == 3 and all("Loss_Full=" in s for s in switched)
    def values(line):
        return [float(v) for v in re.findall(r"Loss(?:1|2|_Full)=([0-9.]+)", line)]

    for a, b in zip(switched, official):
        assert len(values(a)) == 3
        assert values(a) == pytest.approx(values(b), rel=1e-5, abs=1e-7)


def test_invalid_inputs():
    img = torch.rand(1, 3, 8, 8)
    m1, _ = nb.generate_mask_pair(img)
    with pytest.raises(TypeError, match="generate_mask_pair"):
        nb.generate_subimages(img, torch.zeros(64, dtype=torch.bool))
    with pytest.raises(ValueError, match="drawn for"):
        nb.generate_subimages(torch.rand(1, 3, 8, 10), m1)
