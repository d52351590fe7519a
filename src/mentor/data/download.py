"""Downloads that check their bytes, survive interruptions and say what to do offline.

`fetch` returns a cached copy whose checksum matches without touching the network; otherwise
it downloads to a temporary file beside `dest` (mentor.atomic), verifies, and renames, so a
file at `dest` is always complete.
`extract` unpacks an archive beside its destination and renames at the end for the same reason.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from mentor.atomic import atomic_path
from mentor.errors import MentorError

_CHUNK_BYTES = 1 << 20  # 1 MiB reads: few system calls, little memory
_TIMEOUT_S = 60  # a stalled server fails with a message instead of hanging forever
_PROGRESS_MIN_BYTES = 10 << 20  # smaller files arrive in seconds: progress would be noise
_TTY_UPDATES_PER_S = 4  # readable, and cheap on a slow terminal
_LOG_STEP_PERCENT = 10  # a log file gets at most 10 progress lines per download
_ALGORITHMS = ("md5", "sha256")


def cache_dir() -> Path:
    """Where downloads live: `$MENTOR_CACHE` if set, else `~/.cache/mentor`."""
    env = os.environ.get("MENTOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mentor"


def _urlopen(url: str):
    """The one place that touches the network (tests replace it)."""
    return urllib.request.urlopen(url, timeout=_TIMEOUT_S)


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algo, _, digest = checksum.partition(":")
    if algo not in _ALGORITHMS or not digest:
        raise MentorError(
            f"checksum {checksum!r} is not understood; write it as 'md5:<hex>' or 'sha256:<hex>'."
        )
    return algo, digest.lower()


def _new_hash(algo: str):
    # md5 identifies files here, it protects nothing: say so, or FIPS builds refuse it.
    return hashlib.new(algo, usedforsecurity=False)


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file, read in chunks so that gigabyte archives fit in memory."""
    digest = _new_hash(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, checksum: str) -> Path:
    """Return `dest`, downloading `url` there first unless a copy with `checksum` is there.

    `checksum` is "md5:<hex>" or "sha256:<hex>". Raises MentorError on a network failure (the
    message says where to put a copy made elsewhere) or on a checksum mismatch.
    """
    dest = Path(dest)
    algo, expected = _parse_checksum(checksum)
    stale = dest.is_file()
    if stale and file_digest(dest, algo) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as part:  # removed on any failure, renamed to dest when good
        try:
            got = _download(url, part, algo)
        except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
            note = " (the file there now does not match)" if stale else ""
            raise MentorError(
                f"could not download {url} ({_reason(e)}). If this machine is offline, "
                f"download it elsewhere and put it at {dest}{note} (checksum {checksum}); "
                "mentor uses it from there without the network."
            ) from e
        if got != expected:
            raise MentorError(
                f"{url} arrived with the wrong checksum: expected {algo}:{expected}, got "
                f"{algo}:{got}. The download was corrupted or the file changed on the server; "
                f"try again, or put a good copy at {dest}."
            )
    return dest


def _reason(error: Exception) -> str:
    # URLError wraps the socket error in .reason; HTTPError's str() carries the status code.
    if type(error) is urllib.error.URLError:
        return str(error.reason)
    return str(error) or type(error).__name__


def _download(url: str, part: Path, algo: str) -> str:
    """Stream `url` into `part`; return the hex digest of what arrived."""
    digest = _new_hash(algo)
    with _urlopen(url) as response, open(part, "wb") as out:
        # HTTPResponse.length is the Content-Length; None when the server does not say.
        total = getattr(response, "length", None)
        progress = _Progress(url, total)
        done = 0
        for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            progress.update(done)
        progress.close()
    if total is not None and done < total:
        # read(n) returns short data when the connection drops: say so, not "wrong checksum".
        raise ConnectionError(f"connection closed after {done} of {total} bytes")
    return digest.hexdigest()


class _Progress:
    """Percent and MB on stderr: a live line on a terminal, every 10 % in a log."""

    def __init__(self, url: str, total: int | None):
        self.label = url.rsplit("/", 1)[-1]
        self.total = total
        self.tty = sys.stderr.isatty()
        if total is None:  # only a live MB count makes sense, and only on a terminal
            self.active = self.tty
        else:
            self.active = total >= _PROGRESS_MIN_BYTES
        self.last_time = 0.0
        self.last_step = -1
        self.done = 0

    def _line(self, done: int) -> str:
        mb = done / 1e6
        if self.total is None:
            return f"{self.label}: {mb:.1f} MB"
        return f"{self.label}: {100 * done // self.total:3d}% of {self.total / 1e6:.1f} MB"

    def update(self, done: int) -> None:
        self.done = done
        if not self.active:
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last_time >= 1 / _TTY_UPDATES_PER_S:
                self.last_time = now
                print("\r" + self._line(done), end="", file=sys.stderr, flush=True)
            return
        step = 100 * done // self.total // _LOG_STEP_PERCENT
        if step > self.last_step:
            self.last_step = step
            print(self._line(done), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.active and self.tty:  # the live line may lag: end on the final count
            print("\r" + self._line(self.done), file=sys.stderr, flush=True)


def extract(archive: Path, into: Path) -> Path:
    """Unpack a .tar.gz/.tgz/.tar archive so that its top-level entries appear in `into`.

    Members go to a hidden temporary folder inside `into` first; each top-level entry is renamed
    into place only once everything is out, so a folder that exists is complete. Entries already
    in `into` are kept (they came from an earlier complete extraction). Returns `into`.
    """
    archive, into = Path(archive), Path(into)
    if not archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise MentorError(f"cannot extract {archive}: only .tar.gz, .tgz and .tar are supported.")
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=into))
    try:
        _extract_all(archive, staging)
        for entry in staging.iterdir():
            if not (into / entry.name).exists():
                os.replace(entry, into / entry.name)
    except (OSError, EOFError, tarfile.TarError) as e:
        raise MentorError(
            f"could not extract {archive} into {into} ({e}). Check free disk space; if the "
            "archive is damaged, delete it and mentor downloads it again."
        ) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return into


def _extract_all(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:  # "r:*" detects gzip or plain tar
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.10.12 / 3.11.4: refuse unsafe paths
            tar.extractall(into, filter="data")
        else:  # older Pythons: the archive's checksum was verified before this point
            tar.extractall(into)
