"""What networks train on: random crops of images (dataset mode, crop training) and the dihedral transforms
(augmentation, self-ensembles)."""
from __future__ import annotations

from typing import Callable

import torch

from fastdenoise.engine.common import iter_seed


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) of the 8 dihedral transforms of the last two axes (rot90 by k % 4, flipped if k >= 4)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, (-2, -1)) if k % 4 else x


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undoes :func:`dihedral` ``(x, k)``."""
    x = torch.rot90(x, -(k % 4), (-2, -1)) if k % 4 else x
    return x.flip(-1) if k >= 4 else x


def crop_sampler(images: list, crop: int, batch: int, seed: int = 0,
                 augment: bool = False) -> Callable[[int], torch.Tensor]:
    """Dataset-mode sampler: ``sampler(t)`` -> (batch, C, crop, crop) random crops of ``images``.

    ``images`` are (C, H, W) (or (1, C, H, W)) float tensors with the same C; images smaller than
    ``crop`` are reflect/replicate padded; ``augment`` applies a random dihedral transform per crop.
    Crops depend only on (seed, t), so a resumed run sees the same batches; they stay on the images'
    device.
    """
    if not len(images):
        raise ValueError("images must not be empty")
    if crop < 1 or batch < 1:
        raise ValueError(f"crop and batch must be >= 1, got crop={crop}, batch={batch}")
    imgs = []
    for im in images:
        im = torch.as_tensor(im).float()
        if im.dim() == 4 and im.shape[0] == 1:
            im = im[0]
        if im.dim() != 3:
            raise ValueError(f"images must be (C, H, W), got shape {tuple(im.shape)}")
        h, w = im.shape[-2:]
        if h < crop or w < crop:
            ph, pw = max(0, crop - h), max(0, crop - w)
            mode = "reflect" if ph < h and pw < w else "replicate"
            im = torch.nn.functional.pad(im[None], (0, pw, 0, ph), mode=mode)[0]
        imgs.append(im)

    def sampler(t: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(iter_seed(seed + 7919, t))
        out = []
        for _ in range(batch):
            im = imgs[int(torch.randint(len(imgs), (1,), generator=g))]
            h, w = im.shape[-2:]
            y0 = int(torch.randint(h - crop + 1, (1,), generator=g))
            x0 = int(torch.randint(w - crop + 1, (1,), generator=g))
            k = int(torch.randint(8, (1,), generator=g))
            c = im[:, y0:y0 + crop, x0:x0 + crop]
            out.append(dihedral(c, k) if augment else c)
        return torch.stack(out).contiguous()

    return sampler


def canonical_strides(shape, fmt) -> tuple:
    """Strides of a contiguous (or channels-last) tensor of ``shape``, size-1 axes included."""
    c, h, w = shape[1], shape[2], shape[3]
    if fmt == torch.channels_last:
        return (h * w * c, 1, w * c, c)
    return (c * h * w, h * w, w, 1)
