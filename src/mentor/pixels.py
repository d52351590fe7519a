"""Pixel rules every image obeys, in memory, in files or corrupted: how float pixels read as
0..255 (`float_scale`), and conversion between gray and RGB (`to_channels`)."""

from __future__ import annotations

import numpy as np

from mentor.errors import MentorError

# Float pixels: a maximum up to _UNIT_TOP is a 0..1 image (scaled ×255), one above
# _BYTE_LEAST a 0..255 image (rounded). Between the two, neither reading is safe: 0..1 images
# that overshoot (1.02 after a blur or a resize) would be taken as 0..255 and turn black, and
# a dark 0..255 image would be taken as 0..1 and turn white.
_UNIT_TOP = 1.0
_BYTE_LEAST = 1.5
FLOAT_RANGES = (f"float pixels must lie in [0, 1] or [0, 255]: a maximum up to {_UNIT_TOP:g} "
                f"is read as 0..1 (scaled to 0..255), one above {_BYTE_LEAST:g} as 0..255")


def float_scale(lo: float, hi: float, name: str) -> float:
    """What float pixels spanning [lo, hi] are multiplied by to become 0..255: 255 for 0..1
    images, 1 for 0..255 ones; anything else is refused, never guessed."""
    if lo >= 0 and hi <= _UNIT_TOP:
        return 255.0
    if lo >= 0 and _BYTE_LEAST < hi <= 255:
        return 1.0
    if lo < 0:
        fix = ("negative values usually mean normalised images (mean and std): undo the "
               "normalisation, or rescale with (x - x.min()) / (x.max() - x.min())")
    elif hi > 255:
        fix = "rescale to 0..255 (e.g. x / x.max() * 255) or to 0..1"
    else:
        fix = ("a 0..1 image that overshoots (a blur, a resize) is clipped back with "
               "np.clip(x, 0, 1); a 0..255 image this dark should be passed as uint8")
    raise MentorError(f"{name}: {FLOAT_RANGES}; found [{lo:g}, {hi:g}]. Convert them: {fix}; "
                      "or pass uint8 images.")


# ITU-R BT.601 luma weights in thousandths: integer arithmetic rounds exactly, and a gray
# pixel repeated to RGB comes back unchanged (the weights sum to 1000).
_LUMA_PER_MILLE = np.array([299, 587, 114], dtype=np.uint32)


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Convert channels-last uint8 images to 1 or 3 channels.

    1 → 3 repeats the gray value; 3 → 1 takes the ITU-R 601 luma (0.299 R + 0.587 G +
    0.114 B, rounded); equal counts return `x` unchanged.
    """
    x = np.asarray(x)
    have = x.shape[-1] if x.ndim else 0
    if have == channels:
        return x
    if (have, channels) == (1, 3):
        return np.repeat(x, 3, axis=-1)
    if (have, channels) == (3, 1):
        luma = (x.astype(np.uint32) @ _LUMA_PER_MILLE + 500) // 1000  # +500: round half up
        return luma.astype(np.uint8)[..., None]
    raise MentorError(
        f"cannot convert images of shape {x.shape} (channels last) to {channels} channel(s); "
        "mentor converts between 1 (gray) and 3 (RGB) channels only."
    )
