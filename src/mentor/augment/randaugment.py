"""RandAugment and the weak view: `weak` (flip and pad-and-crop translation), the colour
ops, the geometric ops composed into one affine map, cutout, `_Groups` (how one layer deals
its ops to the batch) and `strong`, with `OP_NAMES`, `COLOUR_OPS`, `GEOMETRIC_OPS` and the
constants that turn RandAugment's magnitude into each op's strength.
"""

import math

import keras
from keras import ops

from mentor.augment._common import (
    GREY,
    MAX_PIXEL,
    _as_float,
    _check,
    _clip,
    _coin,
    _identity,
    _matrices,
    _per_image,
    _reflect,
    _resample,
    _seed_generator,
    _transforms,
)

# RandAugment (Cubuk et al. 2020, appendix): magnitude M on 0..10, 10 the strongest.
MAX_MAGNITUDE = 10.0
ROTATE_MAX_DEGREES = 30.0  # at M = 10
SHEAR_MAX = 0.3  # shear coefficient (pixels of shift per pixel of distance) at M = 10
# Fraction of the side at M = 10: FixMatch's range. The paper's 150 px of 331 (0.45) would
# push most of a 32 px image out of the frame.
TRANSLATE_MAX = 0.3
ENHANCE_MAX = 0.9  # Color/Contrast/Brightness/Sharpness factor 1 ± 0.9 at M = 10
POSTERIZE_MAX_BITS_REMOVED = 4.0  # 8 bits kept at M = 0, 4 at M = 10
LEVELS = 256  # grey levels of an 8-bit channel: Solarize's threshold scale, Equalize's bins

OP_NAMES = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Solarize",
    "Color",
    "Posterize",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")

# PIL's RGB → L weights (ITU-R 601-2 luma), used by Color and Contrast as PIL does.
LUMA = (0.299, 0.587, 0.114)
# PIL's ImageFilter.SMOOTH kernel, the "degenerate" image of Sharpness.
SMOOTH_KERNEL = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))


# ---------------------------------------------------------------------------- weak


def weak(images, seed, *, flip=True, translate=0.125):
    """Horizontal flip (p = 1/2) then an integer translation, both drawn per image.

    The translation is FixMatch's pad-and-crop: up to round(translate · side) pixels on each
    axis (4 px at 32 px with the default 0.125), uniform over the integers, with the
    padding reflected as `np.pad(mode="reflect")` / `tf.pad(mode="REFLECT")` do (the edge
    pixel is not repeated). Whole-pixel moves are a gather of rows and columns: exact and
    cheaper than resampling. (Keras 3.15's affine_transform on torch cannot do this fill on
    one-channel images: its "mirror" mode divides by zero on the channel axis.)
    """
    _check(0.0 <= translate <= 0.5, f"translate must be in [0, 0.5], got {translate}")
    images = _as_float(images)
    seed = _seed_generator(seed)
    batch = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    max_dy, max_dx = round(translate * height), round(translate * width)
    if not flip and max_dx == 0 and max_dy == 0:
        return images

    mirrored = _coin(batch, seed) if flip else ops.zeros((batch,), dtype="bool")
    dx = keras.random.randint((batch, 1), -max_dx, max_dx + 1, seed=seed, dtype="int32")
    dy = keras.random.randint((batch, 1), -max_dy, max_dy + 1, seed=seed, dtype="int32")
    # Output pixel (y, x) reads input (y + dy, x + dx) of the flipped image.
    rows = _reflect(ops.arange(height, dtype="int32")[None, :] + dy, height)
    cols = _reflect(ops.arange(width, dtype="int32")[None, :] + dx, width)
    cols = ops.where(mirrored[:, None], width - 1 - cols, cols)
    images = ops.take_along_axis(images, ops.reshape(rows, (-1, height, 1, 1)), axis=1)
    return ops.take_along_axis(images, ops.reshape(cols, (-1, 1, width, 1)), axis=2)


# ---------------------------------------------------------------------------- colour ops
# Each takes images B×H×W×C in [0, 255] and, where it has one, a per-image strength (B,):
# `level` = ±M/10 (signed ops) or `fraction` = M/10 (unsigned ops). Each returns [0, 255].


def _grey(images):
    """Luma B×H×W×1 as PIL's convert("L"); a one-channel image is its own luma."""
    if images.shape[-1] == 1:
        return images
    weights = ops.convert_to_tensor(LUMA, dtype="float32")
    return ops.sum(images * weights, axis=-1, keepdims=True)


