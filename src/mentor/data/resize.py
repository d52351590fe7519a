"""Resizing with the aspect kept, and zero padding to a square.

Used by the decoders (variable-size image folders, Flowers102) and by the pipeline.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mentor.errors import MentorError


def resize_and_pad_one(image, size: int) -> np.ndarray:
    """Fit one image (PIL image in L/RGB, or H×W / H×W×C uint8 array) into size×size.

    The longer side becomes `size` (bilinear, antialiased when shrinking), the aspect is kept,
    and the rest is zero padding around the centred content. Returns size×size×C uint8.
    """
    pil = image if isinstance(image, Image.Image) else _to_pil(np.asarray(image))
    if pil.mode not in ("L", "RGB"):
        raise MentorError(f"resize: images must be gray (L) or RGB, got PIL mode {pil.mode}.")
    width, height = pil.size
    if (width, height) != (size, size):
        longer = max(width, height)
        new_w = max(1, round(width * size / longer))
        new_h = max(1, round(height * size / longer))
        # Pillow's resize widens the bilinear kernel when shrinking, i.e. it antialiases.
        pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
    content = np.asarray(pil)
    if content.ndim == 2:
        content = content[..., None]
    if content.shape[:2] == (size, size):
        return content
    out = np.zeros((size, size, content.shape[2]), np.uint8)
    top = (size - content.shape[0]) // 2
    left = (size - content.shape[1]) // 2
    out[top : top + content.shape[0], left : left + content.shape[1]] = content
    return out


def _to_pil(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise MentorError(f"resize: images must be uint8, got {array.dtype}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return Image.fromarray(array, "L")
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(array, "RGB")
    raise MentorError(f"resize: an image must be H×W, H×W×1 or H×W×3, not {array.shape}.")


def resize_and_pad(images: np.ndarray, size: int) -> np.ndarray:
    """Fit N×H×W×C uint8 images into N×size×size×C (see `resize_and_pad_one`)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise MentorError(f"resize: expected N×H×W×C images, got shape {images.shape}.")
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([resize_and_pad_one(image, size) for image in images])
