"""Tests of mentor.corruptions: the output contract, seeds, severity ordering, the CIFAR
parameter tables, hand-computed cases, agreement with the reference operations (SciPy
zoom, PIL resize, the release's glass-blur loop) and bad inputs. Pure NumPy: no backend."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mentor.corruptions import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PARAMS,
    _common,
    _frost,
    blur,
    corrupt,
    digital,
)
from mentor.errors import MentorError

SEVERITIES = (1, 2, 3, 4, 5)
# No randomness: the seed must not matter.
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate"}
RANDOM = [name for name in CORRUPTIONS if name not in DETERMINISTIC]
# Act on each channel alike: a gray image and its RGB copy corrupt the same. (JPEG codes
# gray and RGB differently; saturate goes through RGB on gray.)
PER_CHANNEL = sorted(DETERMINISTIC - {"jpeg_compression", "saturate"})


def natural_images(n=4, side=32, seed=0, width=None):
    """Smooth colour regions with fine texture, as photographs have (uint8 N×H×W×3)."""
    rng = np.random.default_rng(seed)
    width = width or side
    coarse = rng.uniform(30, 225, (n, 4, 4, 3))
    smooth = ndimage.zoom(coarse, (1, side / 4, width / 4, 1), order=1)
    texture = ndimage.gaussian_filter(rng.normal(0, 25, (n, side, width, 3)), (0, 1, 1, 0))
    return np.clip(smooth + texture, 0, 255).astype(np.uint8)


def mad(a, b):
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.fixture(scope="module")
def rgb():
    return natural_images()


@pytest.fixture(scope="module")
def distances():
    """Mean absolute difference from the clean images, per corruption and severity, on 16
    images (frost's texture draws vary too much over fewer)."""
    images = natural_images(16, seed=1)
    return {name: [mad(corrupt(images, name, s), images) for s in SEVERITIES]
            for name in CORRUPTIONS}


# --- names and tables -------------------------------------------------------------------

def test_names():
    assert len(BENCHMARK_CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4
    assert list(CORRUPTIONS) == [*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS]
    assert set(PARAMS) == set(CORRUPTIONS)
    assert all(len(PARAMS[name]) == 5 for name in CORRUPTIONS)


def test_parameters_are_the_cifar_ones():
    # Values of hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py.
    assert PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert PARAMS["shot_noise"] == (500, 250, 100, 75, 50)
    assert PARAMS["contrast"] == (0.75, 0.5, 0.4, 0.3, 0.15)
    assert PARAMS["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert PARAMS["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert PARAMS["motion_blur"] == ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
    assert PARAMS["glass_blur"][3] == (0.25, 1, 2)
    assert PARAMS["elastic_transform"][1] == pytest.approx((1.6, 6.4, 2.24))  # 32·(.05, .2, .07)
    # The file's np.arange(1, stop, 0.01) gives these many zoom factors.
    assert [len(np.arange(*p)) for p in PARAMS["zoom_blur"]] == [7, 12, 16, 21, 26]
    # Not ImageNet-C's table (make_imagenet_c.py: σ .08 .12 .18 .26 .38).
    assert PARAMS["gaussian_noise"][-1] < 0.38


# --- the output contract ----------------------------------------------------------------

@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_and_dtype_rgb_and_gray(name, rgb):
    gray = _to_gray(rgb)
    for severity in SEVERITIES:
        for images in (rgb, gray, gray[..., 0]):
            out = corrupt(images, name, severity)
            assert out.shape == images.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_other_sizes(name):
    for images in (natural_images(2, 48), natural_images(2, 40, width=64)):
        out = corrupt(images, name, 3)
        assert out.shape == images.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_no_wrap_around_at_the_extremes(name):
    # A value that left [0, 255] before the uint8 cast would wrap round: white would turn
    # dark, black bright. (Fog dims white to about 158, frost lifts black to about 85.)
    white = np.full((2, 32, 32, 3), 255, np.uint8)
    black = np.zeros_like(white)
    assert corrupt(white, name, 5).mean() > 128
    assert corrupt(black, name, 5).mean() < 128


def test_empty_batch():
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    assert corrupt(empty, "fog", 2).shape == empty.shape


# --- seeds ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_seed_same_output(name, rgb):
    np.testing.assert_array_equal(corrupt(rgb, name, 3, seed=5), corrupt(rgb, name, 3, seed=5))


@pytest.mark.parametrize("name", RANDOM)
def test_other_seed_other_output(name, rgb):
    assert not np.array_equal(corrupt(rgb, name, 3, seed=0), corrupt(rgb, name, 3, seed=1))


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_ones_ignore_the_seed(name, rgb):
    np.testing.assert_array_equal(corrupt(rgb, name, 3, seed=0), corrupt(rgb, name, 3, seed=1))


def test_images_of_a_batch_get_their_own_draws():
    same = np.repeat(natural_images(1), 3, axis=0)
    out = corrupt(same, "motion_blur", 5)
    assert not np.array_equal(out[0], out[1])


def test_large_batches_go_in_steps():
    # 130 images: a step of 128 (CHUNK_VALUES at 32×32×3), then one of 2, same generator.
    images = np.repeat(natural_images(1), 130, axis=0)
    out = corrupt(images, "gaussian_noise", 3)
    np.testing.assert_array_equal(out[:128], corrupt(images[:128], "gaussian_noise", 3))
    assert not np.array_equal(out[0], out[128])


# --- severity ordering ------------------------------------------------------------------

# Parameters that rise with severity: the distance from the clean image never falls.
MONOTONE = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur",
            "zoom_blur", "gaussian_blur", "snow", "fog", "brightness", "contrast", "pixelate",
            "jpeg_compression"]
EXCEPTIONS = ["glass_blur", "motion_blur", "frost", "elastic_transform", "spatter", "saturate"]


def test_every_corruption_is_classified():
    assert sorted(MONOTONE + EXCEPTIONS) == sorted(CORRUPTIONS)


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "elastic_transform"])
def test_severity_5_is_further_than_1(name, distances):
    assert distances[name][4] > distances[name][0]