def _blend(degenerate, images, factor):
    """PIL's ImageEnhance: degenerate + factor · (image − degenerate), clipped."""
    return _clip(degenerate + _per_image(factor) * (images - degenerate))


def _enhance_factor(level):
    return 1.0 + ENHANCE_MAX * level


def _auto_contrast(images):
    """Stretch each image-channel from its [min, max] to [0, 255] (flat channels kept)."""
    low = ops.min(images, axis=(1, 2), keepdims=True)
    high = ops.max(images, axis=(1, 2), keepdims=True)
    spread = high - low
    stretched = (images - low) * MAX_PIXEL / ops.where(spread > 0, spread, 1.0)
    return _clip(ops.where(spread > 0, stretched, images))


def _equalize(images):
    """PIL's ImageOps.equalize per image-channel, batched.

    PIL: step = (pixels − count of the top level) // 255; level v maps to
    (pixels below v + step // 2) // step; a channel with step 0 is left alone.
    """
    height, width, channels = images.shape[1:]
    pixels = height * width
    levels = ops.cast(ops.clip(ops.floor(images), 0, LEVELS - 1), "int32")
    levels = ops.reshape(ops.transpose(levels, (0, 3, 1, 2)), (-1, pixels))  # rows: image-channel
    rows = ops.shape(levels)[0]
    # One histogram per row through one flat segment sum (jit-friendly, unlike bincount).
    bins = levels + ops.expand_dims(ops.arange(rows, dtype="int32") * LEVELS, 1)
    ones = ops.ones((rows * pixels,), dtype="float32")
    histogram = ops.segment_sum(ones, ops.reshape(bins, (-1,)), num_segments=rows * LEVELS)
    histogram = ops.reshape(histogram, (-1, LEVELS))

    top = ops.take_along_axis(histogram, ops.max(levels, axis=1, keepdims=True), axis=1)
    step = ops.floor((pixels - top) / (LEVELS - 1))
    below = ops.cumsum(histogram, axis=1) - histogram
    safe_step = ops.where(step > 0, step, 1.0)
    lookup = ops.floor((below + ops.floor(step / 2)) / safe_step)
    equalized = ops.take_along_axis(lookup, levels, axis=1)
    equalized = ops.reshape(equalized, (-1, channels, height, width))
    equalized = ops.transpose(equalized, (0, 2, 3, 1))
    flat = ops.reshape(step, (-1, channels))[:, None, None, :] == 0
    return _clip(ops.where(flat, images, equalized))


def _solarize(images, fraction):
    """Invert the pixels at or above a threshold going 256 → 0 as M goes 0 → 10."""
    threshold = _per_image(LEVELS * (1.0 - fraction))
    return ops.where(images >= threshold, MAX_PIXEL - images, images)


def _color(images, level):
    """Saturation: blend with the grey image (a one-channel image is unchanged)."""
    return _blend(_grey(images), images, _enhance_factor(level))


def _posterize(images, fraction):
    """Keep 8 − round(4 · M/10) bits, i.e. floor to a multiple of 2^(bits removed)."""
    quantum = _per_image(ops.power(2.0, ops.round(POSTERIZE_MAX_BITS_REMOVED * fraction)))
    return ops.floor(images / quantum) * quantum


def _contrast(images, level):
    """Blend with the image's mean grey level."""
    mean = ops.mean(_grey(images), axis=(1, 2, 3), keepdims=True)
    return _blend(mean, images, _enhance_factor(level))


def _brightness(images, level):
    """Blend with black."""
    return _clip(images * _per_image(_enhance_factor(level)))


def _sharpness(images, level):
    """Blend with PIL's SMOOTH-filtered image; the one-pixel border stays as it is (as PIL)."""
    height, width, channels = images.shape[1:]
    kernel = ops.convert_to_tensor(SMOOTH_KERNEL, dtype="float32")
    kernel = kernel / ops.sum(kernel)
    kernel = ops.tile(ops.reshape(kernel, (3, 3, 1, 1)), (1, 1, channels, 1))
    smooth = ops.depthwise_conv(images, kernel, strides=1, padding="same")
    rows = ops.arange(height)[:, None]
    cols = ops.arange(width)[None, :]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    degenerate = ops.where(interior[None, :, :, None], smooth, images)
    return _blend(degenerate, images, _enhance_factor(level))


