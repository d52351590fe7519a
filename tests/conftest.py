"""Test conventions.

- The suite runs on torch by default; tests marked `neutral` run again on JAX in CI with
  `KERAS_BACKEND=jax python -m pytest -m neutral`.
- Tests that need ../shared/data skip with a reason where it is absent (a user's machine).
- `torch_once` leaves a neutral test out of the other backends' passes: a whole short run
  whose checks (files written, steps counted, a resume) the smoke runs already make there,
  and which costs 15-50 s of XLA compilation on JAX for nothing new.
"""

import os
import pathlib

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KERAS_BACKEND", "torch") == "torch":
        return
    once = [item for item in items if item.get_closest_marker("torch_once")]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not item.get_closest_marker("torch_once")]


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (present only on mentor's dev machines)")
    return SHARED_DATA


# ----------------------------------------------------------------------------- shared helpers
# Imported by the test files (`from conftest import bn_classifier`): one copy, not one a file.

import keras  # noqa: E402
import numpy as np  # noqa: E402


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


class Record(keras.layers.Layer):
    """Identity that keeps what it saw (eager backends only)."""

    def __init__(self, seen, **kwargs):
        super().__init__(**kwargs)
        self.keep = seen.append  # a bound method: Keras would track (copy) a list attribute

    def call(self, x):
        self.keep(keras.ops.convert_to_numpy(x).copy())
        return x


def bn_classifier(classes=3, size=8, name=None, record=None):
    """A tiny conv net with batch norm on size×size×1 raw pixels; `record` (a list) receives
    every input it sees."""
    layers = [keras.Input((size, size, 1))]
    if record is not None:
        layers.append(Record(record))
    layers += [keras.layers.Rescaling(1 / 255.0), keras.layers.Conv2D(4, 3, padding="same"),
               keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(classes)]
    return keras.Sequential(layers, name=name)


def mark_run(path, kind: str = "run"):
    """Mark a run folder made by hand as mentor's (as RunDir does before writing): mentor
    resumes, refuses or reports only folders it marked."""
    import json

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / ".mentor-run.json").write_text(json.dumps({"mentor": 1, "kind": kind, "files": []}))
    return path


def write_npz(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def write_digit_folder(root, *, per_class: int = 30, classes: int = 10, size: int = 16,
                       fmt: str = "png", source: str = "embedded:digits"):
    """The first `per_class` digits of each class of `source` (the UCI digits embedded with
    mentor, or its MNIST-5k), resized to size×size and written as root/<class>/<i>.<fmt>: a
    small real image folder. Returns root as a string."""
    import pathlib

    from PIL import Image

    from mentor.data.sources import load_source

    data = load_source(source)
    root = pathlib.Path(root)
    for c in range(classes):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(np.flatnonzero(data.y == c)[:per_class]):
            image = Image.fromarray(data.x[row, :, :, 0]).resize((size, size), Image.BILINEAR)
            image.save(root / str(c) / f"{i:04d}.{fmt}")
    return str(root)
