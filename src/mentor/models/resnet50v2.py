"""ResNet50V2 (He et al. 2016, "Identity mappings"), Keras's own, trained from scratch.

The consistency-training seeds use it on CIFAR-10, and the distillation seed as a student.
"""

import keras

from mentor.models._common import image_input, logits_head


def build_resnet50v2(num_classes, image_size, channels):
    """Keras's ResNet50V2 built on the rescaled input, so the model stays one flat graph."""
    images, x = image_input(image_size, channels)
    backbone = keras.applications.ResNet50V2(
        include_top=False,
        weights=None,  # from scratch: no download, and any channel count works
        input_tensor=x,
        input_shape=(image_size, image_size, channels),
        pooling="avg",
    )
    return keras.Model(images, logits_head(backbone.output, num_classes), name="resnet50v2")