# name → f(images, fraction, level)
COLOUR_OPS = {
    "AutoContrast": lambda images, fraction, level: _auto_contrast(images),
    "Equalize": lambda images, fraction, level: _equalize(images),
    "Solarize": lambda images, fraction, level: _solarize(images, fraction),
    "Posterize": lambda images, fraction, level: _posterize(images, fraction),
    "Color": lambda images, fraction, level: _color(images, level),
    "Contrast": lambda images, fraction, level: _contrast(images, level),
    "Brightness": lambda images, fraction, level: _brightness(images, level),
    "Sharpness": lambda images, fraction, level: _sharpness(images, level),
}


# ---------------------------------------------------------------------------- geometric ops


def _geometry(op, level, height, width):
    """Per image, the output→input map of this layer's geometric op (identity otherwise).

    Rotation and shear turn about the image centre, so the content stays in view.
    """
    def chosen(name):
        return op == OP_NAMES.index(name)

    zero = ops.zeros_like(level)
    angle = ops.where(chosen("Rotate"), level * math.radians(ROTATE_MAX_DEGREES), zero)
    cos, sin = ops.cos(angle), ops.sin(angle)
    a = cos
    b = -sin + ops.where(chosen("ShearX"), SHEAR_MAX * level, zero)
    d = sin + ops.where(chosen("ShearY"), SHEAR_MAX * level, zero)
    e = cos
    shift_x = ops.where(chosen("TranslateX"), TRANSLATE_MAX * width * level, zero)
    shift_y = ops.where(chosen("TranslateY"), TRANSLATE_MAX * height * level, zero)
    # x_in = A (x_out − c) + c + shift
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    tx = cx - (a * cx + b * cy) + shift_x
    ty = cy - (d * cx + e * cy) + shift_y
    return _matrices(a, b, tx, d, e, ty)


