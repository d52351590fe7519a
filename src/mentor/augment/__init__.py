"""Image augmentation for the recipes: weak, strong (RandAugment), MixUp, inception crop.

Everything here is batched and draws its randomness PER IMAGE, and is written with
`keras.ops` / `keras.random` only, so it runs inside a train step on torch, JAX and
TensorFlow. Keras 3.15's own layers fall short of the papers, as measured here:
`RandAugment` picks its ops once per batch, draws one sign only and, on torch, its
brightness edits the input in place (values reach 460-980); `RandomCrop` draws one offset
per batch; `MixUp` draws from Beta(0.2, 0.2).

Conventions: images are float32 B×H×W×C (C = 1 or 3, channels last) with pixels in
[0, 255]; every function returns that range and dtype. `seed` is a
`keras.random.SeedGenerator` (an int makes a fresh one: same int, same output).

Modules: `_common` (constants, seeding, affine maps, batched bilinear resampling),
`randaugment` (`weak`, `strong` and their ops), `crops` (`mixup`, `inception_crop`,
`central_crop`, `resize`), `layers` (the Keras layers and `from_config`). The figure of
sample views is `mentor.report.sample_grid`.
"""

from mentor.augment._common import GREY, MAX_PIXEL
from mentor.augment.crops import central_crop, inception_crop, mixup, resize
from mentor.augment.layers import (
    InceptionCrop,
    Resize,
    StrongAugment,
    WeakAugment,
    from_config,
)
from mentor.augment.randaugment import (
    COLOUR_OPS,
    GEOMETRIC_OPS,
    MAX_MAGNITUDE,
    OP_NAMES,
    strong,
    weak,
)

__all__ = [
    "COLOUR_OPS",
    "GEOMETRIC_OPS",
    "GREY",
    "MAX_MAGNITUDE",
    "MAX_PIXEL",
    "OP_NAMES",
    "InceptionCrop",
    "Resize",
    "StrongAugment",
    "WeakAugment",
    "central_crop",
    "from_config",
    "inception_crop",
    "mixup",
    "resize",
    "strong",
    "weak",
]
