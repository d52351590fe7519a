"""Test images that a run trained on: evaluating a run on its own training images reports
memorisation, not accuracy, and nothing in the numbers shows it. Counted by hashing each
image's bytes after both sets are prepared to the same shape (identical pixels, not similar
ones: cheap, and free of false alarms); two streamed sets, which are never decoded whole,
by file identity instead (the same file, under any path or link)."""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import sys

from mentor.config import data_of
from mentor.data.files import is_streamed
from mentor.data.prepare import prepare
from mentor.data.splits import load_splits
from mentor.errors import MentorError
from mentor.objects import DATA_PREFIX

_CHUNK = 4096  # images decoded at a time from a file-backed set: memory stays bounded


def _digests(x) -> list[bytes]:
    """One digest per image of an array or of `ImageFiles` (read a chunk at a time)."""
    out = []
    for start in range(0, len(x), _CHUNK):
        out += [hashlib.blake2b(image.tobytes(), digest_size=16).digest()
                for image in x[start:start + _CHUNK]]
    return out


def count_overlap(seen, test) -> int:
    """How many images of `test` equal, byte for byte, an image of `seen` (same shape;
    `seen` an array or a list of arrays and `ImageFiles`)."""
    known = {d for part in (seen if isinstance(seen, list) else [seen]) for d in _digests(part)}
    return sum(d in known for d in _digests(test))


def _identity(path):
    """(device, inode) of a file: the same under any path or link (its real path where it
    cannot be read)."""
    try:
        info = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return info.st_dev, info.st_ino


def test_in_train(train, val, test) -> int:
    """How many images of `test` a run trains on (`train`, and `val`, which it selects
    with): the same pixels where every set is in memory (hashing them is cheap), else the
    same files where every set came from files (a streamed set is never decoded whole),
    else the same pixels, decoding what is streamed a chunk at a time."""
    parts = [part for part in (train, val) if part is not None]
    in_memory = not any(is_streamed(part) for part in [*parts, test])
    files = [part.source_files() for part in [*parts, test]]
    if not in_memory and all(f is not None for f in files):
        known = {_identity(path) for part in files[:-1] for path in part}
        return sum(_identity(path) in known for path in files[-1])
    return count_overlap([part.x for part in parts], test.x)


def warn_test_in_train(train, val, test, test_spec: str, train_spec: str) -> int:
    """Count the test images the run trains on and, when there are any, say so loudly: the
    run goes on (a deliberate check on training images is allowed), but its test accuracy
    is not one, and the log, metrics.json and report.html say so (finish_run)."""
    overlap = test_in_train(train, val, test)
    if overlap:
        print(f"mentor: warning: {overlap} of {len(test)} test images (data.test = {test_spec}) "
              f"are also training images (data.train = {train_spec}); the test accuracy of "
              "this run measures memorisation, not generalisation. Name a test set that "
              "shares no image with data.train, or leave data.test empty to split one off.",
              file=sys.stderr, flush=True)
    return overlap


@functools.lru_cache(maxsize=2)  # predict asks for class names, then the images
def _run_data(run: str):

    data, seed = data_of(str(pathlib.Path(run) / "config.toml"))
    if data.train.startswith(DATA_PREFIX):
        raise MentorError("its training images were arrays given from Python (mentor.api), "
                          "which the run folder does not keep")
    train, val, _ = load_splits(data, seed)
    return data, train, val


def run_class_names(run) -> list[str] | None:
    """The class names of the data a run trained on, or None where it cannot be loaded."""
    try:
        return _run_data(str(run))[1].class_names
    except MentorError:
        return None


def training_images(run, image_shape) -> tuple[list, str]:
    """The images a run trained on (its train and validation splits, as the run split them
    from its config and seed), prepared to `image_shape`, as a list of parts (arrays, or
    `ImageFiles` for streamed sets); and the run's data.train."""
    data, train, val = _run_data(str(run))
    seen = [prepare(part, image_shape[0], image_shape[2]).x for part in (train, val)
            if part is not None]
    return seen, data.train


def record_overlap(metrics: dict, run, x) -> int | None:
    """Warn (stderr) and set metrics["overlap_images"] when the images `x` (N×H×W×C) hold
    images `run` trained on. Without a run, or when its training data cannot be loaded
    here, nothing is claimed."""
    if run is None or x is None:
        return None
    try:
        seen, train_spec = training_images(run, x.shape[1:])
    except MentorError as e:  # a moved or uncached source: say so, and do not fail the command
        print(f"mentor: warning: could not check {run}'s training images against the test "
              f"images ({e})", file=sys.stderr)
        return None
    overlap = count_overlap(seen, x)
    metrics["overlap_images"] = overlap
    if overlap:
        print(f"mentor: warning: {overlap} of {len(x)} test images are training images of "
              f"this run (data.train = {train_spec}); this accuracy is not a test accuracy",
              file=sys.stderr)
    return overlap