def _cutout(images, side, seed):
    """Set a side×side square at a uniform random centre per image to grey (may overhang)."""
    batch = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    top = keras.random.randint((batch,), 0, height, seed=seed) - side // 2
    left = keras.random.randint((batch,), 0, width, seed=seed) - side // 2
    rows = ops.arange(height, dtype="int32")[None, :]
    cols = ops.arange(width, dtype="int32")[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    inside = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return ops.where(inside, GREY, images)


# ---------------------------------------------------------------------------- strong


class _Groups:
    """One RandAugment layer's ops, dealt to the batch in equal groups.

    The batch fills k·S slots (S = ⌈B/k⌉; slot p holds image order[p mod B], so the last
    k·S − B slots repeat images whose copies are dropped), slot p joins group p mod k (so
    the real images split B/k ± 1 per group), and group g gets op position
    (g + shift) mod k. With `order` a uniform permutation and `shift` uniform on 0..k−1,
    image i's op position is uniform on 0..k−1.
    """

    def __init__(self, batch, k, seed):
        self.k = k
        self.size = (batch + k - 1) // k
        slots = k * self.size
        order = ops.argsort(keras.random.uniform((batch,), seed=seed))
        self.shift = keras.random.randint((), 0, k, seed=seed)
        self.slot_of = ops.argsort(order)  # image i sits (first) in slot slot_of[i]
        self.index = ops.take(order, ops.arange(slots) % batch)  # image in each slot
        slot_pick = (ops.arange(slots) % k + self.shift) % k
        self.pick = ops.take(slot_pick, self.slot_of)  # (B,) op position of each image

    def apply(self, images, functions, fraction, level):
        """functions[j](images, fraction, level) for op position j (None: leave as is), each
        on its own group; returns the batch in its original order."""
        height, width, channels = images.shape[1:]
        k, size = self.k, self.size

        def by_group(values):  # (B, ...) → (k, S, ...): slot s·k + g is [g, s]
            values = ops.take(values, self.index, axis=0)
            return ops.swapaxes(ops.reshape(values, (size, k) + tuple(values.shape[1:])), 0, 1)

        slots, fraction, level = by_group(images), by_group(fraction), by_group(level)
        by_position = []
        for position, function in enumerate(functions):
            group = ops.reshape((position - self.shift) % k, (1,))
            take = lambda values: ops.take(values, group, axis=0)[0]  # noqa: E731
            # None (Identity, a geometric op): this layer leaves the group's pixels alone.
            by_position.append(take(slots) if function is None
                               else function(take(slots), take(fraction), take(level)))
        # Group g holds op position (g + shift) mod k.
        out = ops.take(ops.stack(by_position), (ops.arange(k) + self.shift) % k, axis=0)
        out = ops.reshape(ops.swapaxes(out, 0, 1), (-1, height, width, channels))
        return ops.take(out, self.slot_of, axis=0)


def strong(
    images,
    seed,
    *,
    num_ops=2,
    magnitude=9,
    random_magnitude=False,
    cutout=0.0,
    op_names=OP_NAMES,
    return_ops=False,
):
    """RandAugment (Cubuk et al. 2020) with the ops, signs and magnitudes drawn per image.

    Each of `num_ops` layers picks, per image, one op uniformly (with replacement) from
    `op_names` (default: all 14 of `OP_NAMES`). Magnitude M ∈ [0, 10] maps to:

        Identity, AutoContrast, Equalize   no magnitude
        Rotate                             ±30° · M/10 about the centre
        Solarize                           invert pixels ≥ 256 · (1 − M/10)
        Color, Contrast, Brightness,
        Sharpness                          factor 1 ± 0.9 · M/10 (PIL ImageEnhance)
        Posterize                          keep 8 − round(4 · M/10) bits
        ShearX, ShearY                     shear ±0.3 · M/10 about the centre
        TranslateX, TranslateY             ±0.3 · M/10 of the side (FixMatch's range)

    Signed ops take a random sign per image (the paper: fixed magnitude, random sign).
    `random_magnitude=True` draws M per image and layer uniformly in [0, magnitude]
    (FixMatch's variant). `cutout` > 0 then greys a square of side cutout · min(H, W) at a
    random centre per image (FixMatch uses 0.5 with its strong augmentation).

    Design: each layer deals its ops out like cards (`_Groups`): a random permutation splits
    the batch into len(op_names) equal groups and a random rotation gives each group one op,
    so every image's op is still uniform over `op_names`, drawn afresh per layer, but each
    colour op runs on its own group (B/14 images) instead of on the whole batch under a mask
    (RandAugment's share of the teacher's train step: 3.8x less time on TensorFlow
    bfloat16, 1.8x on torch; benchmarks/randaugment.py, docs/benchmarks.md). The
    images of one batch are no longer independent in their ops: a batch of 64 holds each op
    4 or 5 times. The geometric ops of all layers compose into ONE affine map per image, applied
    AFTER the colour ops in a single bilinear resampling with grey (128) fill: one blur
    instead of one per op. This approximates the sequential order: the two commute except
    at fill pixels (which the statistics of AutoContrast, Equalize and Contrast would have
    counted) and up to interpolation for the non-linear ops (Solarize, Posterize).

    Returns the images, or `(images, op_indices)` with `return_ops=True`: int32 B×num_ops
    indices into `OP_NAMES`.
    """
    _check(0.0 <= magnitude <= MAX_MAGNITUDE, f"magnitude must be in [0, 10], got {magnitude}")
    _check(int(num_ops) == num_ops >= 0, f"num_ops must be a whole number >= 0, got {num_ops}")
    _check(0.0 <= cutout <= 1.0, f"cutout must be a fraction in [0, 1], got {cutout}")
    unknown = sorted(set(op_names) - set(OP_NAMES))
    _check(not unknown, f"unknown RandAugment ops {unknown}; choose from {OP_NAMES}")
    _check(len(op_names) > 0, "op_names is empty: name at least one op, e.g. ('Identity',)")
    images = _as_float(images)
    seed = _seed_generator(seed)
    batch = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    candidates = ops.convert_to_tensor([OP_NAMES.index(n) for n in op_names], dtype="int32")
    colour_ops = [n for n in op_names if n in COLOUR_OPS]
    has_geometry = any(n in GEOMETRIC_OPS for n in op_names)

    chosen_ops = []
    geometry = _identity(batch)
    for _ in range(num_ops):
        groups = _Groups(batch, len(op_names), seed)
        op = ops.take(candidates, groups.pick)
        fraction = ops.full((batch,), magnitude / MAX_MAGNITUDE)
        if random_magnitude:
            fraction = fraction * keras.random.uniform((batch,), seed=seed)
        level = ops.where(_coin(batch, seed), -fraction, fraction)
        if colour_ops:
            images = groups.apply(images, [COLOUR_OPS.get(n) for n in op_names], fraction, level)
        if has_geometry:
            geometry = ops.matmul(geometry, _geometry(op, level, height, width))
        chosen_ops.append(op)

    if has_geometry and num_ops > 0:
        images = _resample(images, _transforms(geometry), fill_mode="constant", fill_value=GREY)
    side = round(cutout * min(height, width))
    if side > 0:
        images = _cutout(images, side, seed)
    images = _clip(images)
    if return_ops:
        if not chosen_ops:
            return images, ops.zeros((batch, 0), dtype="int32")
        return images, ops.stack(chosen_ops, axis=1)
    return images
