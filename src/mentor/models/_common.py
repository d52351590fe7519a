"""The two ends every mentor model shares: raw pixels in, float32 logits out."""

import keras


def image_input(image_size, channels):
    """Input for raw 0..255 pixels (uint8 or float) and its [-1, 1] float32 rescaling.

    Rescaling inside the model lets a saved `.keras` file take images as they are. [-1, 1] is
    the range ResNet50V2 was designed for (Keras's "tf" preprocessing) and the one BiT uses.
    float32 even under a mixed-precision policy: 0..255 loses precision in float16.
    """
    images = keras.Input((image_size, image_size, channels), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, dtype="float32", name="rescale")(images)
    return images, x


def logits_head(features, num_classes, *, dropout=0.0, kernel_initializer="glorot_uniform"):
    """Dense logits (no softmax: the losses want logits), float32 under mixed precision too."""
    if dropout:
        features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    return keras.layers.Dense(
        num_classes, kernel_initializer=kernel_initializer, dtype="float32", name="logits"
    )(features)
