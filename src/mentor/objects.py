"""Python objects standing in a config: a `keras.Model` or arrays given to `mentor.api`
get a name, `object:N` or `memory:N`, that the config carries like any model name or data
source. The names hold only within the Python process that made them: config.toml records
them, and a run resumed in another process must be given the same objects again.

A finished run needs none of them: its trained models are .keras files in the run
folder, so the commands that use a finished run (evaluate, predict, robustness) read its
config `unresolved()`, where such names are taken as written."""

from __future__ import annotations

import contextlib
import contextvars
import itertools

from mentor.errors import MentorError

MODEL_PREFIX, DATA_PREFIX = "object:", "memory:"
_objects: dict[str, object] = {}
_numbers = itertools.count()
_unresolved = contextvars.ContextVar("objects_unresolved", default=False)


def register(obj, prefix: str) -> str:
    name = f"{prefix}{next(_numbers)}"
    _objects[name] = obj
    return name


def lookup(name: str):
    if name not in _objects:
        raise MentorError(
            f"{name!r} names a Python object given to mentor.api in another process; pass the "
            "same model or arrays again (mentor.api.run(..., model=..., train=...)).")
    return _objects[name]


def check(name: str):
    """Refuse a name whose object is not in this process, unless reading `unresolved()`."""
    if not _unresolved.get():
        lookup(name)


@contextlib.contextmanager
def unresolved():
    """Within the block, configs naming Python objects load without them."""
    token = _unresolved.set(True)
    try:
        yield
    finally:
        _unresolved.reset(token)
