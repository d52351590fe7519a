"""Image files as a source: a folder of class folders (`load_folder`) or a CSV list of
`path,label` rows (`load_list`). Both come to `load_files`, which reads every file's header,
skips (or, strict, refuses) what does not read, and decides whether the set is decoded into
memory now or streamed from disk a batch at a time (`ImageFiles`). Class labels that are
numbers name classes by value (`class_names`), alike in both.
"""

from __future__ import annotations

import csv
import decimal
import os
import re
from pathlib import Path

import numpy as np

from mentor.data.files import BadImages, ImageFiles, available_cores, not_regular, scan
from mentor.data.imageset import ImageSet
from mentor.data.memory import check_fits_in_memory
from mentor.errors import MentorError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
STREAM_CHOICES = ("auto", "always", "never")
# data.stream = "auto" streams a set whose decoded uint8 images would take more than this:
# decoding 1 GiB up front takes minutes on a few cores (≈ 5,000 images/s a core at 32 px)
# and holds memory that batches, models and evaluation need; below it, decoding once beats
# decoding every epoch.
STREAM_ABOVE_BYTES = 2**30
_SHOWN_SKIPPED = 3  # names in the log line; metrics.json keeps a few more


def load_folder(path: Path, image_size: int | None = None, *, stream: str = "auto",
                workers: int = 0) -> ImageSet:
    """A folder with one sub-folder of images per class; see spec.SOURCES_HELP and
    `load_files`."""
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
