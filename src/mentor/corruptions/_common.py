"""Batched building blocks shared by the corruptions.

Inside this package images are "planes": float32 N×C×H×W with pixels in [0, 1] (noise
layers and masks are N×1×H×W). Channel-first keeps the long H·W axis innermost, so per-pixel
and per-channel arithmetic broadcasts along it; NumPy broadcasting over a trailing axis of
3 channels runs 8-25× slower (measured here). Filters act along H and W only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

MAX_LEVEL = 255  # 8-bit pixels
MOTION_TAIL = 1e-4  # total weight of motion-blur taps left out: < 0.03 levels (255 × 1e-4)
# ITU-R BT.601 luma, as cv2.cvtColor(..., COLOR_RGB2GRAY) computes it in make_cifar_c.py.
LUMA_RGB = (0.299, 0.587, 0.114)


def to_planes(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×C → float32 N×C×H×W in [0, 1]."""
    planes = np.empty((images.shape[0], images.shape[3]) + images.shape[1:3], np.float32)
    np.multiply(images.transpose(0, 3, 1, 2), np.float32(1 / MAX_LEVEL), out=planes)
    return planes


def to_images(planes: np.ndarray) -> np.ndarray:
    """float32 N×C×H×W → uint8 N×H×W×C, clipped to [0, 1] and rounded to the nearest level.

    The release casts with np.uint8, which truncates; rounding differs by at most one level
    and keeps whole levels whole under float32 error.
    """
    levels = planes * np.float32(MAX_LEVEL)
    levels += np.float32(0.5)
    np.clip(levels, 0, MAX_LEVEL, out=levels)
    images = np.empty((planes.shape[0],) + planes.shape[2:] + (planes.shape[1],), np.uint8)
    images.transpose(0, 3, 1, 2)[...] = levels  # truncation of level + 0.5: rounding
    return images


def per_channel(values) -> np.ndarray:
    """A C-vector as C×1×1, to broadcast over N×C×H×W."""
    return np.asarray(values, np.float32)[:, None, None]


def luma(x: np.ndarray) -> np.ndarray:
    """N×1×H×W luma of RGB planes; a gray image is its own luma."""
    if x.shape[1] == 1:
        return x
    return LUMA_RGB[0] * x[:, 0:1] + LUMA_RGB[1] * x[:, 1:2] + LUMA_RGB[2] * x[:, 2:3]


def gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """Gaussian blur of σ px along H and W of N×C×H×W.

    The defaults are skimage.filters.gaussian's, which make_cifar_c.py calls.
    """
    return ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode=mode, truncate=truncate)


def fold_index(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map integer coordinates outside [0, size) back inside.

    'mirror' is OpenCV's BORDER_REFLECT_101 (…c b | a b c… ), 'reflect' is SciPy's
    half-sample reflection (…b a | a b c…). The map is tabulated over the range the
    indices span, then looked up: cheaper than integer division on every index.
    """
    low = min(int(index.min()), 0)
    span = np.arange(low, max(int(index.max()), size - 1) + 1)
    period = 2 * size - 2 if mode == "mirror" else 2 * size
    folded = np.mod(span, period)
    turn = period if mode == "mirror" else period - 1
    table = np.where(folded >= size, turn - folded, folded)
    return np.take(table, index - low, mode="clip")  # in range: 'clip' skips the checks


def gather(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, images=None) -> np.ndarray:
    """x[images[n], c, rows[n, i, j], cols[n, i, j]] for every channel c of N×C×H×W x,
    with in-range integer rows and cols that broadcast to N×h×w; `images` defaults to
    0..N-1. Flat np.take per channel with one shared index: several times faster than
    NumPy's multi-array indexing."""
    _, channels, height, width = x.shape
    plane = height * width
    images = np.arange(len(x)) if images is None else images
    index = (images * (channels * plane))[:, None, None] + rows * width + cols
    out = np.empty((index.shape[0], channels) + index.shape[1:], x.dtype)
    flat = x.reshape(-1)
    for channel in range(channels):
        np.take(flat, index, out=out[:, channel], mode="clip")  # in range: skips the checks
        index += plane
    return out


def sample_bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str):
    """Sample each image of N×C×H×W at its own float coordinates rows, cols (N×h×w)."""
    height, width = x.shape[2:]
    row0, col0 = np.floor(rows), np.floor(cols)
    fr = (rows - row0).astype(np.float32)[:, None]
    fc = (cols - col0).astype(np.float32)[:, None]
    row0, col0 = row0.astype(np.intp), col0.astype(np.intp)
    r0, r1 = fold_index(row0, height, mode), fold_index(row0 + 1, height, mode)
    c0, c1 = fold_index(col0, width, mode), fold_index(col0 + 1, width, mode)
    top = gather(x, r0, c0)
    top += fc * (gather(x, r0, c1) - top)
    bottom = gather(x, r1, c0)
    bottom += fc * (gather(x, r1, c1) - bottom)
    bottom -= top
    bottom *= fr
    bottom += top
    return bottom


