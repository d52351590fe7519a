"""`keras.applications:NAME`: any network Keras ships, as a mentor classifier.

The application's own input preprocessing is built into the model (models.scales), so it
takes raw 0..255 pixels like every mentor model, and its ImageNet head is replaced by a fresh
float32 logits head for the data's classes. `weights` is "imagenet" (downloaded by Keras
into its cache, KERAS_HOME/models), a weights file, or "" for random initialisation. The
backbone is one nested layer named "backbone": the pretrained part that
`train.backbone_lr_scale` and `model.freeze_bn` act on.
"""

from __future__ import annotations

import importlib
import inspect
import os

import keras

from mentor.errors import MentorError
from mentor.models._common import logits_head
from mentor.models.scales import matching

PREFIX = "keras.applications:"
# Arguments mentor sets itself; the rest of an application's signature are model.options.
_OWN = {"include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
        "classifier_activation", "name", "include_preprocessing"}


def names() -> list[str]:
    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def application(name: str):
    if name not in names():
        import difflib

        close = difflib.get_close_matches(name, names(), n=1)
        hint = f" Did you mean {PREFIX}{close[0]}?" if close else ""
        raise MentorError(f"Keras has no application {name!r}.{hint} Known: "
                          f"{', '.join(names())}.")
    return getattr(keras.applications, name)


def options(name: str) -> list[str]:
    return [p for p in inspect.signature(application(name)).parameters if p not in _OWN]


def keras_cache() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def build_application(name: str, num_classes: int, image_size: int, channels: int, *,
                      weights: str = "", **opts) -> keras.Model:
    app = application(name)
    if channels != 3:
        raise MentorError(f"{PREFIX}{name} takes RGB images; set data.channels = 3 (grey "
                          "images are then repeated into three channels).")
    preprocess = importlib.import_module(app.__module__).preprocess_input
    images = keras.Input((image_size, image_size, channels), name="images")
    x = matching(preprocess, channels)(images)
    try:
        backbone = app(include_top=False, weights=weights or None, pooling="avg",
                       input_shape=(image_size, image_size, channels), **opts)
    except Exception as error:  # a download that failed, a weights file that does not fit
        if weights == "imagenet":
            raise MentorError(
                f"the ImageNet weights of {PREFIX}{name} could not be had ({type(error).__name__}: "
                f"{error}). Offline, copy the file Keras names above (its *_notop.h5) into "
                f"{keras_cache()} (set KERAS_HOME to use another folder), or give "
                "model.weights the path of a weights file.") from None
        raise MentorError(f"{PREFIX}{name} cannot be built with weights={weights!r}: "
                          f"{error}") from None
    backbone.name = "backbone"
    return keras.Model(images, logits_head(backbone(x), num_classes), name=name.lower())
