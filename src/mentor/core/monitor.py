"""A held-out accuracy in every epoch's logs, for curves only: it never touches a loss."""

from __future__ import annotations

import keras
import numpy as np

from mentor.data.files import scored_mask
from mentor.inference import predict


class HeldOutAccuracy(keras.callbacks.Callback):
    """Adds `name`: the classifier's top-1 accuracy on (x, y) to each epoch's logs, so
    history.csv and the curves show it. AdaMatch uses it for the target test images,
    whose accuracy over training is the curve that tells whether adaptation works (the
    source validation accuracy reaches 1.0 either way). The live weights are measured:
    an EMA average only replaces them when the stage finishes."""

    def __init__(self, x: np.ndarray, y: np.ndarray, name: str, batch_size: int = 512):
        super().__init__()
        self.x, self.y, self.name, self.batch_size = x, y, name, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        classifier = getattr(self.model, "classifier", self.model)
        logits = predict(classifier, self.x, self.batch_size)
        scored = scored_mask(self.x, self.name)  # an unreadable file is no hit and no miss
        logs[self.name] = float(np.mean((np.argmax(logits, axis=-1) == self.y)[scored]))
