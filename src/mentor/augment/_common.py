"""The pieces every augmentation shares: the pixel range and grey fill, seeding, per-image
broadcasting and coins, 3×3 affine maps, and `_resample`, one bilinear resampling of a
whole batch. A resampling takes per image the map from OUTPUT pixel coordinates (x =
column, y = row, pixel centres at integers) to INPUT coordinates, as
`keras.ops.image.affine_transform` does; here those maps are 3×3 matrices, and doing T1
then T2 samples at M1 @ M2.
"""

import keras
import numpy as np
from keras import ops

from mentor.errors import MentorError

MAX_PIXEL = 255.0
GREY = 128.0  # fill of RandAugment's geometric ops and of cutout (FixMatch, PIL's fillcolor)


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


def _reflect(index, size):
    """Fold integer indices into [0, size) as np.pad(mode="reflect"): ... 2 1 | 0 1 2 ... ."""
    if size == 1:
        return ops.zeros_like(index)
    period = 2 * (size - 1)
    return ops.abs(ops.mod(index + size - 1, period) - (size - 1))
