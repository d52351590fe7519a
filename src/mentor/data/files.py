"""`ImageFiles`: image files that act as an N×S×S×C uint8 array, decoded only when indexed.

A folder or a CSV list of images is held as its file names: `files[rows]` decodes those rows
(and fits each into S×S, aspect kept), so a training stream holds a few batches at a time
and never the whole set. Nothing here imports Keras: the loader's worker processes import
this module to decode, and a worker that imported Keras and its backend would cost each
process seconds to start and hundreds of MB.

Files are checked when they are listed by reading their headers only (`scan`): a file that is
empty, not an image, or of an unknown format is skipped and counted there, before training,
as when a folder is decoded whole. A file whose header reads but whose pixels do not (a
truncated JPEG) is met only when a batch decodes it; it is replaced in that batch by the
batch's previous good image (or next, for the first row), which keeps every batch full and
the order a pure function of the step, and it is recorded (`late_log`), or refused under
data.strict.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mentor.data.memory import check_fits_in_memory
from mentor.data.resize import resize_and_pad_one
from mentor.errors import MentorError
from mentor.pixels import float_scale, to_channels

_GRAY_MODES = ("1", "L", "LA")  # 8-bit gray PIL modes; 16-bit ones ("I…") are rescaled
_UINT16_TO_UINT8 = 257  # 65535 / 255
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_FILE_KINDS = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
               stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
               stat.S_ISDIR: "a folder"}


def not_regular(mode: int) -> str | None:
    """What a file of stat mode `mode` is, when it is not a regular file; else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _FILE_KINDS.items() if test(mode)), "not a file")


def open_regular(file):
    """`file` opened for reading in binary, refused (OSError) unless it is a regular file.

    Opened without blocking and checked on the open descriptor: a named pipe, which would
    block a reader until some writer comes (forever, in a training loop), is refused at
    once, even one swapped in for an image after the folder was listed."""
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    kind = not_regular(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        raise OSError(f"not a regular file but {kind}; list image files only")
    return os.fdopen(fd, "rb")


def decode_image(file, image_size: int | None) -> np.ndarray:
    """H×W×1 for gray images, H×W×3 otherwise; fitted into image_size² when given."""
    try:
        with open_regular(file) as f, Image.open(f) as img:
            if image_size:
                img.draft(img.mode, (image_size, image_size))  # JPEG: decode at reduced scale
            img = _as_l_or_rgb(img, file)
    except _DECODE_ERRORS as e:
        raise MentorError(f"cannot decode the image {file} ({e}); remove or replace it.") from e
    if image_size:
        return resize_and_pad_one(img, image_size)
    array = np.asarray(img)
    return array[..., None] if array.ndim == 2 else array


def _as_l_or_rgb(img: Image.Image, file) -> Image.Image:
    if img.mode == "F":  # 32-bit float gray (TIFF): its range says 0..1 or 0..255
        pixels = np.asarray(img, np.float64)
        if not np.isfinite(pixels).all():
            raise MentorError(f"the image {file} has NaN or infinite pixels; replace it.")
        scale = float_scale(float(pixels.min(initial=0)), float(pixels.max(initial=0)),
                            f"the image {file}")
        return Image.fromarray(np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8), "L")
    if img.mode.startswith("I"):  # 16-bit gray: PIL's convert("L") would clip, not scale
        scaled = np.asarray(img, np.float64) / _UINT16_TO_UINT8
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    return img.convert("L" if img.mode in _GRAY_MODES else "RGB")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def why_bad(file, error: Exception) -> str:
    """Why a file did not decode, in a few words for the log."""
    try:
        info = os.stat(file)
    except OSError:
        return "missing file"
    kind = not_regular(info.st_mode)
    if kind:
        return f"not a regular file but {kind}"
    if info.st_size == 0:
        return "empty file"
    cause = error.__cause__ if error.__cause__ is not None else error
    return f"{type(cause).__name__}: {cause}" if cause is not error else str(error)


def _header(file: str):
    """(width, height, gray) from the header alone, or the exception that says why not."""
    try:
        with open_regular(file) as f, Image.open(f) as img:
            gray = img.mode in _GRAY_MODES or img.mode.startswith("I") or img.mode == "F"
            return img.size[0], img.size[1], gray
    except _DECODE_ERRORS as e:
        return e


# Header reads wait on the disk more than on the CPU: threads overlap them. 16 keeps a
# network file system busy without flooding it.
_SCAN_THREADS = 16


def scan(files: list[str]):
    """Read every file's header. Returns (keep, sizes, gray, bad): `keep` flags the files
    whose header reads; `sizes` (width, height) and `gray` are those files', in order; `bad`
    lists the others as (file, reason)."""
    with concurrent.futures.ThreadPoolExecutor(_SCAN_THREADS) as pool:
        headers = list(pool.map(_header, files, chunksize=256))
    good = [h for h in headers if not isinstance(h, Exception)]
    bad = [(f, why_bad(f, h)) for f, h in zip(files, headers) if isinstance(h, Exception)]
    keep = np.array([not isinstance(h, Exception) for h in headers], bool)
    sizes = np.array([h[:2] for h in good], np.int64).reshape(-1, 2)
    gray = np.array([h[2] for h in good], bool)
    return keep, sizes, gray, bad


