"""Every place mentor leans on Keras or backend internals, in one file, each with the version
it was measured on. When Keras changes, this is the file to read; `KERAS_TESTED` is the range
the test suite covers (pyproject.toml caps the dependency to it).

- `flatten_layers`: every sub-layer of a model. Keras has no public recursive walk;
  `Layer._flatten_layers` (Keras 3.12–3.15) is the one Keras itself uses.
- `scheduled_learning_rate`: the learning rate an optimizer applies at its current step.
  `optimizer.learning_rate` returns the schedule's value only on some backends; the private
  `_learning_rate` (Keras 3.15) is the schedule object itself.
- `batch_norm_statistics_frozen`: batch norm on the batch's statistics without updating the
  moving averages. Keras has no switch for it; momentum 1 makes the update m·1 + x·0 = m
  exactly, and the momentum is Python state, so it holds inside a JAX or TensorFlow trace.
  Restoring saved statistics after the pass instead breaks torch's autograd (an in-place
  modification of a tensor the backward pass needs; seen with torch 2.13).
- `fast_torch_enabled`: models/fast_torch.py swaps Conv2D's and BatchNormalization's ops
  for fused torch ones on the torch backend (Keras 3.15.1, torch 2.13). Set
  MENTOR_FAST_TORCH=0 to keep Keras's own ops, e.g. to tell a numerical difference apart.
"""

from __future__ import annotations

import contextlib
import os

import keras

KERAS_TESTED = ("3.12", "3.15.1")  # the oldest and newest Keras the suite has run on


def flatten_layers(model, include_self: bool = True) -> list:
    return list(model._flatten_layers(include_self=include_self))


def scheduled_learning_rate(optimizer) -> float:
    lr = optimizer.learning_rate
    schedule = getattr(optimizer, "_learning_rate", None)
    if callable(schedule):
        lr = schedule(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(lr))


@contextlib.contextmanager
def batch_norm_statistics_frozen(model):
    norms = [layer for layer in flatten_layers(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 1.0
    try:
        yield
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def fast_torch_enabled() -> bool:
    return os.environ.get("MENTOR_FAST_TORCH", "1").strip().lower() not in ("0", "false", "no",
                                                                            "off")