def along_w(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Resample N×C×H×W along W with a (new W)×W matrix.

    Stacks of small matrix products: OpenBLAS threads one tall product, which on a busy
    2-core machine ran 13× slower than these (measured here).
    """
    n, channels, height, width = x.shape
    out = np.matmul(x.reshape(n * channels, height, width), matrix.T)
    return out.reshape(n, channels, height, len(matrix))


def along_h(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Resample N×C×H×W along H with a (new H)×H matrix."""
    n, channels, height, width = x.shape
    out = np.matmul(matrix, x.reshape(n * channels, height, width))
    return out.reshape(n, channels, len(matrix), width)


@functools.lru_cache(maxsize=256)
def clipped_zoom_matrix(size: int, factor: float) -> np.ndarray:
    """size×size matrix of make_cifar_c.py's `clipped_zoom` along one axis.

    That function crops the central ceil(size/factor) pixels, enlarges them with
    scipy.ndimage.zoom(order=1) (output length round(crop·factor), corners aligned) and
    trims the centre back to `size`. As a matrix it runs on a whole batch with BLAS.
    """
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    zoomed = round(crop * factor)
    trim = (zoomed - size) // 2
    position = top + (np.arange(size) + trim) * (crop - 1) / max(zoomed - 1, 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, size - 1)
    frac = position - low
    matrix = np.zeros((size, size), np.float32)
    np.add.at(matrix, (np.arange(size), low), 1 - frac)
    np.add.at(matrix, (np.arange(size), high), frac)
    return matrix


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """make_cifar_c.py's `clipped_zoom` (factor ≥ 1) for a batch N×C×H×W."""
    height, width = x.shape[2:]
    x = along_w(x, clipped_zoom_matrix(width, factor))
    return along_h(x, clipped_zoom_matrix(height, factor))


def motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray):
    """ImageMagick's MotionBlurImage for N×C×H×W with one angle (degrees) per image.

    As in ImageMagick (MagickCore/effect.c): 2·ceil(radius)+1 taps with weights
    exp(-i²/2σ²), normalised; tap i reads the pixel at (round(i·cos a), round(i·sin a)) from
    the output pixel (x right, y down), so the blur trails on one side; pixels outside the
    image repeat the edge (ImageMagick's default virtual-pixel method).
    """
    height, width = x.shape[2:]
    taps = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    # The far taps of a narrow kernel weigh next to nothing: dropping those whose weights
    # sum to < MOTION_TAIL moves no pixel by more than 0.03 of a level.
    kept = len(taps) - np.searchsorted(np.cumsum(weights[::-1]), MOTION_TAIL)
    taps, weights = taps[:kept], weights[:kept]
    theta = np.deg2rad(angles)[:, None]
    dx = np.ceil(taps * np.cos(theta) - 0.5).astype(np.intp)  # N×taps, ImageMagick's rounding
    dy = np.ceil(taps * np.sin(theta) - 0.5).astype(np.intp)
    # Pad with the edge once; each tap is then a shifted window of the padded images.
    reach = len(taps) - 1
    padded = np.pad(x, ((0, 0), (0, 0), (reach, reach), (reach, reach)), mode="edge")
    rows = reach + np.arange(height)[:, None]
    cols = reach + np.arange(width)[None, :]
    out = np.zeros_like(x)
    for tap, weight in enumerate(weights):
        window = gather(padded, rows + dy[:, tap, None, None], cols + dx[:, tap, None, None])
        window *= np.float32(weight)
        out += window
    return out
