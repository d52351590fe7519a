"""mentor's model zoo: image classifiers that take raw 0..255 pixels and return float32 logits.

`build_model(name, num_classes=, image_size=, channels=, **options)` builds any model in
`MODELS`; `load_model(path)` reloads a saved `.keras` file in safe mode. Importing this package
registers mentor's custom layers (StdConv2D) with Keras, which loading needs. On the torch
backend both give models whose convolutions and batch norms run fused (fast_torch.py).
"""

import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping

import keras
import numpy as np

from mentor.compat import flatten_layers
from mentor.errors import MentorError
from mentor.models.bit import build_bit
from mentor.models.fast_torch import accelerate
from mentor.models.loading import load_model, unsafe_loading  # noqa: F401  (the package's names)
from mentor.models.resnet50v2 import build_resnet50v2
from mentor.models.small_cnn import build_small_cnn
from mentor.models.wrn import build_wrn

_SHAPE_ARGS = ("num_classes", "image_size", "channels")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A builder, what it is for, and the options its name fixes (the 28 and 2 of wrn28_2)."""

    builder: Callable[..., keras.Model]
    description: str
    fixed: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def options(self):
        """The keyword options `build_model` accepts for this name."""
        names = inspect.signature(self.builder).parameters
        return [n for n in names if n not in _SHAPE_ARGS and n not in self.fixed]


MODELS = {
    "small_cnn": ModelSpec(
        build_small_cnn, "3-stage CNN, 0.29 M parameters: CPU baselines on MNIST-sized data"),
    "wrn28_2": ModelSpec(
        build_wrn, "Wide ResNet 28-2, 1.47 M parameters: the FixMatch/AdaMatch network",
        {"depth": 28, "width": 2}),
    "wrn": ModelSpec(build_wrn, "Wide ResNet of any depth 6n+4 and width"),
    "resnet50v2": ModelSpec(
        build_resnet50v2, "Keras ResNet50V2 from scratch, 23.6 M parameters: consistency-training seeds"),
    "bit_r50x1": ModelSpec(
        build_bit, "BiT ResNet-v2 50x1 (GroupNorm + weight standardization), 23.5 M: distillation student",
        {"depth": 50, "width": 1}),
    "bit_r101x3": ModelSpec(
        build_bit, "BiT ResNet-v2 101x3, 382 M parameters: distillation teacher",
        {"depth": 101, "width": 3}),
    "bit": ModelSpec(build_bit, "BiT ResNet-v2 of depth 50, 101 or 152 and any width"),
}


def build_model(name, *, num_classes, image_size, channels, **options):
    """Build model `name` from MODELS for B x image_size x image_size x channels images."""
    spec = _spec(name)
    _check_shape(num_classes, image_size, channels)
    _check_options(name, spec, options)
    model = spec.builder(num_classes, image_size, channels, **spec.fixed, **options)
    accelerate(model)
    return model


def _check_shape(num_classes, image_size, channels):
    for key, value, low in (("num_classes", num_classes, 2), ("image_size", image_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise MentorError(f"{key} must be a whole number ≥ {low}, got {value!r}.")
    if channels not in (1, 3):
        raise MentorError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}.")


def build(spec, *, num_classes, image_size, channels):
    """The model a [model] section names, for B x image_size x image_size x channels images:
    a zoo name (with `weights` a weights file to load, or ""), `keras.applications:NAME`
    (weights "imagenet", a file, or ""), or `PATH.keras` to start from. `freeze_bn` keeps
    every batch-norm layer of a pretrained part in inference mode, its statistics and
    affine parameters fixed (Keras's fine-tuning convention)."""
    from mentor.models.applications import PREFIX, build_application
    from mentor.models.from_file import start_from

    name = spec.name
    if name.startswith(PREFIX):
        model = build_application(name[len(PREFIX):], num_classes, image_size, channels,
                                  weights=spec.weights, **spec.options)
    elif name.startswith("keras_hub:"):
        from mentor.models.hub import build_hub

        model = build_hub(name[len("keras_hub:"):], num_classes, image_size, channels)
    elif name.endswith(".keras") or name.startswith("object:"):
        model = start_from(name, num_classes, image_size, channels,
                           input_scale=spec.input_scale)
    else:
        model = build_model(name, num_classes=num_classes, image_size=image_size,
                            channels=channels, **spec.options)
        if spec.weights:
            _load_weights(model, spec.weights)
    if spec.freeze_bn:
        for layer in flatten_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    accelerate(model)  # zoo models had it from build_model; swapping the op again is a no-op
    return model


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as error:  # a file of another model, another format…
        raise MentorError(f"model.weights {path} does not fit this model: {error}. Give a "
                          "weights file saved from the same model and classes.") from None


def count_params(model, *, trainable_only=False):
    """Number of weights; with BatchNorm, the total includes its moving mean and variance."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights))


def check_spec(name, options, weights="", input_scale="raw"):
    """A model name of a known form and the option names it accepts (their values are
    checked by building it), before any work: zoo names, keras.applications:NAME, PATH.keras."""
    from mentor.models.applications import PREFIX
    from mentor.models.applications import options as application_options

    if weights and weights != "imagenet" and not os.path.isfile(weights):
        raise MentorError(f"model.weights {weights!r}: no such file; give a weights file, "
                          "\"imagenet\" (keras.applications only) or \"\" for none.")
    if name.startswith("keras_hub:"):
        from mentor.models.hub import check_preset

        if options or weights:
            raise MentorError(f"{name} is a KerasHub preset: it takes neither options nor "
                              "weights (the preset holds its weights).")
        check_preset(name[len("keras_hub:"):])
        return
    if name.startswith("object:"):  # a keras.Model given from Python (mentor.api)
        from mentor.objects import check

        check(name)
        if options:
            raise MentorError(f"{name} is a keras.Model given from Python: it takes no options.")
        return
    if input_scale != "raw" and not name.endswith(".keras"):
        raise MentorError(f"input_scale {input_scale!r} is for a .keras model trained on other "
                          f"pixels; {name!r} takes raw pixels already (its preprocessing is "
                          "built in).")
    if name.startswith(PREFIX):
        known = application_options(name[len(PREFIX):])
        for option in options:
            if option not in known:
                raise MentorError(f"{name} has no option {option!r}; it accepts: "
                                  f"{', '.join(known) or 'none'}")
        return
    if weights == "imagenet":
        raise MentorError(f"weights = \"imagenet\" is for keras.applications models; "
                          f"{name!r} has none. Use e.g. keras.applications:ResNet50V2.")
    if name.endswith(".keras"):
        if options:
            raise MentorError(f"{name} is a saved model: it takes no options.")
        if not os.path.isfile(name):
            raise MentorError(f"no such model file: {name}")
        return
    _check_options(name, _spec(name), options)


def option_defaults(name) -> dict:
    """option → its default in the builder's signature, for the names that take options
    (zoo models, keras.applications:NAME); the types a config's options are checked
    against."""
    from mentor.models.applications import PREFIX, application
    from mentor.models.applications import options as application_options

    if name.startswith(PREFIX):
        app = name[len(PREFIX):]
        builder, known = application(app), application_options(app)
    elif name in MODELS:
        builder, known = MODELS[name].builder, MODELS[name].options()
    else:
        return {}
    params = inspect.signature(builder).parameters
    return {n: params[n].default for n in known
            if params[n].default is not inspect.Parameter.empty}


def _spec(name):
    if name not in MODELS:
        raise MentorError(f"unknown model {name!r}; known models: {', '.join(MODELS)}, "
                          "keras.applications:NAME (any Keras application), or PATH.keras")
    return MODELS[name]


def _check_options(name, spec, options):
    for option in options:
        if option in spec.fixed:
            raise MentorError(
                f"model {name!r} fixes {option}={spec.fixed[option]!r}; "
                f"use model {spec.builder.__name__.removeprefix('build_')!r} to choose it")
        if option not in spec.options():
            raise MentorError(
                f"model {name!r} has no option {option!r}; "
                f"{spec.builder.__name__} accepts: {', '.join(spec.options()) or 'none'}")


__all__ = ["MODELS", "ModelSpec", "accelerate", "build", "build_model", "check_spec",
           "count_params", "load_model", "option_defaults"]
