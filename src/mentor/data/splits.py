"""A run's data: its train and test sources brought to one image size and channel count, and
the validation (and, without a test source, test) images split off."""

from __future__ import annotations

import os

from mentor.config import DataConfig
from mentor.data.imageset import ImageSet
from mentor.data.pipeline import prepare, split_fraction
from mentor.errors import MentorError


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux, else the
    physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(images: int, size: int, channels: int, what: str):
    """Refuse a resize whose uint8 result would take more than half the available memory
    (training then needs copies, batches and the models beside it)."""
    need = images * size * size * channels
    free = available_memory()
    if need > free // 2:
        raise MentorError(
            f"{what}: {images} images at {size}×{size}×{channels} take {need / 2**30:.1f} GiB "
            f"as uint8, more than half of the {free / 2**30:.1f} GiB of memory available. "
            "Lower data.image_size, or select fewer images.")


def load_splits(cfg: DataConfig, seed: int):
    """Load train (and test) sources, bring them to one image size and channel count, and
    split off validation (and test, when no test source is named). Returns (train, val, test);
    val is None when val_fraction is 0."""
    from mentor.data.sources import load_source

    train = load_source(cfg.train, image_size=cfg.image_size or None)
    size = cfg.image_size or max(train.x.shape[1:3])
    channels = cfg.channels or train.x.shape[-1]
    check_fits_in_memory(len(train), size, channels, cfg.train)
    train = prepare(train, size, channels)
    if cfg.test:
        test = load_source(cfg.test, image_size=size)
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
