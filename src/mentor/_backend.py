"""Pick the Keras backend before Keras is imported.

mentor defaults to torch (on a 2-core CPU, 1.4-2x faster than JAX for these models), but a
user's explicit choice wins: the KERAS_BACKEND environment variable, or "backend" in
keras.json. Keras itself would default to TensorFlow, which is usually not installed.
"""

import json
import os
import sys

DEFAULT_BACKEND = "torch"


def _keras_json_backend():
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend")
    except (OSError, ValueError):
        return None


def choose_backend():
    if "keras" in sys.modules:  # too late to choose: whatever Keras picked stands
        return
    if not os.environ.get("KERAS_BACKEND") and not _keras_json_backend():
        os.environ["KERAS_BACKEND"] = DEFAULT_BACKEND
