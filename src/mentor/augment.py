"""Image augmentation for the recipes: weak, strong (RandAugment), MixUp, inception crop.

Everything here is batched and draws its randomness PER IMAGE, and is written with
`keras.ops` / `keras.random` only, so it runs inside a train step on torch, JAX and
TensorFlow. Keras 3.15's own layers fall short of the papers, as measured here:
`RandAugment` picks its ops once per batch, draws one sign only and, on torch, its
brightness edits the input in place (values reach 460-980); `RandomCrop` draws one offset
per batch; `MixUp` draws from Beta(0.2, 0.2).

Conventions: images are float32 B×H×W×C (C = 1 or 3, channels last) with pixels in
[0, 255]; every function returns that range and dtype. `seed` is a
`keras.random.SeedGenerator` (an int makes a fresh one: same int, same output).

Resampling (strong's geometry, inception crop) takes per image the map from OUTPUT pixel
coordinates (x = column, y = row, pixel centres at integers) to INPUT coordinates, as
`keras.ops.image.affine_transform` does. Here those maps are 3×3 matrices; doing T1 then
T2 samples at M1 @ M2.
"""

import math

import keras
import numpy as np
from keras import ops

from mentor.errors import MentorError

MAX_PIXEL = 255.0
GREY = 128.0  # fill of RandAugment's geometric ops and of cutout (FixMatch, PIL's fillcolor)

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


# ---------------------------------------------------------------------------- helpers


def _seed_generator(seed):
    # An int passed to several keras.random calls would give each the SAME stream.
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    return keras.random.SeedGenerator(seed)


def _as_float(images):
    return ops.cast(images, "float32")


def _clip(images):
    return ops.clip(images, 0.0, MAX_PIXEL)


def _per_image(values):
    """(B,) → (B, 1, 1, 1), to broadcast against images."""
    return ops.reshape(values, (-1, 1, 1, 1))


def _coin(batch, seed):
    """(B,) booleans, each True with probability 1/2."""
    return keras.random.uniform((batch,), seed=seed) < 0.5


def _matrices(a, b, tx, d, e, ty):
    """Per-image 3×3 affine maps [[a, b, tx], [d, e, ty], [0, 0, 1]] from (B,) entries."""
    zero = ops.zeros_like(a)
    one = ops.ones_like(a)
    rows = ops.stack([a, b, tx, d, e, ty, zero, zero, one], axis=-1)
    return ops.reshape(rows, (-1, 3, 3))


def _identity(batch):
    one, zero = ops.ones((batch,)), ops.zeros((batch,))
    return _matrices(one, zero, zero, zero, one, zero)


def _transforms(matrices):
    """B×3×3 affine maps → B×8 [a0, a1, a2, b0, b1, b2, c0, c1] (the last row is 0 0 1)."""
    return ops.reshape(matrices, (-1, 9))[:, :8]


