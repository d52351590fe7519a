"""Writing a file so that no reader ever sees half of it: through a temporary file beside
it, renamed over it when complete (`atomic_path`, `write_atomically`). Every file mentor
writes goes this way: run folders, checkpoints, reports and figures, downloads, result
files. A full disk becomes one plain message, and the part written is removed."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import secrets

from mentor.errors import MentorError

# Temporary files and folders start with this: hidden, and never a name of the user's.
TEMP_PREFIX = ".mentor-tmp-"


@contextlib.contextmanager
def disk_errors(partial):
    """Turn a full disk (or a quota) while writing `partial` into one plain message, and
    remove the part written: nothing half-written stays under a name that looks complete."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        with contextlib.suppress(OSError):
            os.remove(str(partial))
        raise MentorError(
            f"the disk is full: writing {partial} failed ({e.strerror}). Free some space and "
            "run the same command again: it resumes from the newest complete checkpoint."
        ) from None


@contextlib.contextmanager
def atomic_path(final):
    """A temporary path beside `final` to write to: on success it replaces `final`
    (renamed, so a reader sees the old file or the whole new one); on any failure,
    Ctrl-C and SIGTERM included, it is removed. Its name is hidden and holds mentor's
    prefix, the process and a random part, so it can never be a user's file; it ends
    with `final`'s name, whose suffix tells Keras, NumPy and Matplotlib the format."""
    final = pathlib.Path(final)
    tmp = final.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{final.name}")
    try:
        with disk_errors(tmp):
            yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_atomically(path, text: str) -> pathlib.Path:
    """`path.write_text(text)` (UTF-8) through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return pathlib.Path(path)
