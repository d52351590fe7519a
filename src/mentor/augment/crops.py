"""MixUp and the crops of the distillation recipe: `mixup` (uniform weight, partner a
permutation of the batch), `inception_crop` (random area and aspect per image, resampled in
one affine map), `central_crop` (the deterministic test-time view) and `resize` (a view
brought to another model's input side).
"""

import math

import keras
from keras import ops

from mentor.augment._common import (
    _as_float,
    _check,
    _clip,
    _coin,
    _matrices,
    _per_image,
    _resample,
    _seed_generator,
    _transforms,
)

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


def resize(images, size):
    """Images resized to size×size on the device: bilinear, antialiased when shrinking (a
    triangle filter as wide as the scale factor; plain bilinear when growing), clipped to
    0..255; the images themselves when they already have that size. The same numbers on
    torch, JAX and TensorFlow (keras.ops.image.resize). Growing skips the antialiasing
    path, which changes nothing there but costs torch several times the plain kernel."""
    images = _as_float(images)
    height, width = images.shape[1], images.shape[2]
    if (height, width) == (size, size):
        return images
    shrinking = height is None or width is None or size < max(height, width)
    return _clip(ops.image.resize(images, (size, size), interpolation="bilinear",
                                  antialias=shrinking))


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