def _resample(images, transforms, *, fill_mode="constant", fill_value=0.0):
    """Bilinear resampling of B×H×W×C images, all at once, at B×8 transforms.

    Same convention and output as `keras.ops.image.affine_transform(images, transforms,
    interpolation="bilinear", fill_mode=...)` for fill_mode "constant" or "nearest": output
    pixel (x, y) reads input x_in = (a0·x + a1·y + a2) / k, y_in = (b0·x + b1·y + b2) / k,
    k = c0·x + c1·y + 1. With "constant", each of the four neighbours that falls outside
    the image counts as `fill_value`; with "nearest", as the closest edge pixel.

    Why not affine_transform: on torch it loops over the batch in Python, one image at a
    time (≈100 ms against ≈10 ms here at 192×32×32×3 on 2 CPU cores, and far worse when
    threads contend); here one grid and one gather serve the whole batch. (Its torch and
    JAX versions also skip the division by k.)
    """
    _check(fill_mode in ("constant", "nearest"), f"fill_mode {fill_mode!r} not supported")
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    # A border of fill (1 px before, 2 after) stands in for "outside", so no neighbour needs
    # a validity mask. Clamping points to [−1, W] × [−1, H] changes no sample (beyond, both
    # neighbours on that axis are fill already) and keeps every index inside the border.
    padded = ops.pad(images, [[0, 0], [1, 2], [1, 2], [0, 0]], constant_values=fill_value)
    padded_width, padded_pixels = width + 3, (height + 3) * (width + 3)
    if fill_mode == "constant":
        lowest, highest = -1.0, [width, height]
    else:  # the nearest edge pixel: keep the point on the image itself
        lowest, highest = 0.0, [width - 1, height - 1]

    # Constants built in numpy, and shapes chosen so that no op only inserts an axis: on
    # eager JAX every op compiles once per image shape.
    pixels = height * width
    rows, cols = np.divmod(np.arange(pixels), width)
    grid = np.stack([cols, rows, np.ones(pixels)]).astype("float32")[:, None, :, None]
    # Per neighbour (top-left, top-right, bottom-left, bottom-right): 1 − its offset along
    # x and y, and its place in the flattened padded image (+ padded_width + 1: the border).
    one_minus_offset = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], "float32")[:, :, None, None]
    neighbour = np.array([0, 1, padded_width, padded_width + 1], "int32")[:, None]
    neighbour = neighbour + padded_width + 1

    # Elementwise products, not a matmul: a TF32/bf16 matmul (GPU/TPU defaults) would move
    # sample points by hundredths of a pixel.
    transforms = ops.cast(transforms, "float32")
    matrices = ops.reshape(ops.pad(transforms, [[0, 0], [0, 1]], constant_values=1.0),
                           (-1, 3, 3, 1, 1, 1))
    mapped = ops.sum(matrices * grid, axis=2)  # (B, 3, 1, H·W, 1): x and y numerators, k
    points = ops.maximum(mapped[:, :2] / mapped[:, 2:], lowest)
    points = ops.minimum(points, np.reshape(np.array(highest, "float32"), (2, 1, 1, 1)))
    low = ops.floor(points)
    # Bilinear weight of a neighbour: the product over x and y of 1 − its distance to the
    # point, which is |1 − offset − f| with f = point − low and the offset 0 or 1.
    per_axis = ops.abs(ops.subtract(one_minus_offset, points - low))  # (B, 2, 4, H·W, 1)
    weights = ops.prod(per_axis, axis=1)
    step = np.reshape(np.array([1.0, padded_width], "float32"), (2, 1, 1, 1))
    corner = ops.sum(low * step, axis=(1, 4))  # (B, 1, H·W), whole numbers: exact
    # One gather of whole rows from a (B·padded pixels)×C table: on torch an embedding
    # lookup, several times faster than take_along_axis's elementwise gather.
    if images.shape[0] is None:  # a symbolic batch (TF graphs)
        starts = ops.arange(ops.shape(images)[0], dtype="int32")[:, None, None] * padded_pixels
    else:
        starts = np.arange(images.shape[0], dtype="int32")[:, None, None] * padded_pixels
    index = ops.add(ops.cast(corner, "int32"), starts + neighbour)  # (B, 4, H·W)
    values = ops.take(ops.reshape(padded, (-1, channels)), index, axis=0)  # (B, 4, H·W, C)
    sampled = ops.sum(values * weights, axis=1)
    return ops.reshape(sampled, (-1, height, width, channels))


def _check(condition, message):
    if not condition:
        raise MentorError(message)


# ---------------------------------------------------------------------------- weak


def _reflect(index, size):
    """Fold integer indices into [0, size) as np.pad(mode="reflect"): ... 2 1 | 0 1 2 ... ."""
    if size == 1:
        return ops.zeros_like(index)
    period = 2 * (size - 1)
    return ops.abs(ops.mod(index + size - 1, period) - (size - 1))


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


# ---------------------------------------------------------------------------- mixup


def mixup(images, seed, *, per_image=True):
    """MixUp with a uniform weight: mixed = λ · x + (1 − λ) · x[partner].

    λ ~ U(0, 1), i.e. Beta(1, 1), as function matching (Beyer et al. 2022) uses; Keras's
    `MixUp` defaults to Beta(0.2, 0.2). `per_image=True` draws λ per image;
    `per_image=False` draws one λ for the whole batch, as big_vision does. The partner is
    a random permutation of the batch.

    Returns `(mixed, weights, partner_index)`: weights (B,) float32 (all equal when
    per_image=False) and partner_index (B,) int32, to mix labels the same way.
    """
    images = _as_float(images)
    seed = _seed_generator(seed)
    batch = ops.shape(images)[0]
    weights = keras.random.uniform((batch,) if per_image else (1,), seed=seed)
    weights = ops.broadcast_to(weights, (batch,))
    partner = keras.random.shuffle(ops.arange(batch, dtype="int32"), seed=seed)
    lam = _per_image(weights)
    mixed = lam * images + (1.0 - lam) * ops.take(images, partner, axis=0)
    return _clip(mixed), weights, partner