@pytest.mark.parametrize("name", MONOTONE)
def test_distance_never_falls(name, distances):
    d = distances[name]
    assert all(later >= earlier for earlier, later in zip(d, d[1:])), d


def test_glass_blur_more_blur_hides_the_shuffle(distances):
    # (σ, iterations) = (.25, 1) → (.4, 1) and (.25, 2) → (.4, 2): the wider blur smooths
    # away part of the shuffled pixels' differences; the second iteration adds more.
    d = distances["glass_blur"]
    assert d[2] < d[1] and d[4] < d[3]
    assert d[0] < d[1] < d[3]


def test_motion_blur_severities_3_and_4_are_alike(distances):
    # (radius, σ) = (6, 2) → (8, 2): the extra taps weigh exp(-49/8) ≈ 0.2 %, so the two
    # differ only by the angles drawn.
    d = distances["motion_blur"]
    assert d[0] < d[1] < d[2] < d[4] and d[3] < d[4]
    assert abs(d[3] - d[2]) < 0.05 * d[2]


def test_frost_depends_on_the_texture_drawn(distances):
    # c0·x + c1·frost with c0 falling 1 → .75 and c1 rising .2 → .45: how far the image
    # moves depends on how bright the drawn texture is, so only the ends are ordered.
    d = distances["frost"]
    assert d[0] < min(d[1:])


def test_elastic_transform_moves_less_but_warps_more(distances, rgb):
    # The file's affine jitter falls with severity (2.56 → 0.96 px) while the elastic field
    # grows: the whole image moves less (smaller distance) ...
    d = distances["elastic_transform"]
    assert d[4] < d[0]
    # ... and the elastic part alone, without the affine, moves it more.
    planes = _common.to_planes(rgb)
    field_only = []
    for alpha, sigma, _ in PARAMS["elastic_transform"]:
        rng = np.random.default_rng(0)
        out = digital.elastic_transform(planes.copy(), (alpha, sigma, 0), rng, 1)
        field_only.append(mad(_common.to_images(out), rgb))
    assert field_only[0] == 0 and field_only == sorted(field_only)


def test_spatter_water_then_mud(distances):
    # Severity 3 is the last water level with the widest noise (σ .3); 4 starts mud.
    d = distances["spatter"]
    assert d[0] < d[1] < d[2] and d[3] < d[2] and d[3] < d[4]


def test_saturate_first_desaturates(distances):
    # Factors .3, .1 (less colour), 1.5 (a little more), then 2, 2.5 with an offset.
    d = distances["saturate"]
    assert d[2] < d[0] < d[1] < d[3] < d[4]


# --- hand-computed cases ----------------------------------------------------------------

