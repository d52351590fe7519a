"""Wide ResNet (Zagoruyko & Komodakis 2016) as FixMatch and AdaMatch build it.

Sources: google-research/fixmatch `libml/models.py` (class ResNet) and
google-research/adamatch `shared/zoo/wideresnet.py`, which agree on every choice below.
Pre-activation basic blocks; (depth - 4) / 6 blocks in each of three groups of widths
16·w, 32·w, 64·w after a 16-filter stem; strides 1, 2, 2.

Where these codes depart from the WRN paper's own code, they are followed here:
- leaky ReLU with slope 0.1 instead of ReLU;
- the projection shortcut reads the block's raw input, except in the very first block
  ("activate_before_residual"), where it reads the activated input;
- dropout (off by default, as in their WRN-28-2 runs) sits before the classifier, not
  between the two convolutions of each block.
Convolutions have no bias (each feeds a BatchNorm before any other use: the bias FixMatch's
`tf.layers.conv2d` adds would be absorbed), so WRN-28-2 has the familiar 1,467,610 trainable
parameters for 10 classes.
"""

import keras

from mentor.errors import MentorError
from mentor.models._common import image_input, logits_head

BN_MOMENTUM = 0.999  # FixMatch and AdaMatch: batch_normalization(momentum=0.999), Keras semantics
BN_EPSILON = 1e-3  # tf.layers.batch_normalization's default, which FixMatch's code uses
LEAKY_SLOPE = 0.1  # FixMatch and AdaMatch: leaky_relu(alpha=0.1)
STEM_FILTERS = 16  # WRN paper, Table 1: conv1 has 16 filters whatever the width
GROUP_STRIDES = (1, 2, 2)  # WRN paper, Table 1: 32x32 -> 32, 16, 8


def build_wrn(num_classes, image_size, channels, depth=28, width=2, dropout=0.0,
              bn_momentum=BN_MOMENTUM):
    """WRN-depth-width; WRN-28-2 has 1,467,610 trainable parameters for 10 classes."""
    blocks_per_group = _blocks_per_group(depth)
    images, x = image_input(image_size, channels)
    x = _conv(STEM_FILTERS, 3, 1, name="stem_conv")(x)
    for group, stride in enumerate(GROUP_STRIDES, start=1):
        filters = STEM_FILTERS * width * 2 ** (group - 1)
        for block in range(1, blocks_per_group + 1):
            x = _block(
                x, filters, stride if block == 1 else 1,
                activate_shortcut=(group, block) == (1, 1),
                bn_momentum=bn_momentum, name=f"group{group}_block{block}",
            )
    x = _bn_relu(x, bn_momentum, name="final")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    # glorot_normal (truncated): FixMatch's glorot_normal_initializer, AdaMatch's xavier_truncated_normal
    logits = logits_head(x, num_classes, dropout=dropout, kernel_initializer="glorot_normal")
    return keras.Model(images, logits, name=f"wrn{depth}_{width}")


def _blocks_per_group(depth):
    # The WRN paper's depth convention: 3 groups of n two-conv blocks plus 4, so depth = 6n + 4.
    if depth < 10 or (depth - 4) % 6:
        raise MentorError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
    return (depth - 4) // 6


def _block(x, filters, stride, *, activate_shortcut, bn_momentum, name):
    activated = _bn_relu(x, bn_momentum, name=f"{name}_pre")
    shortcut = activated if activate_shortcut else x
    if x.shape[-1] != filters or stride != 1:
        shortcut = _conv(filters, 1, stride, name=f"{name}_proj")(shortcut)
    y = _conv(filters, 3, stride, name=f"{name}_conv1")(activated)
    y = _bn_relu(y, bn_momentum, name=f"{name}_mid")
    y = _conv(filters, 3, 1, name=f"{name}_conv2")(y)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def _bn_relu(x, bn_momentum, name):
    x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_relu")(x)


def _conv(filters, kernel_size, stride, name):
    # FixMatch/AdaMatch draw kernels from normal(stddev = sqrt(2 / (k·k·filters))): He normal
    # on fan_out, not truncated. A fresh initializer per layer: a shared unseeded Keras
    # initializer reuses one seed, giving same-shaped layers identical kernels.
    init = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")
    return keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding="same", use_bias=False,
        kernel_initializer=init, name=name,
    )
