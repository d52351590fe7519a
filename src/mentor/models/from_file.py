"""`PATH.keras` as a starting point: fine-tune a classifier saved earlier (by mentor or any
Keras code). Its head is replaced by a fresh one when the data has another class count (the
run's log says so), and `input_scale` builds in the pixels it was trained on."""

from __future__ import annotations

import keras

from mentor.errors import MentorError
from mentor.models._common import logits_head
from mentor.models.scales import scaled


def start_from(path, num_classes: int, image_size: int, channels: int, *,
               input_scale: str = "raw") -> keras.Model:
    """The model in `path` (or the keras.Model registered under an object: name), fitted
    to the data's classes and built to take raw pixels."""
    from mentor.models.loading import check_classifier, load_model
    from mentor.objects import MODEL_PREFIX, lookup

    model = lookup(path) if path.startswith(MODEL_PREFIX) else load_model(path)
    if not isinstance(model, keras.Model):
        raise MentorError(f"{path} is a {type(model).__name__}, not a keras.Model.")
    check_classifier(model, path)
    want = (image_size, image_size, channels)
    have = tuple(model.input_shape[1:])
    if len(have) != 3 or any(h is not None and h != w for h, w in zip(have, want)):
        raise MentorError(f"{path} takes images of shape {have} but the data has {want}; set "
                          "data.image_size and data.channels to the model's.")
    if model.output_shape[-1] != num_classes:
        head = model.layers[-1]
        if isinstance(head, (keras.layers.Softmax, keras.layers.Activation)):
            head = model.layers[-2]
        print(f"model: {path} predicts {model.output_shape[-1]} classes, the data has "
              f"{num_classes}: its head {head.name!r} is replaced by a new one", flush=True)
        model = keras.Model(model.inputs, logits_head(head.input, num_classes),
                            name=model.name)
    return scaled(model, input_scale)
