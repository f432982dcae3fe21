"""Small pieces every part of the engine uses: devices, seeds, the output EMA, a quick PSNR."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; a requested CUDA device that is missing raises."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but no CUDA device is available (use device='cpu' or 'auto')")
    return dev


def iter_seed(seed: int, t: int) -> int:
    """Seed of iteration ``t`` for base ``seed`` (a SplitMix64-style mix; in [0, 2**63))."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(t) + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """torch's global RNG seeded with ``seed`` inside, the caller's RNG state restored outside.

    Only the CPU generator (and the generator of ``device`` when it is a CUDA device) is touched."""
    cuda = device is not None and device.type == "cuda"
    devs = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devs):
        torch.default_generator.manual_seed(int(seed))
        if cuda:
            with torch.cuda.device(devs[0]):
                torch.cuda.manual_seed(int(seed))
        yield


def ema_update(ema: torch.Tensor | None, est: torch.Tensor, decay: float) -> torch.Tensor:
    """One step of the output EMA: ``est`` (as float32) when ``ema`` is None, else ``ema`` updated in place
    to ``decay * ema + (1 - decay) * est``."""
    est = est.detach().float()
    return est.clone() if ema is None else ema.mul_(decay).add_(est, alpha=1 - decay)


def psnr_quick(pred: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR in dB with the library's default convention (clamp, round to uint8, peak 255)."""
    from fastdenoise.metrics import psnr

    return float(psnr(pred.detach().float().cpu(), clean.detach().float().cpu()).mean())


def rank() -> int:
    """This process's rank under torch.distributed (0 when not distributed)."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
