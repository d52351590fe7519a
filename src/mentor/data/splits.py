"""A run's data: its train and test sources brought to one image size and channel count, and
the validation (and, without a test source, test) images split off."""

from __future__ import annotations

from mentor.config import DataConfig
import numpy as np

from mentor.data.imageset import ImageSet
from mentor.data.memory import check_fits_in_memory
from mentor.data.pipeline import prepare, split_fraction, streamed
from mentor.errors import MentorError


def load_splits(cfg: DataConfig, seed: int):
    """Load train (and test) sources, bring them to one image size and channel count, and
    split off validation (and test, when no test source is named). Returns (train, val, test);
    val is None when val_fraction is 0."""
    from mentor.data.sources import load_source

    files = {"stream": cfg.stream, "workers": cfg.workers}  # for folders and CSV lists
    train = load_source(cfg.train, image_size=cfg.image_size or None, **files)
    check_trainable(train)
    size = cfg.image_size or max(train.x.shape[1:3])
    channels = cfg.channels or train.x.shape[-1]
    if not streamed(train):
        check_fits_in_memory(len(train), size, channels, cfg.train)
    train = prepare(train, size, channels)
    if cfg.test:
        test = load_source(cfg.test, image_size=size, **files)
        if not streamed(test):
            check_fits_in_memory(len(test), size, channels, cfg.test)
        test = prepare(test, size, channels)
        check_same_classes(train, test)
    else:
        train, test = split_fraction(train, cfg.test_fraction, seed, ("train", "test"))
    val = None
    if cfg.val_fraction > 0:
        train, val = split_fraction(train, cfg.val_fraction, seed + 1)
    return train, val, test


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