# ---------------------------------------------------------------------------- crops


def _resize(images, shape):
    """Bilinear resize to shape (height, width), antialiased when shrinking; no-op if equal."""
    if tuple(images.shape[1:3]) == tuple(shape):
        return images
    return _clip(ops.image.resize(images, shape, interpolation="bilinear", antialias=True))


def inception_crop(
    images,
    seed,
    *,
    size=None,
    area=(0.05, 1.0),
    ratio=(3 / 4, 4 / 3),
    flip=True,
    return_boxes=False,
):
    """Inception-style random crop per image, resized to size×size, plus an optional flip.

    Per image: area fraction ~ U(area), aspect ratio (width/height in pixels) log-uniform
    in `ratio`, offset uniform over the positions that fit. A side longer than the image is
    clipped to it (no retries, unlike torchvision), which only shrinks the crop. The
    tolerance that leaves, on a square image with ratio[0] ≤ 1 ≤ ratio[1] (the default):
    the aspect stays within `ratio`, and the area fraction stays ≥ min(area[0], 1/r),
    r = max(ratio[1], 1/ratio[0]) (≥ 0.05 with the defaults). On a non-square image a
    clipped crop spans that axis, so its aspect may leave `ratio`.

    The crop is resampled bilinearly to the input size in one affine map (flip included),
    then resized to `size` × `size` (default: keep the input size) if that differs.

    Returns the images, or `(images, boxes)` with `return_boxes=True`: float32 B×4 boxes
    (top, left, height, width) in input pixels.
    """
    _check(0.0 < area[0] <= area[1] <= 1.0, f"area needs 0 < min <= max <= 1, got {area}")
    _check(0.0 < ratio[0] <= ratio[1], f"ratio must satisfy 0 < min <= max, got {ratio}")
    images = _as_float(images)
    seed = _seed_generator(seed)
    batch = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]

    fraction = keras.random.uniform((batch,), area[0], area[1], seed=seed)
    log_aspect = keras.random.uniform((batch,), math.log(ratio[0]), math.log(ratio[1]), seed=seed)
    aspect = ops.exp(log_aspect)
    crop_area = fraction * float(height * width)
    crop_w = ops.minimum(ops.sqrt(crop_area * aspect), float(width))
    crop_h = ops.minimum(ops.sqrt(crop_area / aspect), float(height))
    left = keras.random.uniform((batch,), seed=seed) * (width - crop_w)
    top = keras.random.uniform((batch,), seed=seed) * (height - crop_h)

    # Output pixel centre x + ½ lands at left + (x + ½) · crop_w / width (pixel edges at
    # integers), i.e. input index left + (x + ½) · scale − ½; a flip reads x as
    # width − 1 − x.
    scale_x, scale_y = crop_w / width, crop_h / height
    mirrored = _coin(batch, seed) if flip else ops.zeros((batch,), dtype="bool")
    a = ops.where(mirrored, -scale_x, scale_x)
    tx = left + 0.5 * scale_x - 0.5 + ops.where(mirrored, scale_x * (width - 1), 0.0)
    ty = top + 0.5 * scale_y - 0.5
    zero = ops.zeros_like(a)
    matrices = _matrices(a, zero, tx, zero, scale_y, ty)
    # "nearest" fill: samples up to half an output pixel outside the crop must not see grey.
    cropped = _resample(images, _transforms(matrices), fill_mode="nearest")
    cropped = _resize(_clip(cropped), (size, size) if size else (height, width))
    if return_boxes:
        return cropped, ops.stack([top, left, crop_h, crop_w], axis=1)
    return cropped


def central_crop(images, fraction=0.875, size=None):
    """Deterministic centre crop of `fraction` of each side, resized to size×size.

    The crop is whole pixels, round(fraction · side) centred (as tf.image.central_crop),
    so no interpolation happens unless `size` (default: the input size) differs. The
    test-time view of the distillation presets: 0.875 then resize.
    """
    _check(0.0 < fraction <= 1.0, f"fraction must be in (0, 1], got {fraction}")
    images = _as_float(images)
    height, width = images.shape[1], images.shape[2]
    crop_h, crop_w = max(1, round(fraction * height)), max(1, round(fraction * width))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    cropped = images[:, top : top + crop_h, left : left + crop_w, :]
    return _resize(cropped, (size, size) if size else (height, width))


