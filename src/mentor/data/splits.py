"""A run's train, validation and test images, assembled from its data config: the train and
test sources loaded and brought to one image size (`run_image_size`) and channel count, then
the validation (and, without a test source, test) images split off, stratified and seeded
(`split_fraction`). The semi-supervised recipes' split of labeled from unlabeled images
(`labeled_rows`, `labeled_split`) is drawn the same way.
"""

from __future__ import annotations

import numpy as np

from mentor.config import DataConfig
from mentor.data.files import is_streamed
from mentor.data.imageset import ImageSet
from mentor.data.memory import check_fits_in_memory
from mentor.data.prepare import prepare
from mentor.data.sources import load_source
from mentor.errors import MentorError


def run_image_size(cfg: DataConfig, train: ImageSet) -> int:
    """The side of a run's square images: data.image_size, or else the training images' own
    (their longer side: prepare pads the shorter)."""
    return cfg.image_size or max(train.image_shape[:2])


def load_splits(cfg: DataConfig, seed: int):
    """Load train (and test) sources, bring them to one image size and channel count, and
    split off validation (and test, when no test source is named). Returns (train, val, test);
    val is None when val_fraction is 0."""
    files = {"stream": cfg.stream, "workers": cfg.workers}  # for folders and CSV lists
    train = load_source(cfg.train, image_size=cfg.image_size or None, **files)
    check_trainable(train)
    size = run_image_size(cfg, train)
    channels = cfg.channels or train.image_shape[-1]
    train = _prepared(train, size, channels, cfg.train)
    if cfg.test:
        test = load_source(cfg.test, image_size=size, **files)
        test = _prepared(test, size, channels, cfg.test)
        check_same_classes(train, test)
    else:
        train, test = split_fraction(train, cfg.test_fraction, seed, ("train", "test"))
    val = None
    if cfg.val_fraction > 0:
        train, val = split_fraction(train, cfg.val_fraction, seed + 1)
    return train, val, test


def _prepared(data: ImageSet, size: int, channels: int, spec: str) -> ImageSet:
    """`data` prepared to the run's size and channels, refused first where images held in
    memory would not fit once resized (streamed ones are resized a batch at a time)."""
    if not is_streamed(data):
        check_fits_in_memory(len(data), size, channels, spec)
    return prepare(data, size, channels)


def _stratified_order(y: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]


def split_fraction(data: ImageSet, fraction: float, seed: int, names=("train", "val")):
    """Split off `fraction` of each class (stratified, seeded). Returns (rest, held_out)."""
    if not 0.0 < fraction < 1.0:
        raise MentorError(f"{data.name}: a split fraction must lie in (0, 1), got {fraction}.")
    rest, held = [], []
    for idx in _stratified_order(data.y, seed):
        k = int(round(fraction * len(idx)))
        held.append(idx[:k])
        rest.append(idx[k:])
    rest, held = np.sort(np.concatenate(rest)), np.sort(np.concatenate(held))
    if len(held) == 0 or len(rest) == 0:
        raise MentorError(
            f"{data.name}: splitting {len(data)} images at {fraction:.0%} leaves an empty part; "
            "use more data or another fraction."
        )
    return (data.subset(rest, f"{data.name}/{names[0]}"),
            data.subset(held, f"{data.name}/{names[1]}"))


def labeled_rows(data: ImageSet, labels_per_class: int, seed: int) -> np.ndarray:
    """The sorted rows of `labels_per_class` seeded images per class: those whose labels a
    semi-supervised run may use."""
    rows = []
    for c, idx in zip(np.unique(data.y), _stratified_order(data.y, seed)):
        if len(idx) < labels_per_class:
            raise MentorError(
                f"{data.name}: class {data.class_names[c]!r} has {len(idx)} images, fewer than "
                f"labels_per_class = {labels_per_class}. Lower labels_per_class or add data."
            )
        rows.append(idx[:labels_per_class])
    missing = sorted(set(range(data.num_classes)) - set(np.unique(data.y).tolist()))
    if missing:
        raise MentorError(
            f"{data.name}: no images at all for class(es) {missing[:10]}; labels_per_class "
            "needs every class present."
        )
    return np.sort(np.concatenate(rows))


def labeled_split(data: ImageSet, labels_per_class: int, seed: int):
    """Keep `labels_per_class` labeled images per class; the rest become unlabeled.

    Returns (labeled, unlabeled). The unlabeled set keeps its labels for monitoring only.
    """
    rows = labeled_rows(data, labels_per_class, seed)
    rest = np.setdiff1d(np.arange(len(data)), rows)
    return (data.subset(rows, f"{data.name}/labeled"),
            data.subset(rest, f"{data.name}/unlabeled"))


def check_same_classes(reference: ImageSet, other: ImageSet):
    if int(other.y.max()) >= reference.num_classes or other.num_classes > reference.num_classes:
        raise MentorError(
            f"{other.name} has {other.num_classes} classes but {reference.name} has "
            f"{reference.num_classes}; they must share one label space."
        )


def check_trainable(train: ImageSet):
    """Refuse a training set whose images all carry one label, from any source: a
    classifier of one class is right on every image it is shown, and its accuracy says
    nothing. (Class names alone are not enough: an npz may name ten classes and use one.)"""
    used = np.unique(train.y)
    if len(used) < 2:
        label = train.class_names[int(used[0])]
        raise MentorError(
            f"{train.name}: all {len(train)} training images are of one class ({label!r}); a "
            "classifier needs images of ≥ 2 classes. Check the labels (y), or the selection "
            "that kept only these rows.")
