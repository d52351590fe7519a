"""Every data source behind one call: `load_source(spec) -> ImageSet`.

The spec is parsed (mentor.data.spec) and read by its reader: an .npz (mentor.data.npz), image
folders and CSV lists (mentor.data.folders), or a named data set, shipped or downloaded
(mentor.data.datasets); a per_class= subset is drawn from what it reads (`per_class_subset`).
Sources whose images vary in size (image folders, Flowers102) are fitted into an
image_size×image_size square while decoding, so memory stays bounded; the other sources return
their native size and the pipeline resizes batches. Downloads go to `cache_dir()` (or `cache=`)
and are reused once their checksum matches; offline, put the files there by hand.
"""

from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np

from mentor.data.datasets import load_cifar10c_spec, load_embedded, load_split
from mentor.data.download import cache_dir
from mentor.data.files import decode_image, is_streamed
from mentor.data.folders import IMAGE_EXTENSIONS, load_folder, load_list
from mentor.data.imageset import ImageSet
from mentor.data.npz import load_npz
from mentor.data.prepare import prepare
from mentor.data.spec import SOURCES_HELP, Spec, parse_spec
from mentor.errors import MentorError
from mentor.objects import lookup

__doc__ = f"{__doc__}\n{SOURCES_HELP}\n"


def load_source(spec: str, *, image_size: int | None = None, cache: Path | None = None,
                stream: str = "auto", workers: int = 0) -> ImageSet:
    """Load the data a spec string names (grammar in SOURCES_HELP) as an ImageSet.

    `image_size` fits variable-size images (folders, Flowers102) into a square while decoding;
    `cache` is where downloads live (default `cache_dir()`). A query's per_class= and seed=
    keys draw a per-class subset of whatever the rest of the spec names. Folders and CSV
    lists are decoded into memory or streamed from disk (`stream`, `workers`: `load_files`).
    """
    cache = Path(cache) if cache is not None else cache_dir()
    parsed = parse_spec(spec)
    if parsed.kind == "memory":  # arrays or an ImageSet given from Python (mentor.api)
        return _said_in_memory(lookup(parsed.text), stream)
    data = _read(parsed, image_size, cache, {"stream": stream, "workers": workers})
    data = _said_in_memory(data, stream)
    if parsed.per_class is None:
        return data
    return per_class_subset(data, parsed.per_class, parsed.seed)


def _read(spec: Spec, image_size: int | None, cache: Path, files: dict) -> ImageSet:
    """What `spec` names, read by its kind's reader."""
    if spec.kind == "embedded":
        return load_embedded(spec.target)
    if spec.kind == "npz":
        return load_npz(Path(spec.target), spec.query)
    if spec.kind == "folder":
        return load_folder(Path(spec.target), image_size=image_size, **files)
    if spec.kind == "list":
        return load_list(Path(spec.target), image_size=image_size, **files)
    if spec.kind == "cifar10c":
        return load_cifar10c_spec(spec.target, dict(spec.query), cache)
    return load_split(spec.kind, spec.target, cache, image_size)


def _said_in_memory(data: ImageSet, stream: str) -> ImageSet:
    """`data`, after a note where data.stream = "always" asked for a stream it cannot be:
    only images still in files stream, and an array source is in memory already."""
    if stream == "always" and not is_streamed(data):
        print(f"data: {data.name}: held in memory, not streamed: data.stream = \"always\" "
              "streams image folders and CSV lists only", flush=True)
    return data


def per_class_subset(data: ImageSet, per_class: int, seed: int = 0) -> ImageSet:
    """`per_class` images of every class of `data`, drawn without replacement.

    Each class's rows are shuffled by one numpy Generator seeded with `seed`, class by class,
    and the first `per_class` kept: the draw does not depend on `per_class`, so a smaller N
    keeps a subset of a larger N's images. Rows stay in `data`'s order; class names stay.
    """
    counts = np.bincount(data.y, minlength=data.num_classes)
    short = [(name, int(n)) for name, n in zip(data.class_names, counts) if n < per_class]
    if short:
        shown = ", ".join(f"{name!r} has {n}" for name, n in short[:5])
        fewest = int(counts.min())
        fix = (f"ask for at most per_class={fewest}" if fewest else
               "a class with no images cannot give any: select data that holds every class")
        raise MentorError(
            f"{data.name}: per_class={per_class} needs {per_class} images of every class, but "
            f"{len(short)} class(es) have fewer ({shown}{', …' if len(short) > 5 else ''}); "
            f"{fix}, or drop per_class."
        )
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(data.y == c)[rng.permutation(counts[c])[:per_class]]
            for c in range(data.num_classes)]
    joint = "&" if "?" in data.name else "?"
    name = f"{data.name}{joint}per_class={per_class}&seed={seed}"
    return data.subset(np.sort(np.concatenate(rows)), name=name)


def named_image_files(specs: list[str]) -> list[pathlib.Path] | None:
    """The image files named by `specs` (files, or one folder of images without class
    sub-folders), or None when `specs` is one data source spec."""
    paths = [pathlib.Path(s) for s in specs]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        if any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
            return None  # class sub-folders: a labelled folder source
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise MentorError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); give "
                              "a folder of images, image files or a data source "
                              "(`mentor sources`).")
        return files
    if len(paths) == 1 and paths[0].suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    for path in paths:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise MentorError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)}); "
                              "give image files, one folder of images, or one data source.")
        if not path.is_file():
            raise MentorError(f"no such image file: {path}")
    return paths


def load_images(specs: list[str], size: int, channels: int):
    """Images to classify, from one data source or from image files (`mentor predict`):
    (uint8 images size×size×channels, their names, labels or None, the source's class names
    or None). Images are resized-and-padded and converted as a run's data is, so a model
    sees what it saw in training."""
    files = named_image_files(specs)
    if files is None:
        data = prepare(load_source(specs[0], image_size=size), size, channels)
        return data.x, [str(i) for i in range(len(data))], data.y, data.class_names
    # one class id per file only to pass ImageSet's checks; the labels are not used
    images = np.stack([prepare(ImageSet(decode_image(f, size)[None], [0], ["?"], str(f)), size,
                               channels).x[0] for f in files])
    return images, [str(f) for f in files], None, None
