"""Drop-in for the official ZS-N2N code (Mansour & Heckel, CVPR 2023, the ``zs-n2n`` notebook).

Switch with one import line in place of the notebook's ``pair_downsampler``, ``mse``, ``loss_func``
(and, if you use them, ``train`` and ``denoise``) definitions::

    from fastdenoise.compat.zsn2n import pair_downsampler, mse, loss_func, train, denoise

The rest stays: ``train(model, optimizer, noisy_img)`` once per iteration and ``denoise(model,
noisy_img)`` at the end. ``loss_func`` computes the official loss with the fused ZS-N2N loss (one pass
over the three network outputs; no sub-image of ``noisy_img - model(noisy_img)`` is materialised) and
``pair_downsampler`` is the fused downsampler. ZS-N2N draws nothing at random: results equal the
official code's up to float32 rounding (tests/test_compat_zsn2n.py).
"""
from __future__ import annotations

import sys

import torch

from fastdenoise.ops.zsn2n.api import pair_downsample
from fastdenoise.ops.zsn2n.api import zsn2n_loss

__all__ = ["denoise", "loss_func", "mse", "pair_downsampler", "train"]


def pair_downsampler(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output1, output2)``: the anti-diagonal ``(TR + BL) / 2`` and diagonal ``(TL + BR) / 2`` means of
    every 2x2 cell of ``img`` (B, C, H, W), each (B, C, H // 2, W // 2), as the official stride-2
    depthwise convolutions with ``[[0, .5], [.5, 0]]`` and ``[[.5, 0], [0, .5]]``. Differentiable."""
    return pair_downsample(img)


def mse(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``torch.nn.MSELoss()(gt, pred)``: the mean of the squared differences, as the official helper."""
    return torch.nn.functional.mse_loss(gt, pred)


def _caller_model(depth: int):
    """The name ``model`` in the globals of the frame ``depth`` levels up (the official ``loss_func``
    reads the notebook's global ``model``)."""
    frame = sys._getframe(depth)
    try:
        return frame.f_globals["model"]
    except KeyError:
        raise NameError("loss_func(noisy_img) reads the global name 'model' of the calling module, as the "
                        "official code does; define it there or call loss_func(noisy_img, model)") from None
    finally:
        del frame


def loss_func(noisy_img: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
    """The official ZS-N2N loss ``loss_res + loss_cons`` for the network ``model`` (predicting noise):

    ``noisy1, noisy2 = pair_downsampler(noisy_img)``, ``pred_i = noisy_i - model(noisy_i)``,
    ``loss_res = (mse(noisy1, pred2) + mse(noisy2, pred1)) / 2``,
    ``denoised1, denoised2 = pair_downsampler(noisy_img - model(noisy_img))``,
    ``loss_cons = (mse(pred1, denoised1) + mse(pred2, denoised2)) / 2``; no stop-gradient.

    Args:
        noisy_img: (B, C, H, W) noisy image, H and W >= 2.
        model: the network. None (the official call ``loss_func(noisy_img)``) uses the global name
            ``model`` of the calling module, as the official function does.

    Returns:
        Scalar loss, differentiable w.r.t. the model's parameters (fused value and gradient).
    """
    if model is None:
        model = _caller_model(2)
    d1, d2 = pair_downsample(noisy_img)
    return zsn2n_loss(noisy_img, model(noisy_img), model(d1), model(d2))


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, noisy_img: torch.Tensor) -> float:
    """One official training step: loss, ``zero_grad``, ``backward``, ``step``; returns ``loss.item()``."""
    loss = loss_func(noisy_img, model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def denoise(model: torch.nn.Module, noisy_img: torch.Tensor) -> torch.Tensor:
    """The official inference: ``clamp(noisy_img - model(noisy_img), 0, 1)`` under ``torch.no_grad``."""
    with torch.no_grad():
        return torch.clamp(noisy_img - model(noisy_img), 0, 1)
