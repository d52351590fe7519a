"""Pick the Keras backend before Keras is imported.

mentor uses KERAS_BACKEND when it is set, and torch otherwise (on a 2-core CPU, 1.4-2x
faster than JAX for these models). keras.json is not consulted: Keras writes that file
itself on first import with "tensorflow" in it, so it says nothing about what the user chose.
"""

import os
import sys

DEFAULT_BACKEND = "torch"


def choose_backend():
    if "keras" in sys.modules:  # too late to choose: whatever Keras picked stands
        return
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
