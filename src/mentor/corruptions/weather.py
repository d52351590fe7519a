"""Weather corruptions: snow, frost, fog, spatter.

Signature as in noise.py: (planes N×C×H×W, parameter, generator, scale) where
scale = side/32 multiplies every length given for CIFAR's 32 px. Snow and fog work on gray
images directly; frost and spatter add coloured layers and take RGB only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mentor.corruptions import _common, _frost
from mentor.corruptions._common import MAX_LEVEL

SNOW_ANGLES = (-135, -45)  # degrees, make_cifar_c.py's snow motion-blur angle range
FROST_IMAGES_DRAWN = 5  # make_cifar_c.py draws randint(5): its 6th frost image is never used
PLASMA_WIBBLE = 100.0  # make_cifar_c.py's plasma_fractal: initial random amplitude
WATER_RGB = _common.per_channel([175, 238, 238]) / MAX_LEVEL  # "pale turquoise", the file
MUD_RGB = _common.per_channel([63, 42, 20]) / MAX_LEVEL  # "mud brown", the file
MUD_MASK_MIN = 0.8  # make_cifar_c.py: smoothed mud-mask values below it become 0
WATER_DISTANCE_CAP = 20  # px, cv2.threshold(dist, 20, 20, THRESH_TRUNC) in make_cifar_c.py
# OpenCV's DIST_L2 5×5 mask (imgproc docs): steps (rows, cols) and their lengths in px.
CHAMFER_STEPS = tuple(
    (dr, dc, {1: 1.0, 2: 1.4, 5: 2.1969}[dr * dr + dc * dc])
    for dr in range(-2, 3) for dc in range(-2, 3)
    if dr * dr + dc * dc in (1, 2, 5))
# cv2.filter2D kernel in make_cifar_c.py's spatter: an emboss that shades the drops' rims.
EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
GRAY_LEVELS = 256  # 8-bit histogram bins of cv2.equalizeHist
CANNY_LOW, CANNY_HIGH = 50, 150  # cv2.Canny thresholds in make_cifar_c.py's spatter
SOBEL_SMOOTH = np.array([1, 2, 1], np.int32)  # OpenCV's Sobel, aperture 3: smoothing …
SOBEL_DERIVATIVE = np.array([-1, 0, 1], np.int32)  # … times central difference
CANNY_SHIFT = 15  # OpenCV canny.cpp: fixed-point bits of its direction test
CANNY_TG22 = round(0.4142135623730950488 * (1 << CANNY_SHIFT))  # tan 22.5° in fixed point


def snow(x, param, rng, scale):
    loc, spread, zoom, threshold, radius, sigma, keep = param
    flakes = _snow_layer(rng, x.shape, loc, spread, zoom * scale, threshold, radius * scale,
                         sigma * scale)
    # make_cifar_c.py: whiten the image a little (gray·1.5 + 0.5 where brighter) ...
    x = keep * x + (1 - keep) * np.maximum(x, _common.luma(x) * 1.5 + 0.5)
    # ... and add the streaks and their 180° rotation.
    return x + flakes + flakes[:, :, ::-1, ::-1]


def _snow_layer(rng, shape, loc, spread, zoom, threshold, radius, sigma):
    """N×1×H×W streaks: thresholded, zoomed noise, motion-blurred at an angle per image."""
    n, _, height, width = shape
    flakes = rng.standard_normal((n, 1, height, width), dtype=np.float32)
    flakes *= np.float32(spread)
    flakes += np.float32(loc)
    # The zoom sets the flake size; with ×scale it keeps its proportion to the image (below
    # 32 px it stays at least 1: clipped_zoom only enlarges).
    flakes = _common.clipped_zoom(flakes, max(1.0, zoom))
    flakes[flakes < threshold] = 0
    # The release passes the layer through 8-bit PNGs into and out of ImageMagick.
    flakes = np.floor(np.clip(flakes, 0, 1) * MAX_LEVEL) / np.float32(MAX_LEVEL)
    angles = rng.uniform(*SNOW_ANGLES, n)
    flakes = _common.motion_blur(flakes, radius, sigma, angles)
    return np.rint(flakes * MAX_LEVEL) / np.float32(MAX_LEVEL)


def frost(x, param, rng, scale):
    """keep·x + amount·(a random crop of a frost texture).

    The textures are made procedurally (see _frost), not the release's photographs, so
    frost results are close to, not equal to, the official CIFAR-10-C ones.
    """
    keep, amount = param
    n, _, height, width = x.shape
    textures = _frost.textures(_frost.texture_side(height, width, scale))
    side = textures.shape[-1]
    pick = rng.integers(0, FROST_IMAGES_DRAWN, n)
    top = rng.integers(0, side - height, n)[:, None, None]
    left = rng.integers(0, side - width, n)[:, None, None]
    crops = _common.gather(textures, top + np.arange(height)[:, None],
                           left + np.arange(width), images=pick)
    return keep * x + amount * crops


def plasma_fractal(rng, n: int, size: int, decay: float) -> np.ndarray:
    """N diamond-square height maps of size×size (a power of two), each scaled to [0, 1].

    make_cifar_c.py's plasma_fractal, one map per image, all drawn at once.
    """
    maps = np.zeros((n, size, size))
    step, wibble = size, PLASMA_WIBBLE

    def wibbled_mean(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        # Diamonds: the midpoints of the squares' horizontal, then vertical, edges.
        horizontal = (centres + np.roll(centres, 1, axis=1)
                      + corners + np.roll(corners, -1, axis=2))
        maps[:, 0::step, half::step] = wibbled_mean(horizontal)
        vertical = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half::step, 0::step] = wibbled_mean(vertical)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return (maps / maps.max(axis=(1, 2), keepdims=True)).astype(np.float32)


def fog(x, param, rng, scale):
    """Add a plasma fractal, then rescale so the image's brightest value is kept.

    The map is drawn at the image's own power-of-two size (32 for CIFAR), so it spans the
    image at any size, with finer, fainter octaves on larger images.
    """
    strength, decay = param
    n, _, height, width = x.shape
    size = 2 ** math.ceil(math.log2(max(height, width)))
    fractal = plasma_fractal(rng, n, size, decay)[:, None, :height, :width]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + strength * fractal) * (peak / (peak + strength))


def spatter(x, param, rng, scale):
    """Water drops (severities 1-3) or mud (4-5) from thresholded smooth noise.

    make_cifar_c.py shades the water with OpenCV (Canny edges, distance transform,
    histogram equalisation, an emboss); this follows the same steps in NumPy and SciPy.
    """
    loc, spread, sigma, threshold, strength, mud = param
    n, _, height, width = x.shape
    liquid = _liquid_layer(rng, (n, 1, height, width), loc, spread, sigma, scale)
    liquid[liquid < threshold] = 0
    if mud:
        return _mud(x, liquid > threshold, strength * scale)
    return _water(x, liquid, scale, strength)


def _liquid_layer(rng, shape, loc, spread, sigma, scale):
    """loc + smoothed N(0, spread²) noise, as make_cifar_c.py draws it.

    Smoothing over σ·scale px would also shrink the noise's spread by the ratio of the
    kernels' norms, and the fixed threshold would then find fewer drops on larger images;
    multiplying by that ratio keeps the per-pixel spread of CIFAR's 32 px.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(spread)
    ratio = (_kernel_norm(sigma) / _kernel_norm(sigma * scale)) ** 2  # 2-D: square of 1-D
    return loc + _common.gaussian(noise, sigma * scale) * np.float32(ratio)


