"""How float pixels read as 0..255: the one rule for images in memory and images in files."""

from __future__ import annotations

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
