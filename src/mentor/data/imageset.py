"""`ImageSet`: images and labels, validated once, uint8 until the model. The images are an
array in memory, or `ImageFiles` (mentor.data.files): files decoded a batch at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mentor.data.files import is_streamed
from mentor.errors import MentorError
from mentor.pixels import float_scale


def as_uint8_images(x, name: str) -> np.ndarray:
    """Return N×H×W×C uint8 images, or raise a MentorError that says what is wrong.

    Accepts N×H×W (grayscale) and N×H×W×C with C in {1, 3}. uint8 and other integer pixels
    are 0..255; booleans are black and white; float pixels are read by their range
    (`float_scale`, over the whole array: one reading for every image); NaN or infinite
    pixels are refused.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise MentorError(
            f"{name}: images must be N×H×W or N×H×W×C, got an array of shape {x.shape}. "
            "Stack the images along the first axis."
        )
    if 0 in x.shape[1:3]:
        raise MentorError(f"{name}: images of {x.shape[1]}×{x.shape[2]} pixels hold nothing; "
                          "give images at least 1 pixel high and wide.")
    if x.shape[-1] not in (1, 3):
        raise MentorError(
            f"{name}: images must have 1 or 3 channels (channels last), got shape {x.shape}. "
            "If your array is N×C×H×W, transpose it with x.transpose(0, 2, 3, 1)."
        )
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool:  # a mask: False black, True white (not the 0/1 of near-black bytes)
        return x.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            # an image with any NaN or infinite pixel is bad, not only one with no finite pixel
            bad = int(np.count_nonzero((~np.isfinite(x)).reshape(len(x), -1).any(1)))
            raise MentorError(
                f"{name}: {bad} image(s) contain NaN or infinite pixels. Clean or drop them."
            )
        scale = float_scale(float(x.min(initial=0)), float(x.max(initial=0)), name)
        return np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min(initial=0)), int(x.max(initial=0))
        if lo < 0 or hi > 255:
            raise MentorError(
                f"{name}: integer pixels must lie in 0..255, found {lo}..{hi}. "
                "Rescale them to 8 bits."
            )
        if hi <= 1 and x.size:
            # 0/1 in wide integers is a mask, not a near-black image (uint8 means 0..255)
            raise MentorError(
                f"{name}: {x.dtype} pixels that are all 0 or 1 read as an almost black image "
                "in 0..255, yet are likely black-and-white. Give them as bool (x.astype(bool)) "
                "or as uint8 0..255 (x * 255), whichever they mean.")
        return x.astype(np.uint8)
    raise MentorError(f"{name}: images of dtype {x.dtype} are not supported; use uint8 or float.")


def as_labels(y, n: int, name: str) -> np.ndarray:
    """Return int64 class ids of length n, or raise a MentorError."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise MentorError(
            f"{name}: labels must be one class id per image (shape (N,)), got shape {y.shape}. "
            "One-hot labels: use y.argmax(1)."
        )
    if len(y) != n:
        raise MentorError(f"{name}: {n} images but {len(y)} labels; they must match one to one.")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise MentorError(f"{name}: labels must be whole class ids, found non-integer values.")
    elif not np.issubdtype(y.dtype, np.integer):
        raise MentorError(f"{name}: labels of dtype {y.dtype} are not class ids; use integers.")
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise MentorError(f"{name}: labels must be ≥ 0, found {int(y.min())}.")
    return y


def check_class_ids(y: np.ndarray, name: str):
    """Refuse labels whose class ids leave most ids unused: without class names the classes
    are 0..max(y), so one stray label (1000 among 0..2) would silently make 1001 classes."""
    if not len(y):
        return
    top = int(y.max())
    used = np.unique(y)
    if 2 * len(used) >= top + 1:
        return
    k = len(used)
    above = int(np.count_nonzero(y >= k))
    raise MentorError(
        f"{name}: labels must be class ids 0..K-1, but the largest label is {top} while only "
        f"{k} distinct labels are in use ({top + 1} classes would be trained, most of them "
        f"empty); {above} image(s) carry labels above {k - 1}. Fix or drop those images, or "
        f"number the classes 0..{k - 1}.")


@dataclass
class ImageSet:
    """Images (N×H×W×C uint8) with integer labels and class names.

    Constructing one validates and converts: every loader and every user array goes through
    here, so the checks live in one place.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: list[str] = field(default_factory=list)
    name: str = "data"
    # the file each row was decoded from, for images that came from files and were decoded
    # into memory (file-backed images hold their own, ImageFiles.paths): the same file
    # under two names is found by what it is, not by its pixels (overlap.test_in_train)
    files: np.ndarray | None = None

    def __post_init__(self):
        if not is_streamed(self.x):  # ImageFiles: checked as their headers were read
            self.x = as_uint8_images(self.x, self.name)
        self.y = as_labels(self.y, len(self.x), self.name)
        if len(self.x) == 0:
            raise MentorError(f"{self.name}: the data set is empty (0 images).")
        top = int(self.y.max())
        if not self.class_names:  # the labels alone say how many classes there are
            check_class_ids(self.y, self.name)
            self.class_names = [str(i) for i in range(top + 1)]
        self.class_names = [str(c) for c in self.class_names]
        twice = sorted({c for c in self.class_names if self.class_names.count(c) > 1})
        if twice:  # two ids of one name: a model's two answers would read as one class
            raise MentorError(f"{self.name}: the class name {twice[0]!r} is given to more than "
                              "one class id; give every class its own name.")
        if top >= len(self.class_names):
            raise MentorError(
                f"{self.name}: label {top} is out of range for {len(self.class_names)} classes "
                f"({', '.join(self.class_names[:5])}{', …' if len(self.class_names) > 5 else ''})."
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index, name: str | None = None) -> ImageSet:
        index = np.asarray(index)
        x = self.x.take(index) if is_streamed(self.x) else self.x[index]
        files = None if self.files is None else self.files[index]
        return ImageSet(x, self.y[index], list(self.class_names), name or self.name, files)

    def source_files(self) -> np.ndarray | None:
        """The file of every row, where the images came from files; else None."""
        return self.x.paths if is_streamed(self.x) else self.files

    def __repr__(self) -> str:
        return (
            f"ImageSet({self.name!r}, {len(self)} images of {self.image_shape}, "
            f"{self.num_classes} classes)"
        )
