"""Where and in what precision a run computes: devices and mixed precision.

Data parallelism is Keras's own (`keras.distribution.DataParallel`, JAX backend): the model,
optimizer and recipe state (step, AdaMatch's class averages, EMA) are replicated on every
device, each batch is split across them, and XLA sums the gradients. Every mean in a loss
or a batch-norm statistic is over the *global* batch, so N devices compute what one device
computes with the same `train.batch_size`: the config's batch is the global batch, its
learning rate belongs to that batch, and changing the device count changes neither (no
learning-rate scaling rule is applied or needed). tests/test_runtime.py checks one step of
each recipe on two devices against one.

Mixed precision is Keras's dtype policy: layers compute in bfloat16 or float16 with float32
variables; mentor's input rescaling, augmentations, logits, losses and softmaxes stay in
float32 (models/_common.py, augment/), and Keras scales float16 losses itself.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from mentor.errors import UsageError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def plan_devices(requested: int, global_batches=(1,)) -> list:
    """The devices a run will use: `requested` of them, 0 meaning all visible. More than one
    needs the JAX backend and global batches they divide."""
    if requested < 0:
        raise UsageError(f"runtime.devices must be ≥ 0 (0 → all visible), got {requested}.")
    if keras.backend.backend() != "jax":
        if requested > 1:
            raise UsageError(
                f"runtime.devices = {requested}: data-parallel training runs on the JAX "
                "backend (Keras's distribution API); set KERAS_BACKEND=jax, or train on one "
                "device with --devices 1.")
        return []  # the backend's default device
    visible = keras.distribution.list_devices()
    n = len(visible) if requested == 0 else requested
    if n > len(visible):
        raise UsageError(
            f"runtime.devices = {requested} but JAX sees {len(visible)} device(s) "
            f"({', '.join(visible)}). Ask for at most {len(visible)}, or 0 for all. (On CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N virtual devices.)")
    for batch in global_batches:
        if n > 1 and batch % n:
            raise UsageError(
                f"train.batch_size = {batch} is the global batch, split evenly over {n} "
                f"devices: make it a multiple of {n}.")
    return visible[:n] if n > 1 else []


@contextlib.contextmanager
def runtime(devices: int = 1, precision: str = "float32", global_batches=(1,)):
    """Set the precision policy and device layout for the models built inside; restore the
    previous ones afterwards. Yields what was chosen: {"devices": n, "precision": p}."""
    if precision not in PRECISIONS:
        raise UsageError(f"runtime.precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {precision!r}.")
    chosen = plan_devices(devices, global_batches)
    old_policy = keras.mixed_precision.global_policy()
    old_distribution = keras.distribution.distribution()
    keras.mixed_precision.set_global_policy(precision)
    if chosen:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
    try:
        yield {"devices": max(1, len(chosen)), "precision": precision}
    finally:
        keras.mixed_precision.set_global_policy(old_policy)
        keras.distribution.set_distribution(old_distribution)


def device_count() -> int:
    """How many devices the current distribution spreads a batch over (1 without one)."""
    distribution = keras.distribution.distribution()
    return int(np.prod(distribution.device_mesh.shape)) if distribution is not None else 1


def eval_batch_size(batch_size: int = 256) -> int:
    """`batch_size` rounded up to a multiple of the device count: each device gets a part."""
    n = device_count()
    return -(-batch_size // n) * n


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """model.predict over every image, on however many devices: the last batch is padded
    (with copies of the last image) to a multiple of the device count, and the padding's
    outputs dropped."""
    from mentor.data.files import ImageFiles

    if isinstance(x, ImageFiles):  # decoded a batch at a time, never whole
        return _predict_files(model, x, batch_size)
    pad = (-len(x)) % device_count()
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    out = model.predict(x, batch_size=eval_batch_size(batch_size), verbose=0)
    return out[:len(out) - pad]


def _predict_files(model, x, batch_size: int) -> np.ndarray:
    from mentor.data.pipeline import EvalBatches

    batch = eval_batch_size(batch_size)
    n = len(x)
    pad = (-n) % device_count()  # the last batch too must split evenly over the devices
    rows = np.concatenate([np.arange(n), np.full(pad, n - 1)])
    out = model.predict(EvalBatches(x.take(rows), batch_size=batch), verbose=0)
    return out[:n]


def trim_to_devices(validation):
    """Validation arrays (x, y) cut to a multiple of the device count: Keras shards every
    validation batch evenly, the last one included. At most devices − 1 images are left
    out of the monitoring (never out of the test metrics: `predict` pads instead)."""
    n = device_count()
    if validation is None or n == 1:
        return validation
    keep = len(validation[0]) // n * n
    return tuple(a[:keep] for a in validation)
