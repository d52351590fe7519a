"""What pixels a model expects, built into the model as one layer.

mentor's models take raw 0..255 pixels. A model made for other pixels (a `keras.applications`
network, a `.keras` file trained elsewhere on [0, 1] images) gets a `PixelScale` in front:
out[..., c] = in[..., order[c]] · scale[c] + offset[c], in float32. It is a plain
registered layer, not a Lambda, so a saved `.keras` file stays self-contained and loads in
safe mode anywhere mentor is installed.
"""

from __future__ import annotations

import keras
import numpy as np

from mentor.errors import MentorError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics of [0, 1] pixels
IMAGENET_STD = (0.229, 0.224, 0.225)

# name → (scale, offset) per channel of raw 0..255 pixels, for RGB; grey takes the means.
INPUT_SCALES = {
    "raw": ((1.0,) * 3, (0.0,) * 3),
    "unit": ((1 / 255.0,) * 3, (0.0,) * 3),
    "symmetric": ((1 / 127.5,) * 3, (-1.0,) * 3),
    "imagenet": (tuple(1 / (255.0 * s) for s in IMAGENET_STD),
                 tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))),
}


@keras.saving.register_keras_serializable(package="mentor")
class PixelScale(keras.layers.Layer):
    """Per-channel affine map of raw pixels, with an optional channel reordering (RGB → BGR
    for the "caffe" preprocessing of ResNet50 and VGG)."""

    def __init__(self, scale, offset, order=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # 0..255 loses precision in (b)float16
        super().__init__(**kwargs)
        self.scale = [float(s) for s in scale]
        self.offset = [float(o) for o in offset]
        self.order = None if order is None else [int(i) for i in order]

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        if self.order is not None:
            x = keras.ops.take(x, self.order, axis=-1)
        return x * np.asarray(self.scale, "float32") + np.asarray(self.offset, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset,
                "order": self.order}


def input_scale(name: str, channels: int) -> PixelScale | None:
    """The layer for a named input scale (None for "raw": nothing to do)."""
    if name == "raw":
        return None
    scale, offset = INPUT_SCALES[name]
    if channels == 1:
        scale, offset = (float(np.mean(scale)),), (float(np.mean(offset)),)
    return PixelScale(scale, offset, name=f"input_{name}")


def scaled(model: keras.Model, name: str) -> keras.Model:
    """`model` behind the input scale `name`: it then takes raw 0..255 pixels."""
    layer = input_scale(name, model.input_shape[-1])
    if layer is None:
        return model
    images = keras.Input(model.input_shape[1:], name="images")
    return keras.Model(images, model(layer(images)), name=model.name)


def matching(preprocess, channels: int = 3, name: str = "preprocess") -> PixelScale:
    """A PixelScale equal to `preprocess` (a keras.applications `preprocess_input`) on raw
    pixels, found by probing it: one impulse per channel gives each output channel's source
    channel and slope. Refused when the function is not such a map."""
    def run(x):
        return np.asarray(preprocess(np.array(x, "float32")), "float64").reshape(-1, channels)[0]

    offset = run(np.zeros((1, 1, 1, channels)))
    order, scale = [], []
    for c_out in range(channels):
        slopes = [(run(np.eye(channels)[c_in].reshape(1, 1, 1, channels) * 100.0)[c_out]
                   - offset[c_out]) / 100.0 for c_in in range(channels)]
        source = int(np.argmax(np.abs(slopes)))
        order.append(source)
        scale.append(slopes[source])
    layer = PixelScale(scale, offset, None if order == list(range(channels)) else order,
                       name=name)
    probe = np.random.default_rng(0).uniform(0, 255, (2, 3, 3, channels)).astype("float32")
    want = np.asarray(preprocess(probe.copy()), "float32")
    if not np.allclose(keras.ops.convert_to_numpy(layer(probe)), want, atol=1e-3):
        raise MentorError("this model's input preprocessing is not a per-channel affine map of "
                          "the pixels, which mentor can build into the model; give the model "
                          "as a .keras file with its preprocessing inside instead.")
    return layer
