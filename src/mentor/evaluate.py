"""Evaluate a saved model on any data source."""

from __future__ import annotations

import keras

from mentor.core.run import accuracy, check_model_matches
from mentor.data.pipeline import prepare


def load_model_and_data(model_path, source: str, *, unsafe: bool = False):
    """A saved classifier and a data source prepared to its input shape, checked to fit."""
    from mentor.data.sources import load_source
    from mentor.models import load_model

    model = load_model(model_path, safe_mode=not unsafe)
    _, height, _, channels = model.input_shape
    data = prepare(load_source(source, image_size=height), height or 0, channels or 0)
    check_model_matches(model, data)
    return model, data


def evaluate_model(model_path: str, source: str, *, batch_size: int = 256,
                   unsafe: bool = False) -> dict:
    """Accuracy of a `.keras` classifier on a source, prepared to the model's input shape."""
    model, data = load_model_and_data(model_path, source, unsafe=unsafe)
    return {"backend": keras.backend.backend(), "model": str(model_path), "data": source,
            "images": len(data), "test_acc": accuracy(model, data, batch_size)}
