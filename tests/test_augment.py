"""Tests of mentor.augment: output contract, per-image randomness, ops against hand numbers
and against PIL (the reference RandAugment implementations are written on PIL)."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import as_numpy
from keras import ops
from PIL import Image, ImageEnhance, ImageOps

from mentor import augment
from mentor.augment._common import _resample
from mentor.augment.randaugment import _Groups
from mentor.errors import MentorError
from mentor.report import sample_grid

neutral = pytest.mark.neutral


def integer_images(shape, seed=0):
    """Random whole-valued pixels, as decoded images are."""
    return np.random.default_rng(seed).integers(0, 256, shape).astype("float32")


def random_ops(images, seed):
    """Every randomised function, returning images only."""
    return {
        "weak": lambda: augment.weak(images, seed),
        "strong": lambda: augment.strong(images, seed, num_ops=3, cutout=0.5),
        "strong_random_magnitude": lambda: augment.strong(images, seed, random_magnitude=True),
        "mixup": lambda: augment.mixup(images, seed)[0],
        "inception_crop": lambda: augment.inception_crop(images, seed),
    }


# ---------------------------------------------------------------------------- contract


@neutral
@pytest.mark.parametrize("channels", [1, 3])
def test_every_function_keeps_shape_dtype_and_range(channels):
    images = integer_images((6, 20, 28, channels))  # non-square: catches swapped axes
    outputs = {name: f() for name, f in random_ops(images, 1).items()}
    outputs["central_crop"] = augment.central_crop(images)
    for name, out in outputs.items():
        out = as_numpy(out)
        assert out.shape == images.shape, name
        assert out.dtype == np.float32, name
        assert out.min() >= 0 and out.max() <= 255, name
    assert augment.inception_crop(images, 1, size=16).shape == (6, 16, 16, channels)
    assert augment.central_crop(images, size=16).shape == (6, 16, 16, channels)


@neutral
def test_uint8_input_is_accepted():
    images = integer_images((4, 16, 16, 3)).astype(np.uint8)
    for name, f in random_ops(images, 1).items():
        assert as_numpy(f()).dtype == np.float32, name


@neutral
def test_same_seed_same_output_different_seed_differs():
    images = integer_images((8, 16, 16, 3))
    first, again, other = random_ops(images, 5), random_ops(images, 5), random_ops(images, 6)
    for name in first:
        a, b, c = as_numpy(first[name]()), as_numpy(again[name]()), as_numpy(other[name]())
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert not np.array_equal(a, c), name


@neutral
def test_bad_arguments_raise_mentor_error():
    images = integer_images((2, 8, 8, 3))
    with pytest.raises(MentorError, match="magnitude"):
        augment.strong(images, 0, magnitude=11)
    with pytest.raises(MentorError, match="unknown"):
        augment.strong(images, 0, op_names=("Invert",))
    with pytest.raises(MentorError, match="area"):
        augment.inception_crop(images, 0, area=(0.0, 1.0))


# ---------------------------------------------------------------------------- resampling


# Non-square (catches swapped axes), and the shape the contract test above already sends
# through the resampler: on eager JAX each op compiles once per shape.
RESAMPLE_SHAPE = (6, 20, 28)  # batch, height, width


def resample_images(channels, seed=0):
    """Non-integer pixels: an off-by-a-fraction sample point shows."""
    shape = (*RESAMPLE_SHAPE, channels)
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def random_transforms(seed):
    """B×8 affine maps mixing rotation (±60°), shear, scaling (0.5-1.6) and translation
    (up to a third of the side): many samples land near or beyond the border."""
    batch, height, width = RESAMPLE_SHAPE
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-np.pi / 3, np.pi / 3, batch)
    shear = rng.uniform(-0.5, 0.5, batch)
    scale_x, scale_y = rng.uniform(0.5, 1.6, (2, batch))
    transforms = np.zeros((batch, 8), "float32")
    transforms[:, 0] = scale_x * np.cos(angle)
    transforms[:, 1] = -np.sin(angle) + shear
    transforms[:, 2] = rng.uniform(-width / 3, width / 3, batch)
    transforms[:, 3] = np.sin(angle)
    transforms[:, 4] = scale_y * np.cos(angle)
    transforms[:, 5] = rng.uniform(-height / 3, height / 3, batch)
    return transforms


def keras_affine(images, transforms, fill_mode="constant"):
    return as_numpy(ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                               fill_mode=fill_mode, fill_value=augment.GREY))


@neutral
@pytest.mark.parametrize("fill_mode", ["constant", "nearest"])
@pytest.mark.parametrize("channels", [1, 3])
def test_resample_matches_keras_affine_transform(channels, fill_mode):
    images, transforms = resample_images(channels, seed=channels), random_transforms(channels)
    out = _resample(images, transforms, fill_mode=fill_mode, fill_value=augment.GREY)
    expected = keras_affine(images, transforms, fill_mode)
    np.testing.assert_allclose(as_numpy(out), expected, atol=1e-3)


@neutral
def test_resample_identity_returns_the_input_exactly():
    images = resample_images(3)
    identity = np.tile(np.array([1, 0, 0, 0, 1, 0, 0, 0], "float32"), (len(images), 1))
    out = _resample(images, identity, fill_value=augment.GREY)
    np.testing.assert_array_equal(as_numpy(out), images)


@neutral
def test_resample_by_whole_pixels_is_a_shift_with_fill():
    images = resample_images(3)
    batch, height, width = RESAMPLE_SHAPE
    # Output (x, y) reads input (x + dx, y + dy), with |dx|, |dy| up to 5 px.
    shifts = np.random.default_rng(1).integers(-5, 6, (batch, 2))
    transforms = np.tile(np.array([1, 0, 0, 0, 1, 0, 0, 0], "float32"), (batch, 1))
    transforms[:, 2], transforms[:, 5] = shifts[:, 0], shifts[:, 1]
    padded = np.pad(images, ((0, 0), (5, 5), (5, 5), (0, 0)), constant_values=7.0)
    expected = np.stack([padded[i, 5 + dy : 5 + dy + height, 5 + dx : 5 + dx + width]
                         for i, (dx, dy) in enumerate(shifts)])
    out = _resample(images, transforms, fill_value=7.0)
    np.testing.assert_array_equal(as_numpy(out), expected)


@neutral
def test_resample_divides_by_the_projective_term():
    # k = c1·y + 1 is constant along a row, so output row y is that row of a plain scaling
    # by 1/k. (Keras's affine_transform on torch and JAX does not divide by k.)
    batch, height, _ = RESAMPLE_SHAPE
    images = np.repeat(resample_images(1, seed=2)[:1], batch, axis=0)
    c1 = 0.05
    projective = np.tile(np.array([1, 0, 0, 0, 1, 0, 0, c1], "float32"), (batch, 1))
    out = as_numpy(_resample(images, projective, fill_value=augment.GREY))
    rows = np.linspace(0, height - 1, batch).round().astype(int)  # one image per row checked
    scalings = np.array([[1 / (c1 * y + 1), 0, 0, 0, 1 / (c1 * y + 1), 0, 0, 0]
                         for y in rows], "float32")
    expected = keras_affine(images, scalings)
    for i, y in enumerate(rows):
        np.testing.assert_allclose(out[0, y], expected[i, y], atol=1e-3)


# ---------------------------------------------------------------------------- weak


@neutral
def test_weak_draws_per_image():
    images = np.repeat(integer_images((1, 32, 32, 3)), 64, axis=0)
    out = as_numpy(augment.weak(images, 0))
    distinct = {o.tobytes() for o in out}
    # 9 × 9 shifts × 2 flips = 162 outcomes; one draw per batch would give 1.
    assert len(distinct) >= 20


@neutral
def test_weak_without_flip_or_translation_is_identity():
    images = integer_images((4, 12, 10, 1))
    out = augment.weak(images, 0, flip=False, translate=0.0)
    np.testing.assert_array_equal(as_numpy(out), images)


def reflect_pad_crops(image, max_dy, max_dx):
    """Every FixMatch pad-and-crop of one H×W×C image (np.pad reflect), by (flip, dy, dx)."""
    crops = {}
    height, width = image.shape[:2]
    for flipped in (False, True):
        base = image[:, ::-1] if flipped else image
        padded = np.pad(base, ((max_dy, max_dy), (max_dx, max_dx), (0, 0)), mode="reflect")
        for dy in range(-max_dy, max_dy + 1):
            for dx in range(-max_dx, max_dx + 1):
                top, left = max_dy + dy, max_dx + dx
                crops[(flipped, dy, dx)] = padded[top : top + height, left : left + width]
    return crops


@neutral
@pytest.mark.parametrize("channels", [1, 3])
def test_weak_is_a_reflect_padded_shift_by_whole_pixels(channels):
    # 16 × 12 distinct values: any wrong shift, fill or flip shows.
    pattern = np.arange(16 * 12, dtype="float32").reshape(16, 12, 1)
    pattern = np.repeat(pattern, channels, axis=-1)
    out = as_numpy(augment.weak(np.repeat(pattern[None], 64, axis=0), 3, translate=0.25))
    crops = reflect_pad_crops(pattern, max_dy=4, max_dx=3)  # round(0.25 · 16), round(0.25 · 12)
    seen = set()
    for image in out:
        matches = [key for key, crop in crops.items() if np.array_equal(image, crop)]
        assert matches, "output is not a reflect-padded whole-pixel shift of the input"
        seen.update(matches)
    assert {flipped for flipped, _, _ in seen} == {False, True}
    assert max(abs(dy) for _, dy, _ in seen) == 4
    assert max(abs(dx) for _, _, dx in seen) == 3


# ---------------------------------------------------------------------------- strong


@neutral
def test_strong_draws_ops_per_image():
    images = np.repeat(integer_images((1, 16, 16, 3)), 64, axis=0)
    out, op_indices = augment.strong(images, 0, return_ops=True)
    op_indices = as_numpy(op_indices)
    assert op_indices.shape == (64, 2)
    assert op_indices.min() >= 0 and op_indices.max() < len(augment.OP_NAMES)
    assert len(set(op_indices[:, 0])) >= 5  # one draw per batch (Keras) gives 1
    assert len({o.tobytes() for o in as_numpy(out)}) >= 20


@neutral
def test_strong_ops_are_uniform_per_image_and_balanced_per_batch():
    # Ops are dealt in groups (_Groups): each image's op must still be uniform and
    # independent of its position in the batch; each batch of 13 holds every one of 3 ops
    # 4 or 5 times. 1200 batches: a frequency's standard error is 0.0136.
    seed = keras.random.SeedGenerator(0)
    picks = np.stack([as_numpy(_Groups(13, 3, seed).pick) for _ in range(1200)])
    assert picks.shape == (1200, 13) and picks.min() == 0 and picks.max() == 2
    frequencies = np.stack([(picks == j).mean(axis=0) for j in range(3)])  # op × position
    np.testing.assert_allclose(frequencies, 1 / 3, atol=0.06)
    counts = np.stack([(picks == j).sum(axis=1) for j in range(3)], axis=1)
    assert set(np.unique(counts)) == {4, 5}
    # Two images of a batch share an op with probability 44/156 = 0.282 (of 13·12 ordered
    # slot pairs, 5·4 + 4·3 + 4·3 fall in one group), not the independent 1/3; the same for
    # every pair, so no two positions are tied together.
    same = (picks[:, :, None] == picks[:, None, :]).mean(axis=0)[~np.eye(13, dtype=bool)]
    np.testing.assert_allclose(same, 44 / 156, atol=0.06)


@neutral
def test_strong_gives_each_image_the_op_it_drew():
    # 13 images, 5 ops: 5 groups of 3 in 15 slots, 2 of them copies; every image must come back
    # in its place with exactly its own op applied (the unsigned ops need no sign to check).
    names = ("Identity", "AutoContrast", "Equalize", "Solarize", "Posterize")
    images = integer_images((13, 16, 16, 3), seed=5)
    out, op_indices = augment.strong(images, 3, num_ops=1, magnitude=5, op_names=names,
                                     return_ops=True)
    out, op_indices = as_numpy(out), as_numpy(op_indices)[:, 0]
    assert len(set(op_indices)) == 5
    for image, result, index in zip(images, out, op_indices):
        expected = only(augment.OP_NAMES[index], image[None], 5)[0]
        np.testing.assert_allclose(result, expected, atol=1e-4)


@neutral
def test_strong_with_identity_only_changes_nothing():
    images = integer_images((8, 16, 16, 3))
    out, op_indices = augment.strong(images, 0, op_names=("Identity",), return_ops=True)
    np.testing.assert_array_equal(as_numpy(out), images)
    assert (as_numpy(op_indices) == 0).all()


@neutral
def test_strong_at_magnitude_zero_changes_nothing():
    # AutoContrast and Equalize take no magnitude; every other op is the identity at M = 0.
    op_names = tuple(n for n in augment.OP_NAMES if n not in ("AutoContrast", "Equalize"))
    images = integer_images((16, 16, 16, 3))
    out = augment.strong(images, 0, num_ops=3, magnitude=0, op_names=op_names)
    np.testing.assert_allclose(as_numpy(out), images, atol=1e-3)


def only(name, images, magnitude, seed=0, **kwargs):
    return as_numpy(augment.strong(images, seed, num_ops=1, magnitude=magnitude,
                                   op_names=(name,), **kwargs))


PIL_OPS = {  # at magnitude 5: Solarize threshold 128, Posterize keeps 6 bits
    "Equalize": (ImageOps.equalize, 0.0),
    "AutoContrast": (ImageOps.autocontrast, 1.0),  # PIL truncates its lookup table
    "Solarize": (lambda image: ImageOps.solarize(image, 128), 0.0),
    "Posterize": (lambda image: ImageOps.posterize(image, 6), 0.0),
}


@neutral
@pytest.mark.parametrize("name", sorted(PIL_OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_unsigned_ops_match_pil(name, channels):
    pil_op, tolerance = PIL_OPS[name]
    images = integer_images((4, 32, 32, channels), seed=channels)
    expected = np.stack([through_pil(pil_op, image) for image in images])
    np.testing.assert_allclose(only(name, images, 5), expected, atol=tolerance)


def through_pil(pil_op, image):
    pixels = image.astype(np.uint8)
    pil_image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    return np.asarray(pil_op(pil_image), dtype="float32").reshape(image.shape)


@neutral
@pytest.mark.parametrize("name", ["Color", "Contrast", "Brightness", "Sharpness"])
def test_enhance_ops_match_pil_with_either_sign(name):
    images = integer_images((16, 16, 16, 3), seed=4)
    out = only(name, images, 10)
    enhancer = getattr(ImageEnhance, name)
    signs = []
    for image, result in zip(images, out):
        # factor 1 ± 0.9 at M = 10; PIL rounds its grey image and its result to integers.
        errors = [np.abs(result - through_pil(lambda p: enhancer(p).enhance(f), image)).max()
                  for f in (1.9, 0.1)]
        assert min(errors) <= 2.0, (name, errors)
        signs.append(int(np.argmin(errors)))
    assert set(signs) == {0, 1}


@neutral
def test_equalize_spreads_two_grey_levels_to_the_ends():
    images = np.full((2, 32, 32, 1), 50.0, dtype="float32")
    images[:, 16:] = 100.0
    out = only("Equalize", images, 0)
    # PIL: step = (1024 − 512) // 255 = 2; 50 → (0 + 1) // 2 = 0;
    # 100 → (512 + 1) // 2 = 256, clipped to 255.
    assert set(np.unique(out)) == {0.0, 255.0}
    assert (out[:, :16] == 0).all() and (out[:, 16:] == 255).all()


@neutral
def test_equalize_leaves_tiny_images_alone():
    images = integer_images((2, 4, 4, 3))  # 16 pixels: PIL's step is 0
    np.testing.assert_array_equal(only("Equalize", images, 0), images)


@neutral
def test_solarize_inverts_at_and_above_the_threshold():
    images = np.array([0, 100, 127, 128, 200, 255], "float32").reshape(1, 1, 6, 1)
    np.testing.assert_array_equal(only("Solarize", images, 5).ravel(), [0, 100, 127, 127, 55, 0])
    np.testing.assert_array_equal(only("Solarize", images, 10).ravel(), 255 - images.ravel())


@neutral
def test_posterize_keeps_four_bits_at_magnitude_ten():
    images = np.array([255, 17, 15, 128], "float32").reshape(1, 1, 4, 1)
    np.testing.assert_array_equal(only("Posterize", images, 10).ravel(), [240, 16, 0, 128])


@neutral
def test_brightness_takes_either_sign_per_image():
    images = np.full((32, 4, 4, 3), 100.0, dtype="float32")
    values = only("Brightness", images, 10)[:, 0, 0, 0]
    # factor 1 ± 0.9 at M = 10; Keras's RandAugment would only brighten.
    np.testing.assert_allclose(sorted(set(np.round(values, 3))), [10.0, 190.0])


@neutral
def test_random_magnitude_draws_strengths_per_image():
    images = np.full((64, 4, 4, 3), 100.0, dtype="float32")
    values = only("Brightness", images, 10, random_magnitude=True)[:, 0, 0, 0]
    assert values.min() >= 10 - 1e-3 and values.max() <= 190 + 1e-3
    assert len(np.unique(values)) >= 60


@neutral
@pytest.mark.parametrize("name", ["TranslateX", "TranslateY"])
def test_translate_moves_three_tenths_of_the_side_with_grey_fill(name):
    pattern = np.arange(100, dtype="float32").reshape(1, 10, 10, 1) + 1
    out = only(name, np.repeat(pattern, 16, axis=0), 10)
    axis = 2 if name == "TranslateX" else 1
    expected = []
    for shift in (3, -3):  # 0.3 · 10 px at M = 10
        moved = np.roll(pattern, shift, axis=axis)
        edge = [slice(None)] * 4
        edge[axis] = slice(0, 3) if shift > 0 else slice(-3, None)
        moved[tuple(edge)] = augment.GREY
        expected.append(moved[0])
    matched = [next(i for i, e in enumerate(expected) if np.allclose(o, e, atol=1e-3)) for o in out]
    assert set(matched) == {0, 1}


@neutral
@pytest.mark.parametrize("name", augment.OP_NAMES)
def test_no_op_leaves_the_pixel_range(name):
    # Non-integer pixels at the range ends: where in-place edits or missing clips show.
    images = np.random.default_rng(1).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    images[:, 0, 0] = 0.0
    images[:, 0, 1] = 255.0
    out = only(name, images, 10)
    assert np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 255


@neutral
def test_cutout_greys_one_square_per_image():
    images = np.zeros((32, 16, 16, 1), dtype="float32")
    out = as_numpy(augment.strong(images, 0, op_names=("Identity",), cutout=0.5))[..., 0]
    for image in out:
        rows, cols = np.nonzero(image == augment.GREY)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert height <= 8 and width <= 8  # side 0.5 · 16, cut where it overhangs
        assert len(rows) == height * width >= 16


# ---------------------------------------------------------------------------- mixup


@neutral
def test_mixup_weights_are_uniform_and_mixing_is_by_hand():
    images = integer_images((512, 2, 2, 3))
    mixed, weights, partner = (as_numpy(v) for v in augment.mixup(images, 0))
    assert weights.shape == (512,) and weights.min() < 0.1 and weights.max() > 0.9
    assert abs(weights.mean() - 0.5) < 0.05
    np.testing.assert_array_equal(np.sort(partner), np.arange(512))
    lam = weights[:, None, None, None]
    np.testing.assert_allclose(mixed, lam * images + (1 - lam) * images[partner], atol=1e-3)


@neutral
def test_mixup_per_batch_draws_one_weight():
    _, weights, _ = augment.mixup(integer_images((16, 2, 2, 1)), 0, per_image=False)
    assert len(np.unique(as_numpy(weights))) == 1


# ---------------------------------------------------------------------------- crops


@neutral
def test_inception_crop_boxes_respect_area_and_ratio():
    images = integer_images((64, 40, 40, 3))
    out, boxes = augment.inception_crop(images, 0, size=32, return_boxes=True)
    assert out.shape == (64, 32, 32, 3)
    top, left, height, width = as_numpy(boxes).T
    fraction = height * width / (40 * 40)
    # Clipping a side only shrinks the crop; on a square image the aspect stays in range.
    assert fraction.min() >= 0.05 - 1e-5 and fraction.max() <= 1 + 1e-5
    aspect = width / height
    assert aspect.min() >= 3 / 4 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    assert top.min() >= 0 and left.min() >= 0
    assert (top + height).max() <= 40 + 1e-4 and (left + width).max() <= 40 + 1e-4
    assert fraction.max() - fraction.min() > 0.8  # drawn per image


@neutral
def test_inception_crop_samples_inside_its_box():
    # A horizontal ramp: bilinear sampling reproduces it exactly, so each output column
    # tells which input column it came from.
    ramp = np.tile(np.arange(32, dtype="float32") * 8, (32, 1))[None, :, :, None]
    out, boxes = augment.inception_crop(np.repeat(ramp, 8, axis=0), 0, area=(0.5, 0.5),
                                        ratio=(0.5, 0.5), flip=False, return_boxes=True)
    _, left, height, width = as_numpy(boxes).T
    np.testing.assert_allclose(width, 16, atol=1e-3)  # √(0.5 · 0.5) · 32
    np.testing.assert_allclose(height, 32, atol=1e-3)  # √(0.5 / 0.5) · 32
    columns = np.arange(32)
    expected = 8 * np.clip(left[:, None] + (columns + 0.5) * 0.5 - 0.5, 0, 31)
    np.testing.assert_allclose(as_numpy(out)[:, 5, :, 0], expected, atol=1e-2)


@neutral
def test_inception_crop_of_the_whole_image_is_the_image_or_its_mirror():
    images = integer_images((16, 12, 12, 3))
    out = as_numpy(augment.inception_crop(images, 0, area=(1.0, 1.0), ratio=(1.0, 1.0)))
    for image, result in zip(images, out):
        mirror = image[:, ::-1]
        assert np.allclose(result, image, atol=1e-3) or np.allclose(result, mirror, atol=1e-3)
    flipped = [not np.allclose(r, i, atol=1e-3) for i, r in zip(images, out)]
    assert 0 < sum(flipped) < 16


@neutral
def test_central_crop_takes_the_centre():
    pattern = np.arange(2 * 32 * 32 * 3, dtype="float32").reshape(2, 32, 32, 3) % 256
    np.testing.assert_array_equal(as_numpy(augment.central_crop(pattern, size=28)),
                                  pattern[:, 2:30, 2:30])  # 0.875 · 32 = 28, 2 px each side
    small = np.arange(64, dtype="float32").reshape(1, 8, 8, 1)
    np.testing.assert_array_equal(as_numpy(augment.central_crop(small, 0.5, size=4)),
                                  small[:, 2:6, 2:6])
    assert augment.central_crop(pattern).shape == pattern.shape


# ---------------------------------------------------------------------------- layers


def layers():
    return [
        augment.WeakAugment(seed=1),
        augment.StrongAugment(num_ops=3, magnitude=7, cutout=0.25, seed=2),
        augment.InceptionCrop(area=(0.2, 1.0), seed=3),
    ]


@neutral
def test_layers_are_identity_at_inference_and_random_in_training():
    images = integer_images((4, 16, 16, 3)).astype(np.uint8)
    for layer in layers():
        name = type(layer).__name__
        inferred = as_numpy(layer(images, training=False))
        assert inferred.dtype == np.float32, name
        np.testing.assert_array_equal(inferred, images, err_msg=name)
        np.testing.assert_array_equal(as_numpy(layer(images)), images, err_msg=name)
        first = as_numpy(layer(images, training=True))
        second = as_numpy(layer(images, training=True))
        assert not np.array_equal(first, images), name
        assert not np.array_equal(first, second), f"{name}: the seed generator must advance"


@neutral
def test_inception_crop_layer_resizes_at_inference():
    layer = augment.InceptionCrop(size=8, seed=0)
    images = integer_images((2, 16, 16, 3))
    assert layer(images, training=True).shape == layer(images, training=False).shape == (2, 8, 8, 3)


@neutral
def test_layer_config_round_trip():
    for layer in layers():
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


@neutral
def test_layers_survive_a_keras_file(tmp_path):
    model = keras.Sequential([keras.Input((16, 16, 3)), *layers(), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers[:3]] == [
        "WeakAugment", "StrongAugment", "InceptionCrop"]
    for original, restored in zip(model.layers[:3], loaded.layers[:3]):
        assert restored.get_config() == original.get_config()
    images = integer_images((2, 16, 16, 3))
    np.testing.assert_allclose(as_numpy(loaded(images)), as_numpy(model(images)), atol=1e-5)


@neutral
def test_layers_run_inside_fit():
    model = keras.Sequential([keras.Input((16, 16, 3)), *layers(), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss)
    history = model.fit(integer_images((8, 16, 16, 3)), np.arange(8) % 2, batch_size=4,
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


class _Augmenting(keras.Model):
    """Runs one augmentation layer in training mode inside predict, which Keras compiles
    (jit on JAX, tf.function on TensorFlow)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def call(self, x):
        return self.layer(x, training=True)


