"""Predictions over every image on however many devices and processes, from arrays or from
files decoded a batch at a time."""

from __future__ import annotations

import weakref

import keras
import numpy as np

from mentor.data.files import is_streamed
from mentor.data.pipeline import EvalBatches
from mentor.runtime import device_count, eval_batch_size, process_shard


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """model.predict over every image, on however many devices: the last batch is padded
    (with copies of the last image) to a multiple of the device count, and the padding's
    outputs dropped."""
    if process_shard()[1] > 1:
        return _predict_across_processes(model, x, batch_size)
    if is_streamed(x):  # decoded a batch at a time, never whole
        return _predict_files(model, x, batch_size)
    pad = (-len(x)) % device_count()
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    out = model.predict(x, batch_size=eval_batch_size(batch_size), verbose=0)
    return out[:len(out) - pad]


def _predict_files(model, x, batch_size: int) -> np.ndarray:
    batch = eval_batch_size(batch_size)
    n = len(x)
    pad = (-n) % device_count()  # the last batch too must split evenly over the devices
    rows = np.concatenate([np.arange(n), np.full(pad, n - 1)])
    out = model.predict(EvalBatches(x.take(rows), batch_size=batch), verbose=0)
    return out[:n]


def trim_to_devices(validation):
    """Validation arrays (x, y) cut to a multiple of the device count: Keras shards every
    validation batch evenly, the last one included. At most devices − 1 images are left
    out of the monitoring (never out of the test metrics: `predict` pads instead). With many
    processes, this process's consecutive share of what is kept: Keras lays the shares of
    each validation batch end to end, so every kept image is counted once. File-backed
    images are cut undecoded."""
    n = device_count()
    if validation is None or n == 1:
        return validation
    keep = len(validation[0]) // n * n
    index, count = process_shard()
    share = slice(index * keep // count, (index + 1) * keep // count)
    return tuple(a.take(share) if is_streamed(a) else a[:keep][share]
                 for a in validation)


_FORWARD = weakref.WeakKeyDictionary()  # model → its jitted inference call (many processes)


def _predict_across_processes(model, x, batch_size):
    """`predict` in a multi-process job. Keras's predict concatenates its batches' outputs
    with NumPy, which cannot read an array spread over other processes' devices; here each
    batch (padded to the device count) becomes one global array built from the rows each
    process's devices hold (every process has all of `x`), the model runs once on it, and
    the outputs are gathered to every process."""
    import jax
    from jax.experimental import multihost_utils

    distribution = keras.distribution.distribution()
    n, size = device_count(), eval_batch_size(batch_size)
    forward = _FORWARD.get(model)
    if forward is None:
        forward = _FORWARD[model] = jax.jit(
            lambda trainable, frozen, images: model.stateless_call(
                trainable, frozen, images, training=False)[0])
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]
    outputs = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        pad = (-len(chunk)) % n
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        layout = distribution.get_data_layout(chunk.shape).backend_layout
        images = jax.make_array_from_callback(chunk.shape, layout,
                                              lambda index, c=chunk: c[index])
        out = multihost_utils.process_allgather(forward(trainable, frozen, images), tiled=True)
        outputs.append(np.asarray(out)[:len(chunk) - pad])
    return np.concatenate(outputs)
