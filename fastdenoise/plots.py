"""Comparison figures of the CLI's ``--plot``: noisy / denoised (/ clean) panels and the loss curve, numpy only."""
from __future__ import annotations

import os

import numpy as np


def _line_plot(values, h: int, w: int) -> np.ndarray:
    """A plain (h, w, 3) float image of a curve (white background, axes, blue line), numpy only."""
    img = np.ones((h, w, 3), np.float32)
    m = 6
    img[m:h - m, m] = 0.0
    img[h - m, m:w - m] = 0.0
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size < 2:
        return img
    lo, hi = float(v.min()), float(v.max())
    hi = hi if hi > lo else lo + 1.0
    xs = np.linspace(m + 1, w - m - 1, v.size)
    ys = (h - m - 1) - (v - lo) / (hi - lo) * (h - 2 * m - 2)
    for i in range(v.size - 1):  # dense sampling along each segment
        n = int(max(abs(xs[i + 1] - xs[i]), abs(ys[i + 1] - ys[i]))) + 2
        px = np.linspace(xs[i], xs[i + 1], n).round().astype(int)
        py = np.linspace(ys[i], ys[i + 1], n).round().astype(int)
        img[np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)] = (0.1, 0.3, 0.9)
    return img


def save_comparison(path: str, panels: list, titles: list, losses=None) -> str:
    """Side-by-side PNG of ``panels`` ((H, W, C) on [0, 1]) plus the loss curve.

    Uses matplotlib when installed (titles, axes); otherwise a numpy grid (panels left to right, the
    loss curve as the last panel, white 4-px gutters).
    """
    panels = [np.repeat(p, 3, 2) if p.shape[2] == 1 else p[..., :3] for p in panels]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(panels) + (1 if losses else 0)
        fig, axs = plt.subplots(1, n, figsize=(4 * n, 4))
        axs = np.atleast_1d(axs)
        for ax, p, t in zip(axs, panels, titles):
            ax.imshow(np.clip(p, 0, 1))
            ax.set_title(t)
            ax.axis("off")
        if losses:
            axs[-1].plot(losses)
            axs[-1].set_title("loss")
            axs[-1].set_xlabel("iteration")
        fig.tight_layout()
        tmp = f"{path}.tmp{os.getpid()}.png"
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        os.replace(tmp, path)
        return path
    except ImportError:
        pass
    h = max(p.shape[0] for p in panels)
    cols = [np.pad(np.clip(p, 0, 1), ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=1.0) for p in panels]
    if losses:
        cols.append(_line_plot(losses, h, h))
    gut = np.ones((h, 4, 3), np.float32)
    grid = np.concatenate([x for c in cols for x in (c, gut)][:-1], axis=1)
    from fastdenoise.io import write_image

    return write_image(path, grid)