@neutral
@pytest.mark.parametrize("index", [0, 1, 2], ids=["weak", "strong", "inception_crop"])
def test_per_image_randomness_survives_compilation(index):
    """Eight copies of one image in one compiled batch come out as different views, and the
    next batch draws new ones: a trace that froze the draws would repeat them."""
    model = _Augmenting(layers()[index])
    same = np.repeat(integer_images((1, 16, 16, 3)), 8, axis=0)
    first = model.predict(same, batch_size=8, verbose=0)
    second = model.predict(same, batch_size=8, verbose=0)
    distinct = {first[i].tobytes() for i in range(8)}
    assert len(distinct) >= 4, f"only {len(distinct)} distinct views of 8 copies"
    assert not np.array_equal(first, second)


@neutral
def test_from_config_builds_the_layer_the_kind_names():
    def cfg(kind, flip=True, translate=0.125):
        return SimpleNamespace(kind=kind, flip=flip, translate=translate, num_ops=3, magnitude=5)

    layer = augment.from_config(cfg("strong", flip=False, translate=0.25), seed=7)
    assert type(layer) is augment.StrongAugment
    assert (layer.flip, layer.translate, layer.num_ops, layer.magnitude, layer.seed) == (
        False, 0.25, 3, 5, 7)
    weak = augment.from_config(cfg("weak", flip=False, translate=0.0), seed=1)
    assert type(weak) is augment.WeakAugment and (weak.flip, weak.translate) == (False, 0.0)
    assert augment.from_config(cfg("none"), seed=0) is None
    with pytest.raises(MentorError, match="augment.kind"):
        augment.from_config(cfg("randaugment"), seed=0)


# ---------------------------------------------------------------------------- figure


def test_sample_grid_writes_a_png_that_grows_with_rows(tmp_path):
    colour = integer_images((8, 32, 32, 3)).astype(np.uint8)
    grey = integer_images((8, 32, 32, 1))
    one = sample_grid({"clean": colour}, tmp_path / "one.png")
    three = sample_grid({"clean": colour, "weak": grey, "strong": colour[:3]},
                        tmp_path / "three.png", n=8, title="views")
    with Image.open(one) as a, Image.open(three) as b:
        assert a.format == b.format == "PNG"
        assert b.height > a.height
