"""Keras layers around the augmentations, random only when `training=True`:
`WeakAugment`, `StrongAugment` and `InceptionCrop` (serializable under the package name
"mentor", so saved models load them), `Resize` (deterministic: a view brought to another
model's side), and `from_config`, which builds the training view an `augment` config
section asks for.
"""

import keras

from mentor.augment._common import _as_float
from mentor.augment.crops import _resize, inception_crop, resize
from mentor.augment.randaugment import strong, weak
from mentor.errors import MentorError


class _Augment(keras.layers.Layer):
    """Random only when `training=True`; otherwise it passes float32 images through."""

    def __init__(self, seed=None, **kwargs):
        # float32 under a mixed-precision policy too: 0..255 pixels interpolated in bfloat16
        # keep 8 significant bits.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = seed
        # An attribute, so Keras tracks its state (a variable on JAX, saved with the model).
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        images = _as_float(inputs)
        return self.augment(images) if training else self.infer(images)

    def infer(self, images):
        return images

    def compute_output_spec(self, inputs, training=False):
        shape = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(shape, dtype="float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="mentor")
class WeakAugment(_Augment):
    """`weak`: flip and pad-and-crop translation, per image (FixMatch's weak view)."""

    def __init__(self, flip=True, translate=0.125, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.flip = flip
        self.translate = translate

    def augment(self, images):
        return weak(images, self.seed_generator, flip=self.flip, translate=self.translate)

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "translate": self.translate}


@keras.saving.register_keras_serializable(package="mentor")
class StrongAugment(_Augment):
    """`weak` geometry then `strong` (RandAugment, optional cutout): FixMatch's strong view."""

    def __init__(
        self,
        num_ops=2,
        magnitude=9,
        random_magnitude=False,
        cutout=0.0,
        flip=True,
        translate=0.125,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.random_magnitude = random_magnitude
        self.cutout = cutout
        self.flip = flip
        self.translate = translate

    def augment(self, images):
        images = weak(images, self.seed_generator, flip=self.flip, translate=self.translate)
        return strong(
            images,
            self.seed_generator,
            num_ops=self.num_ops,
            magnitude=self.magnitude,
            random_magnitude=self.random_magnitude,
            cutout=self.cutout,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_ops": self.num_ops,
            "magnitude": self.magnitude,
            "random_magnitude": self.random_magnitude,
            "cutout": self.cutout,
            "flip": self.flip,
            "translate": self.translate,
        }


@keras.saving.register_keras_serializable(package="mentor")
class InceptionCrop(_Augment):
    """`inception_crop` while training. At inference it only resizes to `size` (when set),
    so both modes give the same shape; use `central_crop` for the distillation test view."""

    def __init__(self, size=None, area=(0.05, 1.0), ratio=(3 / 4, 4 / 3), flip=True, seed=None,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.size = size
        self.area = tuple(area)
        self.ratio = tuple(ratio)
        self.flip = flip

    def augment(self, images):
        return inception_crop(
            images, self.seed_generator, size=self.size, area=self.area, ratio=self.ratio,
            flip=self.flip,
        )

    def infer(self, images):
        return _resize(images, (self.size, self.size)) if self.size else images

    def compute_output_shape(self, input_shape):
        if self.size is None:
            return tuple(input_shape)
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "area": list(self.area),
            "ratio": list(self.ratio),
            "flip": self.flip,
        }


@keras.saving.register_keras_serializable(package="mentor")
class Resize(keras.layers.Layer):
    """`resize` to size×size in training and inference alike: in front of a teacher that
    takes another side than the student, so that it sees the student's view at its own."""

    def __init__(self, size, **kwargs):
        kwargs.setdefault("dtype", "float32")  # 0..255 interpolated in float32 (as _Augment)
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, images):
        return resize(images, self.size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def from_config(cfg, seed):
    """The training-view layer an `augment` config section asks for, or None for "none".

    `cfg` has `kind` ("none", "weak" or "strong"), `flip`, `translate`, `num_ops` and
    `magnitude` (mentor.config.AugmentConfig); `seed` seeds the layer's generator.
    """
    if cfg.kind == "none":
        return None
    if cfg.kind == "weak":
        return WeakAugment(flip=cfg.flip, translate=cfg.translate, seed=seed)
    if cfg.kind == "strong":
        return StrongAugment(num_ops=cfg.num_ops, magnitude=cfg.magnitude, flip=cfg.flip,
                             translate=cfg.translate, seed=seed)
    raise MentorError(f"augment.kind must be \"none\", \"weak\" or \"strong\", got {cfg.kind!r}.")