def _kernel_norm(sigma: float) -> float:
    """L2 norm of SciPy's 1-D Gaussian kernel (truncate 4) of σ px."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2.0 * sigma**2))
    return float(np.linalg.norm(taps / taps.sum()))


def _water(x, liquid, scale, strength):
    layer = liquid[:, 0]  # N×H×W: the OpenCV steps shade one gray layer
    # The release casts liquid·255 to uint8; on x86 that wraps values above 255 (C leaves
    # it undefined), so the rare drop brighter than 1 (severity 3) gets an inner rim.
    rims = _canny(np.floor(layer * MAX_LEVEL).astype(np.int32) % GRAY_LEVELS)
    dist = _chamfer_distance(rims, WATER_DISTANCE_CAP * scale)
    dist = np.minimum(np.floor(_box3(dist)), GRAY_LEVELS - 1)  # cv2.blur, .astype(np.uint8)
    dist = _equalize_hist(dist.astype(np.intp))
    # cv2.filter2D into uint8 rounds and saturates.
    dist = np.clip(np.rint(ndimage.correlate(dist, EMBOSS[None], mode="mirror")), 0, MAX_LEVEL)
    dist = np.rint(_box3(dist))  # cv2.blur of an 8-bit image rounds
    shade = layer * dist
    peak = shade.max(axis=(1, 2), keepdims=True)
    shade = np.divide(shade, peak, out=np.zeros_like(shade), where=peak > 0)
    return x + (strength * shade[:, None]) * WATER_RGB


def _canny(levels):
    """OpenCV's Canny(levels, 50, 150) (3×3 Sobel, L1 magnitude) on each image of N×H×W.

    Sobel with replicated borders; non-maximum suppression along the gradient's direction
    rounded to 0°, 45°, 90° or 135° with OpenCV's integer tan 22.5° test and its tie
    rules; then hysteresis: weak pixels survive when 8-connected to a strong one.
    """
    n, height, width = levels.shape
    gx = _sobel(levels, derivative_axis=2)
    gy = _sobel(levels, derivative_axis=1)
    ax, ay = np.abs(gx), np.abs(gy)
    mag = ax + ay
    padded = np.pad(mag, ((0, 0), (1, 1), (1, 1)))  # OpenCV pads the magnitude with zeros

    def near(dr, dc):
        return padded[:, 1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]

    tg22 = ax * CANNY_TG22
    horizontal = (ay << CANNY_SHIFT) < tg22
    vertical = (ay << CANNY_SHIFT) > tg22 + (ax << (CANNY_SHIFT + 1))
    same_sign = (gx ^ gy) >= 0
    peak = np.where(
        horizontal, (mag > near(0, -1)) & (mag >= near(0, 1)),
        np.where(vertical, (mag > near(-1, 0)) & (mag >= near(1, 0)),
                 np.where(same_sign, (mag > near(-1, -1)) & (mag > near(1, 1)),
                          (mag > near(-1, 1)) & (mag > near(1, -1)))))
    weak = peak & (mag > CANNY_LOW)
    eight = np.zeros((3, 3, 3), bool)
    eight[1] = True  # 8-connected within an image, never across the batch
    labels, count = ndimage.label(weak, eight)
    strong_labels = np.zeros(count + 1, bool)
    strong_labels[labels[weak & (mag > CANNY_HIGH)]] = True
    strong_labels[0] = False
    return strong_labels[labels]


def _sobel(levels, derivative_axis):
    """OpenCV's 3×3 Sobel (replicated border) as its two separable passes."""
    smooth_axis = 3 - derivative_axis
    out = ndimage.correlate1d(levels, SOBEL_SMOOTH, axis=smooth_axis, mode="nearest")
    return ndimage.correlate1d(out, SOBEL_DERIVATIVE, axis=derivative_axis, mode="nearest")


