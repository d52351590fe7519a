"""Data source spec strings and what they parse into.

A spec names a reader and what it reads: "cifar10:train?per_class=500&seed=0",
"path/to/folder", "x.npz?split=0", "embedded:mnist5k". `parse_spec` turns one into a
`Spec`, refusing a malformed one with a message that quotes it; nothing is read here
except whether a bare path is a folder. The grammar, as `mentor sources` prints it, is
SOURCES_HELP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mentor.errors import MentorError

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

# The downloaded data sets that a spec names as NAME:SPLIT, and their splits.
SPLITS = {
    "cifar10": ("train", "test"),
    "mnist": ("train", "test"),
    "usps": ("train", "test"),
    "svhn": ("train", "test", "extra"),
    "flowers102": ("train", "val", "test"),
}
CIFAR10C_SEVERITIES = 5  # the release stacks severities 1..5, in order, in every NAME.npy

_SUBSET_KEYS = ("per_class", "seed")  # taken off any source's query
_SUBSET_EXAMPLE = "?per_class=500&seed=0"


@dataclass(frozen=True)
class Spec:
    """A parsed spec: which reader reads what, and the per-class subset drawn from it.

    `kind` is the reader: "memory" (arrays or an ImageSet given from Python), "embedded",
    "npz", "folder", "list", "cifar10c", or a data set of SPLITS. `target` is what it reads:
    a name, a path, a split, or "" for the downloaded CIFAR-10-C. `query` holds the reader's
    own key=value pairs: an npz's selection and array names, in the order given, or
    cifar10c's corruption and severity (a whole number).
    """

    text: str  # the spec as given, less per_class= and seed=: what messages quote
    kind: str
    target: str
    query: tuple[tuple[str, str | int], ...] = ()
    per_class: int | None = None
    seed: int = 0


def parse_spec(spec) -> Spec:
    """`spec` (a string or a path) parsed; a MentorError says what is wrong with it."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise MentorError(f"a data source is a spec string or a path, got "
                          f"{type(spec).__name__} {spec!r} (`mentor sources` lists them).")
    scheme, sep, _ = spec.partition(":")
    if sep and scheme == "memory":  # looked up whole: its name is the object's key
        return Spec(spec, "memory", spec)
    base, per_class, seed = _take_subset(spec)
    kind, target, query = _reader(base)
    return Spec(base, kind, target, tuple(query), per_class, seed)


def split_query(text: str) -> tuple[Path, list[tuple[str, str]]]:
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


def _reader(spec: str) -> tuple[str, str, list]:
    """(kind, target, query) of a spec without per_class= and seed=."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in ("embedded", "folder", "list"):
        return scheme, _no_query(spec, rest), []
    if sep and scheme == "npz":
        path, query = split_query(rest)
        return "npz", str(path), query
    if sep and scheme == "cifar10c":
        return ("cifar10c", *_cifar10c(rest))
    if sep and scheme in SPLITS:
        return scheme, _check_split(scheme, _no_query(spec, rest)), []
    path, query = split_query(spec)
    if path.suffix.lower() == ".npz":
        return "npz", str(path), query
    if path.suffix.lower() == ".csv":
        return "list", _no_query(spec, spec), []
    if path.is_dir():
        return "folder", _no_query(spec, spec), []
    raise MentorError(f"{spec!r} is not a data source (nor an existing folder).\n{SOURCES_HELP}")


def _take_subset(spec: str) -> tuple[str, int | None, int]:
    """Split per_class= and seed= off a spec's query: (the spec without them, N or None, S)."""
    head, sep, _ = spec.partition("?")
    if not sep:
        return spec, None, 0
    options, others = {}, []
    for key, value in split_query(spec)[1]:
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
    seed= (already taken off)."""
    head, sep, query = rest.partition("?")
    if sep and query:
        keys = ", ".join(repr(part.partition("=")[0]) for part in query.split("&"))
        raise MentorError(
            f"{spec!r}: unknown query key(s) {keys}; {spec.partition('?')[0]} takes only "
            f"per_class=N and seed=S, e.g. {spec.partition('?')[0]}{_SUBSET_EXAMPLE}."
        )
    return head


def _check_split(source: str, split: str) -> str:
    if split not in SPLITS[source]:
        raise MentorError(
            f"{source}:{split} is not a split of {source}; use one of "
            + ", ".join(f"{source}:{s}" for s in SPLITS[source])
            + "."
        )
    return split


def _cifar10c(rest: str) -> tuple[str, list]:
    """The folder ("" for the download) and the corruption and severity of cifar10c:REST.
    The corruption's name is checked where the release is read, which lists the names."""
    _, query = split_query(rest)
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
    return given_dir, [("corruption", options["corruption"]), ("severity", severity)]
