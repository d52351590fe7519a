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
- `TwoRateUpdate`: an optimizer whose update of some variables uses learning_rate × scale
  (train.backbone_lr_scale). Keras has one learning rate per optimizer; every backend's
  update funnels through the private `Optimizer._backend_update_step(grads, variables,
  learning_rate)` (Keras 3.12–3.15; torch's fused optimizers override it and handle any
  subset of the variables), so calling it once per group gives each group its rate.
- `flush_tensorboard`: the event files of Keras's TensorBoard callback written now, not up to
  2 minutes later (tf.summary buffers); the callback keeps its writers in the private
  `_writers` (Keras 3.15).
- `jax_started`: whether JAX has already computed (then it can no longer join a
  multi-process job). JAX says so only in the private `jax._src.xla_bridge` (JAX 0.4–0.10).
- `release_shared_memory`: unlink the shared-memory block a Grain worker's array arrived in,
  now rather than when the array is collected (Grain 0.2 marks its own with the private
  `_unlink_on_del` and unlinks on a thread pool that stops with the interpreter, leaving
  the blocks freed last behind: "leaked shared_memory objects" at exit).
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


class TwoRateUpdate:
    """Optimizer mixin: variables whose id is in `_scaled` update at learning_rate ×
    `_scale`, the rest at learning_rate."""

    def _backend_update_step(self, grads, variables, learning_rate):
        pairs = list(zip(grads, variables))
        scaled = [(g, v) for g, v in pairs if id(v) in self._scaled]
        rest = [(g, v) for g, v in pairs if id(v) not in self._scaled]
        for group, rate in ((scaled, learning_rate * self._scale), (rest, learning_rate)):
            if group:
                super()._backend_update_step([g for g, _ in group], [v for _, v in group],
                                             rate)


def flush_tensorboard(callback):
    for writer in callback._writers.values():
        writer.flush()


def jax_started() -> bool:
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def release_shared_memory(array):
    shm = getattr(array, "shm", None)
    if shm is None or not getattr(array, "_unlink_on_del", False):
        return  # not Grain's shared memory, or another owner unlinks it
    array._unlink_on_del = False  # what is left for the collector: closing the mapping
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()