def test_brightness_by_hand():
    # Severity 3 adds .15 to the HSV value V = max(R, G, B) = 200/255: the pixel scales by
    # (200 + 38.25) / 200, hue and saturation kept; at 5 (+.3) V is capped at 1.
    pixel = np.array([200, 100, 50], np.uint8)
    images = np.broadcast_to(pixel, (1, 8, 8, 3)).copy()
    np.testing.assert_array_equal(corrupt(images, "brightness", 3)[0, 0, 0], [238, 119, 60])
    images[:] = [250, 10, 10]
    np.testing.assert_array_equal(corrupt(images, "brightness", 5)[0, 0, 0], [255, 10, 10])


def test_contrast_by_hand():
    # Half the pixels 100, half 200: mean 150; severity 3 keeps 0.4 of the deviation ±50.
    images = np.full((1, 8, 8, 3), 100, np.uint8)
    images[:, :, 4:] = 200
    out = corrupt(images, "contrast", 3)
    assert set(np.unique(out[:, :, :4])) == {130} and set(np.unique(out[:, :, 4:])) == {170}


def test_saturate_tints_gray_red_as_the_release():
    # skimage gives a gray pixel hue 0 (red); severity 5 sets its saturation to the offset
    # .2: (V, .8 V, .8 V).
    images = np.full((1, 8, 8, 3), 128, np.uint8)
    np.testing.assert_array_equal(corrupt(images, "saturate", 5)[0, 0, 0], [128, 102, 102])


def test_motion_blur_kernel_by_hand():
    # One bright pixel, angle 0: ImageMagick's one-sided kernel exp(-i²/2σ²) (radius 2,
    # σ 1: 5 taps) lands to the left of the pixel, tap i at i px.
    planes = np.zeros((1, 1, 9, 9), np.float32)
    planes[0, 0, 4, 6] = 1
    out = _common.motion_blur(planes, 2, 1, np.array([0.0]))
    taps = np.exp(-np.arange(5) ** 2 / 2)
    np.testing.assert_allclose(out[0, 0, 4, 2:7], (taps / taps.sum())[::-1], rtol=1e-6)
    assert out[0, 0, 4, 7:].sum() == 0 and out[0, 0, :4].sum() == 0


