"""A large test photo: a mosaic of the scikit-image samples (each upscaled 2x) with Gaussian noise.

    python scripts/large_photo.py OUTDIR [--width 4000 --height 3000 --sigma 25]

writes OUTDIR/photo_clean.png and OUTDIR/photo_noisy.png (8-bit RGB; the noise is seeded).
"""
import argparse
import os

import numpy as np


def mosaic(width: int, height: int) -> np.ndarray:
    """(height, width, 3) float32 on [0, 1]: sample images upscaled 2x (bicubic), tiled row by row."""
    from skimage import data
    from skimage.transform import rescale

    tiles = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera"):
        im = getattr(data, name)().astype(np.float32) / 255.0
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, 2)
        tiles.append(np.clip(rescale(im, 2, order=3, channel_axis=2), 0, 1).astype(np.float32))
    out = np.zeros((height, width, 3), np.float32)
    y = k = 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            t = tiles[k % len(tiles)]
            k += 1
            h, w = min(t.shape[0], height - y), min(t.shape[1], width - x)
            out[y:y + h, x:x + w] = t[:h, :w]
            x, row_h = x + w, max(row_h, h)
        y += row_h
    return out


def main() -> None:
    import imageio.v3 as iio

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--sigma", type=float, default=25.0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    clean = mosaic(a.width, a.height)
    noisy = clean + a.sigma / 255.0 * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    q = lambda v: np.floor(np.clip(v, 0, 1) * 255 + 0.5).astype(np.uint8)
    iio.imwrite(os.path.join(a.out, "photo_clean.png"), q(clean))
    iio.imwrite(os.path.join(a.out, "photo_noisy.png"), q(noisy))


if __name__ == "__main__":
    main()