def _chamfer_distance(edges, cap):
    """cv2.distanceTransform(DIST_L2, 5) of the non-edge pixels, truncated at `cap`.

    OpenCV's two raster passes over its 5×5 chamfer mask (steps of 1, 1.4 and 2.1969 px),
    row by row for the whole batch: a row first takes the rows above (below, going
    back), then its left (right) neighbour, a running minimum along the row.
    """
    n, height, width = edges.shape
    dist = np.full((n, height + 4, width + 4), np.inf, np.float32)  # 2 px of margin
    dist[:, 2:-2, 2:-2] = np.where(edges, 0, np.inf)
    along = np.arange(width, dtype=np.float32)
    for sign, rows in ((1, range(2, height + 2)), (-1, range(height + 1, 1, -1))):
        for r in rows:
            row = dist[:, r, 2:-2]
            for dr, dc, length in CHAMFER_STEPS:
                if dr * sign < 0:  # rows already final in this pass
                    np.minimum(row, dist[:, r + dr, 2 + dc : 2 + dc + width] + length, out=row)
            if sign > 0:
                row[:] = np.minimum.accumulate(row - along, axis=1) + along
            else:
                row[:] = np.minimum.accumulate((row + along)[:, ::-1], axis=1)[:, ::-1] - along
    return np.minimum(dist[:, 2:-2, 2:-2], cap)


def _box3(a):
    """cv2.blur(a, (3, 3)) on each image of N×H×W: mean over 3×3, reflect-101 border."""
    return ndimage.uniform_filter(a.astype(np.float32), size=(1, 3, 3), mode="mirror")


def _equalize_hist(levels):
    """cv2.equalizeHist on each image of N×H×W integer levels in 0..255."""
    n = len(levels)
    flat = levels.reshape(n, -1)
    offsets = GRAY_LEVELS * np.arange(n)[:, None]
    hist = np.bincount((flat + offsets).ravel(), minlength=n * GRAY_LEVELS)
    hist = hist.reshape(n, GRAY_LEVELS)
    first = (hist > 0).argmax(axis=1)
    first_count = hist[np.arange(n), first][:, None]
    spread = flat.shape[1] - first_count  # 0 for a constant image
    cdf = np.maximum(hist.cumsum(axis=1) - first_count, 0)
    lut = np.rint(cdf * (GRAY_LEVELS - 1) / np.maximum(spread, 1))
    lut = np.where(spread > 0, lut, first[:, None])  # OpenCV keeps a constant image as is
    return np.take_along_axis(lut, flat, axis=1).reshape(levels.shape).astype(np.float32)


def _mud(x, drops, sigma):
    mask = _common.gaussian(drops.astype(np.float32), sigma)
    mask[mask < MUD_MASK_MIN] = 0
    return x * (1 - mask) + mask * MUD_RGB
