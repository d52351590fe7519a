"""Procedural frost textures for the frost corruption.

make_cifar_c.py blends random 32×32 crops of photographs of frosted glass (frost1.png …
frost5.jpg, shrunk to a fifth). mentor neither ships nor downloads them: it draws five
ice-like textures instead (thin crystal veins over patchy haze), the same every time (fixed
seeds, independent of the call's seed), cached in memory. Each texture takes the mean colour
and contrast of one of the five photographs, and all take their share of fine and coarse
detail, measured at the script's 1/5 scale on the copies that the `imagecorruptions` 1.1.2
package ships (only these summary numbers come from the photographs; no pixels do).
Frost results are therefore close to, not equal to, the official CIFAR-10-C frost.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

BASE_SIDE = 160  # px at the 32 px scale; the photographs at 1/5 are 63-120 px high
TEXTURE_SEED = 0xF2057  # fixed: the textures are data, not part of a call's randomness
# Measured on frost1.png … frost5.jpg (imagecorruptions 1.1.2) shrunk to 1/5:
# mean R, G, B on [0, 1] and the standard deviation of their gray level.
PHOTO_MEAN_RGB = np.array([[0.305, 0.585, 0.650],
                           [0.787, 0.805, 0.841],
                           [0.787, 0.805, 0.841],
                           [0.540, 0.599, 0.648],
                           [0.441, 0.484, 0.528]], np.float32)
PHOTO_STD = (0.059, 0.071, 0.071, 0.084, 0.137)
VEIN_SIGMAS = (1.0, 2.0, 4.0)  # px at 32 px: crystal branches from fine to coarse
VEIN_WEIGHTS = (0.35, 0.4, 0.25)  # chosen by eye: mostly fine and middle branches
VEIN_WIDTH = 0.3  # |band-passed noise| below this, in its std units, is a vein
HAZE_SIGMA = 12.0  # px at 32 px: size of the patches of denser frost
# Veins against haze, in std units: gives the photographs' split of detail, measured as the
# std of the image minus its σ = 2 px blur (≈ 0.4 of the total std) and the std of its
# σ = 8 px blur (≈ 0.7 of it).
VEIN_SHARE = 0.5


def texture_side(height: int, width: int, scale: float) -> int:
    """Side of the textures for images of height×width: the base side × scale, and always
    larger than the image so a crop fits."""
    return max(round(BASE_SIDE * scale), height + 1, width + 1)


@functools.lru_cache(maxsize=4)
def textures(side: int) -> np.ndarray:
    """len(PHOTO_STD)×3×side×side float32 textures in [0, 1] (planes), read-only."""
    patterns = np.stack([_pattern(np.random.default_rng([TEXTURE_SEED, k]))
                         for k in range(len(PHOTO_STD))])
    if side != BASE_SIDE:
        factor = side / BASE_SIDE
        patterns = ndimage.zoom(patterns, (1, factor, factor), order=1, grid_mode=True,
                                mode="grid-wrap")
    std = np.array(PHOTO_STD, np.float32)[:, None, None, None]
    out = np.clip(PHOTO_MEAN_RGB[:, :, None, None] + std * patterns[:, None], 0, 1)
    out = out.astype(np.float32)
    out.flags.writeable = False
    return out


def _pattern(rng) -> np.ndarray:
    """One BASE_SIDE² gray pattern of mean 0 and std 1: ridged noise (veins) over haze."""
    shape = (BASE_SIDE, BASE_SIDE)
    veins = np.zeros(shape)
    for sigma, weight in zip(VEIN_SIGMAS, VEIN_WEIGHTS):
        band = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
        veins += weight * np.clip(1 - np.abs(band) / (VEIN_WIDTH * band.std()), 0, 1)
    haze = ndimage.gaussian_filter(rng.standard_normal(shape), HAZE_SIGMA, mode="wrap")
    return _standardise(VEIN_SHARE * _standardise(veins) + _standardise(haze))


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()
