"""Data: sources (files, folders, downloads, embedded sets) and one pipeline to batches."""

from mentor.data.imageset import ImageSet

__all__ = ["ImageSet"]
