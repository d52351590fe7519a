"""Pick the Keras backend before Keras is imported.

mentor uses KERAS_BACKEND when it is set, and torch otherwise (on a 2-core CPU, 1.4-2x
faster than JAX for these models). keras.json is not consulted: Keras writes that file
itself on first import with "tensorflow" in it, so it says nothing about what the user chose.
"""

import os
import sys

from mentor.errors import UsageError

DEFAULT_BACKEND = "torch"
BACKENDS = ("torch", "jax", "tensorflow")  # the ones mentor is built and tested on


def choose_backend():
    if "keras" in sys.modules:  # too late to choose: whatever Keras picked stands
        return
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)


def check_backend():
    """Refuse a KERAS_BACKEND mentor does not run on (a typo such as "pytorch", or Keras's
    numpy and openvino backends, which cannot train), before Keras fails on import with a
    traceback. Not called on import: `import mentor` must not raise."""
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "")
    if backend and backend not in BACKENDS:
        raise UsageError(
            f"KERAS_BACKEND={backend!r} is not a backend mentor runs on; set KERAS_BACKEND to "
            f"one of {', '.join(BACKENDS)}, or unset it for {DEFAULT_BACKEND}.")
    backend = backend or DEFAULT_BACKEND
    if backend not in sys.modules and importlib.util.find_spec(backend) is None:
        chosen = (f"KERAS_BACKEND={backend}" if os.environ.get("KERAS_BACKEND")
                  else f"the default backend, {backend},")
        raise UsageError(
            f"{chosen} is not installed: `{_INSTALL[backend]}` installs it, or set "
            f"KERAS_BACKEND to an installed one of {', '.join(BACKENDS)}.")


_INSTALL = {"torch": "pip install torch (on a machine without a GPU, PyTorch's CPU-only "
                     "build, as its install guide describes)",
            "jax": "pip install jax", "tensorflow": "pip install tensorflow-cpu"}
