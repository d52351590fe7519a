"""Loading a saved model: `load_model` in safe mode unless `unsafe_loading` allows code."""

from __future__ import annotations

import contextlib
import contextvars
import os
import zipfile

import keras

from mentor.errors import MentorError
from mentor.models.fast_torch import accelerate

# `mentor train --unsafe` and `mentor demo --unsafe`: every model file the command loads (a
# teacher, a starting point) may run code. A context variable rather than a flag threaded
# through every recipe, so that no loader of the run can miss it.
_unsafe = contextvars.ContextVar("unsafe_loading", default=False)


@contextlib.contextmanager
def unsafe_loading(allowed: bool = True):
    """Within the block, load_model lets files run code on load (Lambda layers)."""
    token = _unsafe.set(bool(allowed))
    try:
        yield
    finally:
        _unsafe.reset(token)


def load_model(path, *, safe_mode=True):
    """Reload a `.keras` model saved by mentor (or any Keras model without Lambda layers)."""
    safe_mode = safe_mode and not _unsafe.get()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MentorError(f"no such model file: {path}")
    # Keras says "File not found" for a .keras file that is not a zip (cut short, or another
    # format renamed), which sends the user looking for a file that is there. Legacy .h5
    # files are HDF5, not zip, and Keras still loads them.
    if not path.lower().endswith((".h5", ".hdf5")) and not zipfile.is_zipfile(path):
        raise MentorError(
            f"{path} is not a Keras .keras file (a .keras file is a zip archive); it may be "
            "cut short or another format under that name. Copy it again whole, or save the "
            "model with model.save('NAME.keras').")
    _import_layers_of(path)
    try:
        # compile=False: mentor only runs inference on loaded models, and a custom loss in
        # the file should not stop a user from evaluating it.
        model = keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
    except Exception as error:  # Keras raises many kinds; the user needs its reason either way
        if safe_mode and "safe_mode" in str(error):
            raise MentorError(
                f"{path} contains code that would run on load (e.g. a Lambda layer), which "
                "safe mode refuses. Load it only if you trust where it came from: pass "
                "--unsafe (Python: safe_mode=False).") from None
        raise MentorError(f"cannot load model {path}: {type(error).__name__}: {error}") from error
    check_classifier(model, path)
    accelerate(model)
    return model


def _import_layers_of(path):
    """Register the layers a saved model needs: a keras_hub:… model holds KerasHub's."""
    try:
        with zipfile.ZipFile(path) as archive:
            uses_hub = b"keras_hub" in archive.read("config.json")
    except (KeyError, OSError, zipfile.BadZipFile):
        return
    if uses_hub:
        from mentor.models.hub import keras_hub

        keras_hub()


def check_classifier(model, path):
    """One output of shape (batch, classes): what mentor trains, distils from and
    evaluates. Checked when a model is loaded, where the message can name its file,
    rather than at the first step that would trip over it."""
    try:
        shapes = [tuple(output.shape) for output in model.outputs]
    except (AttributeError, TypeError, ValueError):  # a subclassed model never called
        return
    if len(shapes) != 1 or len(shapes[0]) != 2:
        shown = shapes[0] if len(shapes) == 1 else ", ".join(str(s) for s in shapes)
        count = "one output" if len(shapes) == 1 else f"{len(shapes)} outputs"
        raise MentorError(f"{path} gives {count} of shape {shown}, not one vector of class "
                          "scores per image, (batch, classes); give a classifier (one "
                          "output, its last layer a Dense over the classes).")
