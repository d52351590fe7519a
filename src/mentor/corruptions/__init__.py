"""The 19 corruptions of CIFAR-10-C at its 5 severities, batched, in NumPy and SciPy.

    from mentor.corruptions import corrupt, CORRUPTIONS
    noisy = corrupt(images, "gaussian_noise", severity=3, seed=0)  # uint8 in, uint8 out

Parameters are the CIFAR ones of Hendrycks & Dietterich's `make_cifar_c.py` (see
params.py for the source and each number's meaning), not the ImageNet-C ones that the
`imagecorruptions` package uses. The operations are rewritten (the original needs
ImageMagick, OpenCV and APIs that NumPy and scikit-image removed); where they depart from
it, the operation's docstring says so. In short:
- motion blur (and snow's streaks) re-implement ImageMagick's MotionBlurImage as a
  shift-and-add of a one-sided Gaussian line kernel at a random angle per image, leaving
  out far taps that together weigh < 1e-4 (under 0.03 of a level);
- frost blends procedurally generated ice textures, not the release's photographs, so
  its numbers are close to, not equal to, the official ones;
- spatter's water shading re-implements its OpenCV steps (Canny, chamfer distance
  transform, histogram equalisation, emboss); on the same noise it gives the same pixels;
- glass blur's pixel "swaps" are, in the original, copies (NumPy views); this reproduces
  the copies, as a vectorised gather per iteration;
- outputs are rounded to the nearest level where the release's `np.uint8` truncates (at
  most one level apart; rounding keeps whole levels whole under float32 error).

Sizes: the CIFAR parameters are for 32×32. For other sizes every length (blur radii and
σ, motion length, glass displacement, elastic displacement and smoothing, snow flake and
streak size, spatter drop size, frost texture scale) is multiplied by side/32, with side
the shorter image side; the fog map is drawn at the image's own size; pixelate's
fraction, zoom factors, noise levels and intensities are scale-free and unchanged.

Gray images (N×H×W×1, or N×H×W) are corrupted directly except by frost, spatter and
saturate, which colour the image: those convert to RGB, corrupt, and return ITU-R 601
luma. On a gray image saturate leaves severities 1-3 unchanged (a gray pixel has no
saturation to scale) and at 4-5 adds the release's saturation offset with hue 0 (red),
whose luma is a slightly darker gray.

Randomness: one `np.random.default_rng([seed, severity, index of name in CORRUPTIONS])`
per call, drawn per image, in steps of CHUNK_VALUES pixel values; same arguments, same
output. The draws differ from the release's (one global NumPy stream, image by image), so
corrupted images match the official ones in distribution, not pixel for pixel.

Speed against `imagecorruptions`: benchmarks/corruptions.py, table in docs/benchmarks.md.
Noise is bound by NumPy's random draws and JPEG by PIL's codec, so those gain least.
"""

from __future__ import annotations

import difflib
import numbers

import numpy as np

from mentor.corruptions import _common, blur, digital, noise, weather
from mentor.corruptions.params import (
    BENCHMARK_CORRUPTIONS,
    CIFAR_SIDE,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PARAMS,
)
from mentor.errors import MentorError
from mentor.pixels import to_channels

__all__ = ["BENCHMARK_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "PARAMS",
           "SEVERITIES", "check", "corrupt"]

SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 8  # px: below it elastic's reference triangle and glass's window degenerate
# Pixel values corrupted per step (128 CIFAR images): 1.5 MB float32 planes keep the
# temporaries small; one 2000-image step ran 1.2-5× slower per image (measured here).
CHUNK_VALUES = 128 * CIFAR_SIDE * CIFAR_SIDE * 3

_OPS = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur,
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
    "speckle_noise": noise.speckle_noise,
    "gaussian_blur": blur.gaussian_blur,
    "spatter": weather.spatter,
    "saturate": digital.saturate,
}
_RGB_ONLY = frozenset({"frost", "spatter", "saturate"})


def corrupt(images, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt a batch of uint8 images with CIFAR-10-C corruption `name` at `severity` 1-5.

    images: uint8 N×H×W×C (C = 1 or 3) or N×H×W (gray), each side ≥ 8 px. Returns uint8
    of the same shape. Lengths scale with side/32 (see the module docstring); `seed` (an
    int ≥ 0) fixes the randomness together with name and severity.
    """
    _check_name(name)
    _check_severity(severity)
    _check_seed(seed)
    x = _check_images(images)
    if x.size == 0:
        return x.copy()
    batch = x[..., None] if x.ndim == 3 else x
    gray_via_rgb = batch.shape[-1] == 1 and name in _RGB_ONLY
    if gray_via_rgb:
        batch = to_channels(batch, 3)
    rng = np.random.default_rng([seed, severity, CORRUPTIONS.index(name)])
    op, param = _OPS[name], PARAMS[name][severity - 1]
    scale = min(batch.shape[1:3]) / CIFAR_SIDE
    out = np.empty_like(batch)
    step = max(1, CHUNK_VALUES // batch[0].size)
    for start in range(0, len(batch), step):  # one generator, drawn chunk after chunk
        planes = op(_common.to_planes(batch[start : start + step]), param, rng, scale)
        out[start : start + step] = _common.to_images(planes)
    if gray_via_rgb:
        out = to_channels(out, 1)
    return out.reshape(x.shape)


def check(names, severities):
    """Refuse unknown corruption names and severities before any work is done."""
    for name in names:
        _check_name(name)
    for severity in severities:
        _check_severity(severity)


def _check_name(name):
    if name in _OPS:
        return
    close = difflib.get_close_matches(str(name), CORRUPTIONS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise MentorError(f"unknown corruption {name!r}.{hint} Choose one of: "
                      f"{', '.join(CORRUPTIONS)}.")


def _check_severity(severity):
    if (isinstance(severity, bool) or not isinstance(severity, numbers.Integral)
            or severity not in SEVERITIES):
        raise MentorError(f"severity must be an integer from 1 to 5 (CIFAR-10-C's levels), "
                          f"got {severity!r}.")


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise MentorError(f"seed must be an integer ≥ 0, got {seed!r}.")


def _check_images(images):
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise MentorError(
            f"corrupt takes uint8 images (0-255), got dtype {x.dtype}. Convert first, e.g. "
            "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for floats in [0, 1], or "
            "x.astype(np.uint8) for whole numbers in 0-255.")
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise MentorError(f"corrupt takes a batch N×H×W×C with C = 1 or 3 (or N×H×W gray), "
                          f"got shape {x.shape}. Add the batch axis for one image: "
                          "images[None].")
    if min(x.shape[1:3]) < MIN_SIDE:
        raise MentorError(f"images must be at least {MIN_SIDE}×{MIN_SIDE} px for corrupt, "
                          f"got {x.shape[1]}×{x.shape[2]} (batch shape {x.shape}); one "
                          "H×W×C image needs a batch axis: images[None].")
    return x
