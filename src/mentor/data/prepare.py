"""`prepare`: an ImageSet brought to one square image size and channel count, as a model
takes its images: each image fitted into size×size with its aspect kept (zero padding,
mentor.data.resize), and gray and RGB converted. Images in memory are converted now;
file-backed ones are marked to be fitted as each batch decodes.
"""

from __future__ import annotations

from mentor.data.files import is_streamed
from mentor.data.imageset import ImageSet
from mentor.data.resize import resize_and_pad
from mentor.pixels import to_channels


def prepare(data: ImageSet, image_size: int = 0, channels: int = 0) -> ImageSet:
    """Resize-and-pad to image_size×image_size and convert to `channels` (0 keeps as is)."""
    x = data.x
    if is_streamed(x):  # decoded (and fitted) a batch at a time, later
        size, chans = image_size or x.size, channels or x.channels
        if (size, chans) == (x.size, x.channels) or (
                image_size and x.shape[1:3] == (image_size, image_size) and chans == x.channels):
            return data
        return ImageSet(x.resized(size, chans), data.y, data.class_names, data.name)
    if image_size and x.shape[1:3] != (image_size, image_size):
        x = resize_and_pad(x, image_size)
    if channels and x.shape[-1] != channels:
        x = to_channels(x, channels)
    if x is data.x:
        return data
    return ImageSet(x, data.y, data.class_names, data.name, data.files)
