"""A user's .npz of images and labels as an ImageSet: arrays x and y (or those the query
names), rows kept where the query's other arrays hold its values, and class names from an
array `class_names` when there is one.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mentor.data.imageset import ImageSet, as_labels, check_class_ids
from mentor.errors import MentorError


def load_npz(path: Path, query: list[tuple[str, str]] = ()) -> ImageSet:
    """Arrays x and y of a .npz, optionally rows selected by `query` (see spec.SOURCES_HELP)."""
    path = Path(path)
    name = path.name + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    if path.is_dir():
        raise MentorError(
            f"{name}: {path} is a folder, not an .npz file; for a folder of class folders "
            f"write folder:{path}.")
    if not path.is_file():
        raise MentorError(
            f"{name}: no such file {path}. Check the path (relative to {Path.cwd()})."
        )
    if not zipfile.is_zipfile(path):
        raise MentorError(
            f"{name}: {path} is not an .npz (zip) file. Save arrays with "
            "numpy.savez(path, x=images, y=labels)."
        )
    names = {"x": "x", "y": "y"}
    selection = []
    for key, value in query:
        if key in names:
            names[key] = value
        else:
            selection.append((key, value))
    try:
        with np.load(path) as arrays:
            return _npz_imageset(arrays, names, selection, name)
    except (ValueError, zipfile.BadZipFile) as e:  # e.g. object arrays, which need pickle
        raise MentorError(f"{name}: cannot read {path} ({e}). Save plain numeric arrays.") from e


def _npz_imageset(arrays, names: dict[str, str], selection, name: str) -> ImageSet:
    present = ", ".join(arrays.files) or "none"
    for role, key in names.items():
        if key not in arrays.files:
            what = "images" if role == "x" else "labels"
            raise MentorError(
                f"{name}: no array {key!r} for the {what} (arrays present: {present}). Save it "
                f"under that name, or pick another with ?{role}=NAME."
            )
    x, y = arrays[names["x"]], arrays[names["y"]]
    if x.ndim not in (3, 4) or y.ndim != 1 or 0 in x.shape[1:3]:
        raise MentorError(
            f"{name}: images {names['x']!r} must be N×H×W or N×H×W×C with H, W ≥ 1 and labels "
            f"{names['y']!r} a vector of N, got shapes {x.shape} and {y.shape}. Save them "
            "so (numpy.savez(path, x=images, y=labels)).")
    if len(x) != len(y):
        raise MentorError(
            f"{name}: {len(x)} images ({names['x']!r}) but {len(y)} labels ({names['y']!r}); "
            "they must match one to one."
        )
    if len(x) == 0:
        raise MentorError(
            f"{name} holds no images (array {names['x']!r} has shape {x.shape}). Save the "
            f"images under {names['x']!r}, or pick the array that holds them with ?x=NAME."
        )
    keep = np.ones(len(x), bool)
    for key, value in selection:
        keep &= _select(arrays, key, value, len(x), name, present)
    if not keep.any():
        raise MentorError(f"{name}: the selection keeps 0 of {len(x)} rows; check its values.")
    class_names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays.files else []
    if not class_names and selection:
        # The file's labels, not the selection's, say how many classes there are: a
        # selection may keep a few classes only, and their ids stay those of the file.
        try:
            labels = as_labels(y, len(x), name)
        except MentorError:  # e.g. -1 on unlabeled rows the selection leaves out
            labels = None
        if labels is not None:
            check_class_ids(labels, name)
            class_names = [str(i) for i in range(int(labels.max()) + 1)]
    return ImageSet(x[keep], y[keep], class_names, name)


def _select(arrays, key: str, value: str, n: int, name: str, present: str) -> np.ndarray:
    if key not in arrays.files:
        raise MentorError(
            f"{name}: cannot select on {key!r}: the file has no such array (arrays present: "
            f"{present})."
        )
    column = arrays[key]
    if column.shape != (n,):
        raise MentorError(
            f"{name}: cannot select on {key!r}: it has shape {column.shape}, not one value per "
            f"image ({n},)."
        )
    return column == _typed(value, column, key, name)


def _typed(value: str, column: np.ndarray, key: str, name: str):
    """The query value as the column's kind: text for text arrays, else a number."""
    if column.dtype.kind == "U":
        return value
    if column.dtype.kind == "S":
        return value.encode()
    for number in (int, float):
        try:
            return number(value)
        except ValueError:
            pass
    raise MentorError(f"{name}: {key!r} holds numbers, but the query asks for {value!r}.")
