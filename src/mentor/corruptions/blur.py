"""Blur corruptions: defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur.

Signature as in noise.py: (planes N×C×H×W, parameter, generator, scale) where
scale = side/32 multiplies every length (radius, σ, displacement) given for CIFAR's 32 px.
All act on each channel alike, so gray images go through directly.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

from mentor.corruptions import _common

DISK_GRID_HALF = 8  # px: make_cifar_c.py's `disk` draws radii ≤ 8 on a 17×17 grid


@functools.lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """make_cifar_c.py's `disk`: a normalised disk of `radius` px, antialiased by a 3×3
    Gaussian of σ = alias_blur px (5×5 above radius 8, as cv2.GaussianBlur is called there),
    cropped to its non-zero support."""
    half = max(DISK_GRID_HALF, math.ceil(radius))
    taps = 3 if radius <= DISK_GRID_HALF else 5
    grid = np.arange(-half, half + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    t = np.arange(taps) - taps // 2
    g = np.exp(-(t**2) / (2.0 * alias_blur**2))
    g /= g.sum()
    for axis in (0, 1):  # cv2's default border is reflect-101, SciPy's 'mirror'
        disk = ndimage.correlate1d(disk, g, axis=axis, mode="mirror")
    rows, cols = np.nonzero(disk > 0)
    return disk[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float32)


def defocus_blur(x, param, rng, scale):
    radius, alias_blur = param
    kernel = disk_kernel(radius * scale, alias_blur * scale)
    # cv2.filter2D's default border (reflect-101) is SciPy's 'mirror'.
    return ndimage.correlate(x, kernel[None, None], mode="mirror")


def glass_blur(x, param, rng, scale):
    """Blur, shuffle pixels locally, blur again.

    make_cifar_c.py "swaps" with `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on an H×W×3
    array: both sides are views, so pixel (h, w) receives (h', w')'s value and (h', w')
    keeps it (a copy, not a swap; see numpy/numpy#14428). Offsets are in [-d, d-1] and
    the loop runs from the bottom-right corner up, so with d = 1 (CIFAR) every source pixel is
    read before the loop reaches it: one pass equals one parallel gather from the image as
    it was before the pass, which is what this does, for the whole batch at once. For larger
    images d scales and the gather still reads the pre-pass image, where the original's
    order would sometimes read an already-moved pixel.
    """
    sigma, max_delta, iterations = param
    sigma *= scale
    delta = max(1, round(max_delta * scale))
    # The release rounds down to uint8 between its two blurs.
    levels = np.floor(_common.gaussian(x, sigma) * _common.MAX_LEVEL)
    x = levels / np.float32(_common.MAX_LEVEL)
    n, _, height, width = x.shape
    rows = np.arange(delta + 1, height - delta + 1)  # range(H - d, d, -1), in any order
    cols = np.arange(delta + 1, width - delta + 1)
    for _ in range(iterations):
        dy, dx = rng.integers(-delta, delta, size=(2, n, rows.size, cols.size))
        moved = _common.gather(x, rows[:, None] + dy, cols[None, :] + dx)
        x[:, :, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = moved
    return _common.gaussian(x, sigma)


def motion_blur(x, param, rng, scale):
    """A trailing line kernel at an angle drawn per image in [-45°, 45°] (see
    _common.motion_blur): the release calls ImageMagick's motion blur, rewritten here."""
    radius, sigma = param
    angles = rng.uniform(-45, 45, len(x))
    return _common.motion_blur(x, radius * scale, sigma * scale, angles)


def zoom_blur(x, param, rng, scale):
    # The zoom factors are ratios, not lengths: nothing to scale.
    factors = np.arange(*param)
    total = x.copy()
    for factor in factors:
        total += _common.clipped_zoom(x, float(factor))
    return total / np.float32(len(factors) + 1)


def gaussian_blur(x, sigma, rng, scale):
    return _common.gaussian(x, sigma * scale)
