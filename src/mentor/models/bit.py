"""BiT ResNet-v2 (Kolesnikov et al. 2020, "Big Transfer"): the distillation teacher and student.

A pre-activation bottleneck ResNet with GroupNorm instead of BatchNorm and weight-standardized
convolutions, so nothing depends on the batch: it trains and fine-tunes the same at any batch
size. Reference: google-research/big_vision `big_vision/models/bit_paper.py` (the paper's
ResNet-v2, which loads the public BiT checkpoints).

Departure: the stride-2 layers (the stem's 7x7 conv and 3x3 max-pool, the units' 3x3 convs)
use "same" padding where big_vision pads symmetrically (3 or 1 pixels each side). Output
sizes are the same; the sampling grid is offset by one pixel, which matters only when loading
BiT's pretrained weights (mentor trains from scratch).
"""

import keras
from keras import ops

from mentor.errors import MentorError
from mentor.models._common import image_input, logits_head

# Bottleneck units per stage: BiT paper / big_vision `bit.get_block_desc`.
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BASE_FILTERS = 64  # ResNet's stem and first-stage bottleneck width, times the width factor
EXPANSION = 4  # a bottleneck unit outputs 4x its inner width (He et al. 2016)
STAGE_STRIDES = (1, 2, 2, 2)  # the stem already downsamples 4x
GN_GROUPS = 32  # big_vision bit_paper.GroupNorm(ngroups=32), as in Wu & He 2018
GN_EPSILON = 1e-5  # big_vision bit_paper.GroupNorm: standardize(..., eps=1e-5)
WS_EPSILON = 1e-10  # big_vision bit_paper.StdConv: standardize(kernel, axis=[0, 1, 2], eps=1e-10)


def standardize_kernel(kernel, epsilon=WS_EPSILON):
    """Zero mean, unit variance per output channel, over (height, width, input channels).

    Always float32: in float16 the moments lose precision and epsilon=1e-10 underflows to 0.
    """
    kernel = ops.cast(kernel, "float32")
    centered = kernel - ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
    variance = ops.mean(ops.square(centered), axis=(0, 1, 2), keepdims=True)
    return centered * ops.rsqrt(variance + epsilon)


@keras.saving.register_keras_serializable(package="mentor")
class StdConv2D(keras.layers.Conv2D):
    """Conv2D whose kernel is weight-standardized (Qiao et al. 2019) on every call.

    The stored variable stays raw: the optimizer updates it, and standardization is part of
    the forward pass, so gradients flow through it as in BiT.
    """

    def __init__(self, *args, epsilon=WS_EPSILON, **kwargs):
        super().__init__(*args, **kwargs)
        self.epsilon = epsilon

    def convolution_op(self, inputs, kernel):
        kernel = standardize_kernel(kernel, self.epsilon)
        return super().convolution_op(inputs, ops.cast(kernel, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def build_bit(num_classes, image_size, channels, depth=50, width=1):
    """BiT-R{depth}x{width}: depth 50, 101 or 152; width a multiple of 0.5 (GroupNorm's 32 groups)."""
    blocks = _blocks(depth)
    base = _base_filters(width)
    images, x = image_input(image_size, channels)
    # No norm or activation after the stem: each unit pre-activates its own input.
    x = StdConv2D(base, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (units, stride) in enumerate(zip(blocks, STAGE_STRIDES), start=1):
        inner = base * 2 ** (stage - 1)
        for unit in range(1, units + 1):
            x = _unit(x, inner, stride if unit == 1 else 1, name=f"stage{stage}_unit{unit}")
    x = _gn_relu(x, name="final")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    # BiT's head starts at zero (kernel and bias): every class starts at logit 0, so
    # fine-tuning begins from a uniform prediction instead of random noise.
    logits = logits_head(x, num_classes, kernel_initializer="zeros")
    return keras.Model(images, logits, name=f"bit_r{depth}x{width:g}")


def _blocks(depth):
    if depth not in BLOCKS:
        raise MentorError(f"BiT depth must be one of {sorted(BLOCKS)}, got {depth}")
    return BLOCKS[depth]


def _base_filters(width):
    base = BASE_FILTERS * width
    if base != int(base) or int(base) % GN_GROUPS:
        raise MentorError(
            f"BiT width must make 64·width a multiple of {GN_GROUPS} (GroupNorm groups): "
            f"0.5, 1, 1.5, 2, 3, 4, ...; got {width}"
        )
    return int(base)


def _unit(x, inner, stride, name):
    """Pre-activation bottleneck; stride on the 3x3 conv, as in BiT (ResNet v1.5 placement)."""
    outer = EXPANSION * inner
    activated = _gn_relu(x, name=f"{name}_pre")
    shortcut = x
    if x.shape[-1] != outer or stride != 1:
        # BiT projects the activated input, not the raw one.
        shortcut = StdConv2D(outer, 1, strides=stride, use_bias=False, name=f"{name}_proj")(activated)
    y = StdConv2D(inner, 1, use_bias=False, name=f"{name}_conv1")(activated)
    y = _gn_relu(y, name=f"{name}_mid1")
    y = StdConv2D(inner, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _gn_relu(y, name=f"{name}_mid2")
    y = StdConv2D(outer, 1, use_bias=False, name=f"{name}_conv3")(y)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def _gn_relu(x, name):
    x = keras.layers.GroupNormalization(GN_GROUPS, epsilon=GN_EPSILON, name=f"{name}_gn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)