class ImageFiles:
    """N image files seen as an N×size×size×channels uint8 array.

    Indexing with an integer array, a list or a slice decodes those rows (a stacked array);
    an integer decodes one image. `np.asarray(files)` decodes every row, refused where the
    result would not fit in memory: a streamed training set is only ever indexed a batch
    at a time (`decoded_most` records the largest single decode, which tests watch).
    `strict` refuses a file that fails to decode at batch time; otherwise it is replaced
    within its batch and its name appended to `late_log` (one line per file, from any
    worker process: appends of one short line are atomic).

    A replaced image keeps its own row's label, so it must never be scored: every decode
    in this process also keeps, in `unreadable` (shared by the sets taken or resized from
    this one), the files whose latest decode failed, and scores leave their rows out
    (`scored_rows`). Worker processes decode copies: what they meet is training, replaced.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size: int | tuple[int, int], channels: int, *,
                 strict: bool = False, late_log: str | None = None, name: str = "files",
                 unreadable: dict | None = None):
        self.paths = np.asarray(paths, dtype=object)
        self.unreadable = {} if unreadable is None else unreadable  # file → why
        # an int fits every image into size×size; (height, width) keeps images of that one
        # native size as they are
        self.size = size if isinstance(size, tuple) else int(size)
        self.channels, self.name = int(channels), name
        self.strict, self.late_log = strict, late_log
        self.decoded_most = 0

    @property
    def shape(self) -> tuple[int, int, int, int]:
        h, w = self.size if isinstance(self.size, tuple) else (self.size, self.size)
        return (len(self.paths), h, w, self.channels)

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index) -> ImageFiles:
        """The files at `index` (rows or a slice), still undecoded."""
        return self._like(self.paths[index if isinstance(index, slice) else np.asarray(index)])

    def resized(self, size: int, channels: int) -> ImageFiles:
        out = self._like(self.paths)
        out.size, out.channels = int(size), int(channels)
        return out

    def _like(self, paths) -> ImageFiles:
        return ImageFiles(paths, self.size, self.channels, strict=self.strict,
                          late_log=self.late_log, name=self.name, unreadable=self.unreadable)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._decode(self.paths[index])
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        return self.decode_rows(rows)

    def decode_rows(self, rows, threads: int = 1) -> np.ndarray:
        """The images at `rows`, stacked, decoded by `threads` threads; a row that fails to
        decode is replaced (see the class) or refused."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        self.decoded_most = max(self.decoded_most, len(rows))
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        good = np.zeros(len(rows), bool)

        def one(i):
            path = self.paths[rows[i]]
            try:
                out[i] = self._decode(path)
                good[i] = True
                self.unreadable.pop(path, None)
            except MentorError as error:
                if self.strict:
                    raise MentorError(f"{error} Without --strict (data.strict) such files are "
                                      "replaced in training, left out of test and validation "
                                      "scores, and counted.") from None
                self._record(path, error)

        if threads > 1 and len(rows) > 1:
            with concurrent.futures.ThreadPoolExecutor(min(threads, len(rows))) as pool:
                list(pool.map(one, range(len(rows))))
        else:
            for i in range(len(rows)):
                one(i)
        if not good.all():
            if not good.any():
                raise MentorError(f"{self.name}: no image of a batch of {len(rows)} decodes "
                                  f"(e.g. {self.paths[rows[0]]}); check the files.")
            first = int(np.argmax(good))
            for i in range(len(rows)):  # the previous good row, or the first one
                if not good[i]:
                    out[i] = out[i - 1] if i > first else out[first]
        return out

    def _decode(self, path) -> np.ndarray:
        image = decode_image(path, None if isinstance(self.size, tuple) else self.size)
        if image.shape[:2] != self.shape[1:3]:
            raise MentorError(f"the image {path} is {image.shape[0]}×{image.shape[1]}, not "
                              f"{self.shape[1]}×{self.shape[2]} as when it was listed.")
        return to_channels(image, self.channels) if image.shape[-1] != self.channels else image

    def _record(self, path, error: MentorError):
        why = why_bad(path, error)
        self.unreadable[path] = why
        line = f"{path}\t{why}".replace("\n", " ")
        if self.late_log:
            with open(self.late_log, "a") as f:
                f.write(line + "\n")

    def load(self, threads: int = 1):
        """Decode every file into memory, `threads` at a time (PIL lets go of the
        interpreter while it decodes and resizes). A file that fails is dropped, not
        replaced (refused under `strict`). Returns (images, ok flags per file, bad files
        with why)."""
        def one(row):
            try:
                return self._decode(self.paths[row])
            except MentorError as error:
                if self.strict:
                    raise MentorError(f"{self.name}: {error} Without --strict (data.strict) "
                                      "such files are skipped and counted.") from None
                return error

        out = np.empty(self.shape, np.uint8)
        ok = np.zeros(len(self), bool)
        bad = []
        with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
            for row, image in enumerate(pool.map(one, range(len(self)), chunksize=64)):
                if isinstance(image, Exception):
                    bad.append((str(self.paths[row]), why_bad(self.paths[row], image)))
                else:
                    out[row], ok[row] = image, True
        return (out if ok.all() else out[ok]), ok, bad

    def __getstate__(self):
        # A worker's decodes are training's: what it meets goes to late_log, not back here.
        return {**self.__dict__, "unreadable": {}}

    def __array__(self, dtype=None, copy=None):
        check_fits_in_memory(len(self), max(self.shape[1:3]), self.channels, self.name)
        out = self.decode_rows(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageFiles({self.name!r}, {len(self)} files at {self.shape[1:]})"


def is_streamed(data) -> bool:
    """True when `data`, an ImageSet or its images, is file-backed (`ImageFiles`): decoded a
    batch at a time, never held whole in memory. None is not."""
    return isinstance(getattr(data, "x", data), ImageFiles)


def scored_rows(x) -> np.ndarray:
    """Which rows of `x` (an array, or `ImageFiles` after a decode) a score may count: all
    but the files whose latest decode in this process failed, which stood in for nothing."""
    if not is_streamed(x) or not x.unreadable:
        return np.ones(len(x), bool)
    return ~np.isin(x.paths.astype(str), np.array(list(x.unreadable), dtype=str))


def unscored(x) -> list[tuple[str, str]]:
    """The (file, why) pairs of `x`'s rows that `scored_rows` leaves out, in row order."""
    if not is_streamed(x):
        return []
    return [(str(p), x.unreadable[p]) for p in x.paths[~scored_rows(x)]]


def scored_mask(x, name: str) -> np.ndarray:
    """`scored_rows` of `x` once its images were decoded for a score, saying (once a file)
    which are left out; a set none of whose images can be read has no score at all. Every
    accuracy, agreement or corruption cell mentor reports counts only these rows."""
    scored = scored_rows(x)
    if not scored.all():
        BadImages.note_unscored(name, unscored(x))
    if not scored.any():
        raise MentorError(f"{name}: none of its {len(x)} images can be read (e.g. "
                          f"{unscored(x)[0][0]}); restore the files.")
    return scored


def read_late_log(path) -> list[tuple[str, str]]:
    """The (file, reason) pairs a run's workers recorded, each file once, in order met."""
    if not path or not Path(path).is_file():
        return []
    seen: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        file, _, why = line.partition("\t")
        seen.setdefault(file, why)
    return list(seen.items())


class BadImages:
    """What loading does with an image file it cannot decode (corrupt, truncated, zero
    bytes): skip it and remember it, by default (one broken file among thousands should
    not cost a run; the run's log and metrics.json say which), or refuse it (`strict`,
    the data.strict key and --strict). A run holds its own setting for its duration
    (`scope`, around every Recipe.run) and records what was skipped at its end: the files
    found while listing or decoding up front (`skipped`) and those a streaming worker met
    (`late_log`, a file the workers append to)."""

    strict: bool = False
    skipped: list = []  # (file, reason), in the order met
    unscored: dict = {}  # test or validation file → reason: left out of every score
    late_log: str | None = None

    @classmethod
    def reset(cls, strict: bool = False):
        cls.strict, cls.skipped, cls.unscored = bool(strict), [], {}

    @classmethod
    def note_unscored(cls, name: str, pairs: list[tuple[str, str]]):
        """Say (once a file) that images of the set `name` could not be read and count for
        nothing in its scores; metrics.json counts them (`unscored_images`)."""
        new = [(f, why) for f, why in pairs if f not in cls.unscored]
        if not new:
            return
        cls.unscored.update(new)
        shown = "; ".join(f"{f} ({why})" for f, why in new[:3])
        more = f"; and {len(new) - 3} more" if len(new) > 3 else ""
        print(f"data: {name}: {len(new)} image(s) could not be read and are left out of its "
              f"accuracy, from the hits and from the count: {shown}{more} (--strict refuses "
              "them)", flush=True)

    @classmethod
    @contextlib.contextmanager
    def scope(cls, strict: bool):
        """Within the block: `strict`, a fresh list of skipped files and a fresh late log;
        afterwards the default again (skip), so one strict run leaves no setting behind."""
        cls.reset(strict)
        handle, cls.late_log = tempfile.mkstemp(prefix="mentor-skipped-", suffix=".tsv")
        os.close(handle)
        try:
            yield cls
        finally:
            with contextlib.suppress(OSError):
                os.remove(cls.late_log)
            cls.strict, cls.late_log = False, None

    @classmethod
    def all_skipped(cls) -> list[tuple[str, str]]:
        """Every file skipped so far in this run, each once, in the order met."""
        seen = dict(cls.skipped)
        for file, why in read_late_log(cls.late_log):
            seen.setdefault(file, why)
        return list(seen.items())
