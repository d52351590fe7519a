"""How much memory a decoded data set needs, and whether it may have it."""

from __future__ import annotations

import os

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
