"""Weight averages: an exponential moving average held inside the trainer, stochastic weight
averaging over epochs, and the batch-norm re-estimation that SWA needs."""

from __future__ import annotations

import keras
import numpy as np

from mentor.compat import flatten_layers


class WeightEMA(keras.layers.Layer):
    """Exponential moving average of a model's float weights (BN statistics included),
    held as non-trainable variables of whatever model owns this layer, so it is saved in
    checkpoints and updated inside the compiled train step on every backend. (Keras 3.15's
    optimizer `use_ema` fails on JAX on a second `fit` and in `train_on_batch`.)

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates (the
    num_updates rule of TensorFlow's ExponentialMovingAverage), so short runs do not
    average in the random initialization.
    """

    def __init__(self, model: keras.Model, decay: float, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.decay = float(decay)
        sources = [w for w in model.weights if "float" in str(w.dtype)]
        self._sources = lambda: sources  # a closure: Keras must not track them twice
        self.averages = [
            self.add_weight(shape=w.shape, initializer="zeros", trainable=False,
                            name=f"ema_{i}")
            for i, w in enumerate(sources)
        ]
        for a, w in zip(self.averages, sources):
            # A host copy: assigning `w` itself would share its buffer on JAX, which then
            # donates that one buffer twice to the jitted train step.
            a.assign(keras.ops.convert_to_numpy(w))
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="count")
        # Its variables exist now. Unbuilt, it would make Keras re-trace the whole trainer
        # before every train_on_batch (Trainer._symbolic_build); on torch that trace falls
        # back to running both passes for real when an augmentation op has no meta kernel.
        self.built = True

    def update(self):
        n = self.count
        d = keras.ops.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for a, w in zip(self.averages, self._sources()):
            a.assign(d * a + (1.0 - d) * keras.ops.stop_gradient(w))
        self.count.assign(n + 1.0)

    def copy_to_model(self):
        for a, w in zip(self.averages, self._sources()):
            w.assign(keras.ops.convert_to_numpy(a))


class SWA(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018): the mean of the model's trainable
    weights at the end of each epoch from `start_epoch` on. Call `finish` after training to
    load the average; BN statistics must then be recomputed (`recalibrate_batchnorm`)."""

    def __init__(self, model: keras.Model, start_epoch: int):
        super().__init__()
        self.target, self.start_epoch = model, start_epoch
        self.sum, self.n = None, 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.start_epoch:
            return
        values = [np.asarray(keras.ops.convert_to_numpy(w)) for w in self.target.trainable_weights]
        self.sum = values if self.sum is None else [s + v for s, v in zip(self.sum, values)]
        self.n += 1

    def finish(self) -> bool:
        if not self.n:
            return False
        for w, s in zip(self.target.trainable_weights, self.sum):
            w.assign(s / self.n)
        return True


def recalibrate_batchnorm(model: keras.Model, x: np.ndarray, batch_size: int = 128,
                          max_batches: int = 50):
    """Recompute BatchNorm moving statistics as the plain average over up to `max_batches`
    batches (momentum k/(k+1) at the k-th batch), as SWA requires: the averaged weights never
    produced the statistics the model holds."""
    norms = [l for l in flatten_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    if not norms:
        return
    saved = [l.momentum for l in norms]
    for l in norms:
        # numpy, not ops.zeros_like: JAX's cannot take a Keras variable
        l.moving_mean.assign(np.zeros(l.moving_mean.shape, "float32"))
        l.moving_variance.assign(np.ones(l.moving_variance.shape, "float32"))
    for k, start in enumerate(range(0, min(len(x), batch_size * max_batches), batch_size)):
        for l in norms:
            l.momentum = k / (k + 1.0)
        model(x[start:start + batch_size], training=True)
    for l, m in zip(norms, saved):
        l.momentum = m