# ---------------------------------------------------------------------------- layers


class _Augment(keras.layers.Layer):
    """Random only when `training=True`; otherwise it passes float32 images through."""

    def __init__(self, seed=None, **kwargs):
        # float32 under a mixed-precision policy too: 0..255 pixels interpolated in bfloat16
        # keep 8 significant bits.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = seed
        # An attribute, so Keras tracks its state (a variable on JAX, saved with the model).
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        images = _as_float(inputs)
        return self.augment(images) if training else self.infer(images)

    def infer(self, images):
        return images

    def compute_output_spec(self, inputs, training=False):
        shape = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(shape, dtype="float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="mentor")
class WeakAugment(_Augment):
    """`weak`: flip and pad-and-crop translation, per image (FixMatch's weak view)."""

    def __init__(self, flip=True, translate=0.125, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.flip = flip
        self.translate = translate

    def augment(self, images):
        return weak(images, self.seed_generator, flip=self.flip, translate=self.translate)

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "translate": self.translate}


@keras.saving.register_keras_serializable(package="mentor")
class StrongAugment(_Augment):
    """`weak` geometry then `strong` (RandAugment, optional cutout): FixMatch's strong view."""

    def __init__(
        self,
        num_ops=2,
        magnitude=9,
        random_magnitude=False,
        cutout=0.0,
        flip=True,
        translate=0.125,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.random_magnitude = random_magnitude
        self.cutout = cutout
        self.flip = flip
        self.translate = translate

    def augment(self, images):
        images = weak(images, self.seed_generator, flip=self.flip, translate=self.translate)
        return strong(
            images,
            self.seed_generator,
            num_ops=self.num_ops,
            magnitude=self.magnitude,
            random_magnitude=self.random_magnitude,
            cutout=self.cutout,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_ops": self.num_ops,
            "magnitude": self.magnitude,
            "random_magnitude": self.random_magnitude,
            "cutout": self.cutout,
            "flip": self.flip,
            "translate": self.translate,
        }


@keras.saving.register_keras_serializable(package="mentor")
class InceptionCrop(_Augment):
    """`inception_crop` while training. At inference it only resizes to `size` (when set),
    so both modes give the same shape; use `central_crop` for the distillation test view."""

    def __init__(self, size=None, area=(0.05, 1.0), ratio=(3 / 4, 4 / 3), flip=True, seed=None,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.size = size
        self.area = tuple(area)
        self.ratio = tuple(ratio)
        self.flip = flip

    def augment(self, images):
        return inception_crop(
            images, self.seed_generator, size=self.size, area=self.area, ratio=self.ratio,
            flip=self.flip,
        )

    def infer(self, images):
        return _resize(images, (self.size, self.size)) if self.size else images

    def compute_output_shape(self, input_shape):
        if self.size is None:
            return tuple(input_shape)
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "area": list(self.area),
            "ratio": list(self.ratio),
            "flip": self.flip,
        }


# ---------------------------------------------------------------------------- figure


def sample_grid(views, path, *, n=8, title=None):
    """Save a PNG with one row per named view (e.g. "clean", "weak", "strong") of n images.

    `views` maps a row label to images N×H×W×C (or N×H×W), uint8 or floats in [0, 255];
    one-channel images show in grey. Uses matplotlib's Agg canvas (no display). Returns
    `path`.
    """
    from matplotlib.figure import Figure

    _check(views, "sample_grid needs at least one view")
    cell = 1.2  # inches per image: a 32 px image stays legible, 8 columns fit a page
    label_width = 1.0  # inches for the row labels
    title_height = 0.4 if title else 0.0
    rows = list(views.items())
    figure = Figure(figsize=(label_width + n * cell, title_height + len(rows) * cell))
    axes = figure.subplots(len(rows), n, squeeze=False)
    for (name, images), row in zip(rows, axes):
        images = np.clip(np.round(ops.convert_to_numpy(images)), 0, 255).astype(np.uint8)
        for i, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i < len(images):
                image = images[i]
                if image.ndim == 3 and image.shape[-1] == 1:
                    image = image[..., 0]
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=11)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    return path
