"""Digital corruptions: brightness, contrast, saturate, elastic_transform, pixelate,
jpeg_compression.

Signature as in noise.py: (planes N×C×H×W, parameter, generator, scale). Saturate needs
RGB; the others work on gray images directly.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from mentor.corruptions import _common

TINY = np.float32(1e-12)  # guards divisions by a zero value or saturation (masked anyway)


def brightness(x, shift, rng, scale):
    """HSV value + shift (clipped to 1), hue and saturation kept.

    With hue and saturation fixed every channel is proportional to the value V = max(RGB),
    so the HSV round trip of make_cifar_c.py (skimage rgb2hsv/hsv2rgb) is a per-pixel
    rescaling by V'/V; a black pixel (V = 0, saturation 0) becomes gray V'.
    """
    value = x.max(axis=1, keepdims=True)
    lifted = np.minimum(value + np.float32(shift), 1)
    return np.where(value > 0, x * (lifted / np.maximum(value, TINY)), lifted)


def contrast(x, factor, rng, scale):
    # make_cifar_c.py averages over axes (0, 1) of H×W×C: one mean per channel.
    means = x.mean(axis=(2, 3), keepdims=True)
    x -= means
    x *= np.float32(factor)
    x += means
    return x


def saturate(x, param, rng, scale):
    """HSV saturation s → clip(s·factor + offset, 0, 1), hue and value kept.

    For fixed hue and value V each channel is V − s·V·a(hue), so the new image is
    V − (s'/s)(V − x). skimage gives a gray pixel (s = 0) hue 0, red: an offset > 0
    (severities 4-5) turns it (V, V(1−s'), V(1−s')), as in the release.
    """
    factor, offset = param
    value = x.max(axis=1, keepdims=True)
    sat = (value - x.min(axis=1, keepdims=True)) / np.maximum(value, TINY)
    new_sat = np.clip(sat * np.float32(factor) + np.float32(offset), 0, 1)
    rescaled = value - (value - x) * (new_sat / np.maximum(sat, TINY))
    red_hue = value * (1 - new_sat * _common.per_channel([0, 1, 1]))
    return np.where(sat > 0, rescaled, red_hue)


def elastic_transform(x, param, rng, scale):
    """A random affine warp (bilinear, reflect-101 border, as cv2.warpAffine), then a
    smooth random displacement field (bilinear, half-sample reflection, as
    scipy.ndimage.map_coordinates(order=1, mode='reflect')): two resamplings, as in the
    release. Lengths are multiples of the side (the file writes IMSIZE·f)."""
    alpha, sigma, jitter = (value * scale for value in param)
    x = _random_affine(x, jitter, rng)
    n, _, height, width = x.shape
    dx, dy = (_common.gaussian(_uniform(rng, (n, 1, height, width)), sigma, mode="reflect",
                               truncate=3)[:, 0] * np.float32(alpha) for _ in range(2))
    rows = np.arange(height, dtype=np.float32)[:, None] + dy
    cols = np.arange(width, dtype=np.float32)[None, :] + dx
    return _common.sample_bilinear(x, rows, cols, "reflect")


def _uniform(rng, shape):
    """U(-1, 1) in float32."""
    u = rng.random(shape, dtype=np.float32)
    u *= 2
    u -= 1
    return u


def _random_affine(x, jitter, rng):
    """make_cifar_c.py's affine: three points around the centre, each moved by up to
    ±jitter px; the warp maps the old points onto the moved ones."""
    n, _, height, width = x.shape
    centre = np.array([width // 2, height // 2], np.float64)  # (x, y), OpenCV's order
    size = min(height, width) // 3
    before = np.array([centre + size, [centre[0] + size, centre[1] - size], centre - size])
    after = before + rng.uniform(-jitter, jitter, (n, 3, 2))
    # cv2.warpAffine reads the output pixel p at M⁻¹p: solve for the map after → before.
    after_h = np.concatenate([after, np.ones((n, 3, 1))], axis=2)  # homogeneous
    inverse = np.linalg.solve(after_h, np.broadcast_to(before, (n, 3, 2)))  # N×3×2
    rows, cols = np.mgrid[0:height, 0:width]
    grid = np.stack([cols, rows, np.ones_like(rows)], axis=-1).reshape(-1, 3)  # (x, y, 1)
    grid = grid.astype(np.float32)
    source = (grid @ inverse.astype(np.float32)).reshape(n, height, width, 2)  # (x, y) read
    return _common.sample_bilinear(x, source[..., 1], source[..., 0], "mirror")


def pixelate(x, fraction, rng, scale):
    """Box down-sampling to int(side·fraction), box up-sampling back, as PIL's
    Image.resize(..., Image.BOX) twice in the release, batched as matrix products.

    `fraction` is relative to the side, so it already scales with the image: nothing more
    to scale.
    """
    height, width = x.shape[2:]
    small_h, small_w = max(1, int(height * fraction)), max(1, int(width * fraction))
    levels = np.rint(x * _common.MAX_LEVEL)
    # PIL resizes an 8-bit image horizontally, then vertically, rounding after each pass.
    for size_h, size_w in ((small_h, small_w), (height, width)):
        levels = _round(_common.along_w(levels, _box_matrix(levels.shape[3], size_w)))
        levels = _round(_common.along_h(levels, _box_matrix(levels.shape[2], size_h)))
    return levels / np.float32(_common.MAX_LEVEL)


def _round(levels):
    """PIL's fixed-point rounding: halves go up."""
    levels += np.float32(0.5)
    return np.floor(levels, out=levels)


@functools.lru_cache(maxsize=64)
def _box_matrix(size_in: int, size_out: int) -> np.ndarray:
    """PIL's BOX resampling weights (libImaging/Resample.c, precompute_coeffs): output
    pixel i averages the input pixels whose centres fall in its footprint."""
    ratio = size_in / size_out
    support = 0.5 * max(ratio, 1.0)
    centres = (np.arange(size_out) + 0.5) * ratio
    first = np.maximum(np.floor(centres - support + 0.5), 0)[:, None]
    stop = np.minimum(np.floor(centres + support + 0.5), size_in)[:, None]
    pixel = np.arange(size_in)[None, :]
    t = (pixel - centres[:, None] + 0.5) / max(ratio, 1.0)
    inside = (t > -0.5) & (t <= 0.5) & (pixel >= first) & (pixel < stop)
    return (inside / inside.sum(axis=1, keepdims=True)).astype(np.float32)


def jpeg_compression(x, quality, rng, scale):
    """PIL JPEG at `quality`, one image at a time (PIL encodes single images); gray images
    are encoded as 8-bit gray JPEGs."""
    images = _common.to_images(x)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer)).reshape(image.shape)
    return _common.to_planes(out)