def test_gaussian_blur_scales_with_the_side():
    # σ = 1 px at 32 px is 2 px at 64 px: a bright dot spreads twice as far.
    def spread(side):
        images = np.zeros((1, side, side, 1), np.uint8)
        images[0, side // 2, side // 2] = 255
        out = corrupt(images, "gaussian_blur", 5)[0, :, :, 0].astype(float)
        offsets = np.arange(side) - side // 2
        return np.sqrt((out.sum(axis=0) * offsets**2).sum() / out.sum())

    assert spread(64) / spread(32) == pytest.approx(2, rel=0.15)


# --- agreement with the reference operations --------------------------------------------

def authors_clipped_zoom(img, factor):
    """make_cifar_c.py's clipped_zoom: crop, scipy zoom (order 1), trim."""
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("factor", [1.0, 1.03, 1.11, 1.25, 1.75, 2.25])
def test_clipped_zoom_matches_scipy(factor, rgb):
    image = rgb[0].astype(np.float32) / 255
    ours = _common.clipped_zoom(image.transpose(2, 0, 1)[None], factor)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(ours, authors_clipped_zoom(image, factor), atol=1e-5)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_pixelate_matches_pil(severity, rgb):
    side = int(32 * PARAMS["pixelate"][severity - 1])
    expected = [np.asarray(Image.fromarray(image).resize((side, side), Image.BOX)
                           .resize((32, 32), Image.BOX)) for image in rgb]
    np.testing.assert_array_equal(corrupt(rgb, "pixelate", severity), np.stack(expected))


def test_glass_blur_equals_the_releases_loop():
    # The release's loop on an H×W×3 array, where the "swap" of two views is a copy.
    class Draws:  # hands glass_blur fixed offsets
        def __init__(self, offsets):
            self.offsets = offsets

        def integers(self, low, high, size):
            return self.offsets.pop(0)

    rng = np.random.default_rng(3)
    images = rng.random((2, 3, 12, 12), dtype=np.float32)
    offsets = [rng.integers(-1, 1, size=(2, 2, 10, 10)) for _ in range(2)]  # d = 1: 2..11
    ours = blur.glass_blur(images.copy(), (0.01, 1, 2), Draws(list(offsets)), 1.0)

    blurred = np.floor(_common.gaussian(images, 0.01) * 255) / np.float32(255)
    for n in range(2):
        x = blurred[n].transpose(1, 2, 0).copy()  # H×W×3, as the release holds it
        for dy, dx in ((o[0][n], o[1][n]) for o in offsets):
            for h in range(11, 1, -1):
                for w in range(11, 1, -1):
                    hp, wp = h + dy[h - 2, w - 2], w + dx[h - 2, w - 2]
                    x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
        blurred[n] = x.transpose(2, 0, 1)
    np.testing.assert_allclose(ours, _common.gaussian(blurred, 0.01), atol=1e-6)


# --- gray images ------------------------------------------------------------------------

def _to_gray(images):
    return (images.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).round().astype(
        np.uint8)[..., None]


@pytest.mark.parametrize("name", PER_CHANNEL)
def test_gray_corrupts_like_its_rgb_copy(name, rgb):
    gray = _to_gray(rgb)
    np.testing.assert_array_equal(corrupt(gray, name, 4)[..., 0],
                                  corrupt(np.repeat(gray, 3, axis=-1), name, 4)[..., 0])


def test_saturate_on_gray():
    gray = _to_gray(natural_images())
    for severity in (1, 2, 3):  # no saturation to scale
        np.testing.assert_array_equal(corrupt(gray, "saturate", severity), gray)
    assert corrupt(gray, "saturate", 5).mean() < gray.mean()  # the red tint's luma


# --- frost textures ---------------------------------------------------------------------

def test_frost_textures_are_fixed_and_read_only():
    textures = _frost.textures(_frost.BASE_SIDE)
    assert textures.shape == (5, 3, _frost.BASE_SIDE, _frost.BASE_SIDE)
    assert not textures.flags.writeable
    _frost.textures.cache_clear()
    np.testing.assert_array_equal(_frost.textures(_frost.BASE_SIDE), textures)
    # The photographs' mean colours, which the textures take.
    np.testing.assert_allclose(textures.mean(axis=(2, 3)), _frost.PHOTO_MEAN_RGB, atol=0.01)


# --- bad inputs -------------------------------------------------------------------------

def test_unknown_name_lists_and_suggests(rgb):
    with pytest.raises(MentorError, match="gaussian_noise") as error:
        corrupt(rgb, "gausian_noise", 1)
    assert "Did you mean 'gaussian_noise'" in str(error.value)
    assert all(name in str(error.value) for name in CORRUPTIONS)


@pytest.mark.parametrize("severity", [0, 6, 2.0, True, "3", None])
def test_bad_severity(severity, rgb):
    with pytest.raises(MentorError, match="severity must be an integer from 1 to 5"):
        corrupt(rgb, "fog", severity)


def test_numpy_integer_severity_is_fine(rgb):
    assert corrupt(rgb, "fog", np.int64(2)).shape == rgb.shape


def test_float_images_are_refused(rgb):
    with pytest.raises(MentorError, match="uint8.*astype"):
        corrupt(rgb.astype(np.float32) / 255, "fog", 1)


@pytest.mark.parametrize("shape, message", [
    ((32, 32, 3), "batch axis"),  # one image, no batch axis
    ((2, 32, 32, 4), "C = 1 or 3"),
    ((2, 32), "N×H×W×C"),
    ((2, 4, 4, 3), "at least 8×8"),
])
def test_bad_shapes(shape, message):
    with pytest.raises(MentorError, match=message):
        corrupt(np.zeros(shape, np.uint8), "fog", 1)


def test_bad_seed(rgb):
    with pytest.raises(MentorError, match="seed"):
        corrupt(rgb, "fog", 1, seed=-1)


def test_robustness_subset_is_seeded_ordered_and_the_whole_set_when_unlimited():
    from mentor.data import ImageSet
    from mentor.robustness import subset

    rows = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 1), np.uint8)
    data = ImageSet(rows, np.arange(50) % 5)
    assert subset(data, 0, seed=0) is data and subset(data, 80, seed=0) is data
    a, b, c = (subset(data, 20, seed=s).x[:, 0, 0, 0] for s in (1, 1, 2))
    assert len(a) == 20 and (a == b).all() and not (a == c).all()
    assert (np.diff(a.astype(int)) > 0).all()  # kept in data order
