"""The former name of mentor.data.order (which rows each step draws); import from there."""

from mentor.data.order import LabeledDraw  # noqa: F401
