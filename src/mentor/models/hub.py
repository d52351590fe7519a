"""`keras_hub:PRESET`: a KerasHub backbone (a preset name or a local preset directory) as a
mentor classifier, behind the optional extra `pip install "mentor[hub]"` (KerasHub pulls
tensorflow-text).

The preset's image converter (its pixel scale and offset) is built in front, so the model
takes raw 0..255 pixels; its features are pooled (a feature map by global average, tokens by
their mean) into a fresh float32 logits head for the data's classes. The backbone is one
nested layer: the pretrained part for `train.backbone_lr_scale` and `model.freeze_bn`.
"""

from __future__ import annotations

import os

import keras

from mentor.errors import MentorError
from mentor.models._common import logits_head
from mentor.models.scales import PixelScale

PREFIX = "keras_hub:"


def keras_hub():
    try:
        import keras_hub as hub
    except ImportError:
        raise MentorError(
            "keras_hub:… models need KerasHub, an optional extra: pip install "
            "\"mentor[hub]\" (or pip install keras-hub).") from None
    return hub


def check_preset(preset: str):
    hub = keras_hub()
    if os.path.isdir(preset):
        if not os.path.isfile(os.path.join(preset, "config.json")):
            raise MentorError(f"{preset} is a folder without config.json: not a KerasHub "
                              "preset directory (save one with save_to_preset).")
        return
    known = sorted(hub.models.Backbone.presets)
    if preset not in known:
        import difflib

        close = difflib.get_close_matches(preset, known, n=3)
        raise MentorError(f"KerasHub has no preset {preset!r}"
                          f"{' (did you mean ' + ', '.join(close) + '?)' if close else ''}; "
                          f"{len(known)} are known, e.g. {', '.join(known[:4])}; or give a "
                          "local preset directory.")


def _converter_scale(hub, preset, channels):
    try:
        converter = hub.layers.ImageConverter.from_preset(preset)
    except Exception:  # a backbone preset without an image converter: raw pixels
        return [1.0] * channels, [0.0] * channels

    def per_channel(value, default):
        if value is None:
            return [default] * channels
        values = list(value) if isinstance(value, (list, tuple)) else [value] * channels
        return [float(v) for v in values]

    return per_channel(converter.scale, 1.0), per_channel(converter.offset, 0.0)


def build_hub(preset: str, num_classes: int, image_size: int, channels: int) -> keras.Model:
    hub = keras_hub()
    check_preset(preset)
    try:
        backbone = hub.models.Backbone.from_preset(preset)
    except Exception as error:  # offline, a partial download, a preset of another kind
        raise MentorError(
            f"the KerasHub preset {preset!r} could not be loaded ({type(error).__name__}: "
            f"{error}). Offline, download it on a networked machine "
            "(keras_hub.models.Backbone.from_preset(NAME).save_to_preset(DIR)) and give "
            "model.name = \"keras_hub:DIR\".") from None
    scale, offset = _converter_scale(hub, preset, channels)
    images = keras.Input((image_size, image_size, channels), name="images")
    features = backbone(PixelScale(scale, offset, name="preprocess")(images))
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    elif len(features.shape) == 3:
        features = keras.layers.GlobalAveragePooling1D(name="pool")(features)
    return keras.Model(images, logits_head(features, num_classes), name="keras_hub_model")
