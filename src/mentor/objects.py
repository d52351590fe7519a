"""Python objects standing in a config: a `keras.Model` or arrays given to `mentor.api`
get a name, `object:N` or `memory:N`, that the config carries like any model name or data
source. The names hold only within the Python process that made them: config.toml records
them, and a run resumed in another process must be given the same objects again."""

from __future__ import annotations

import itertools

from mentor.errors import MentorError

MODEL_PREFIX, DATA_PREFIX = "object:", "memory:"
_objects: dict[str, object] = {}
_numbers = itertools.count()


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
