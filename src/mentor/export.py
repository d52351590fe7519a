"""`mentor export`: a trained classifier as a TensorFlow SavedModel, ONNX or TFLite file,
through Keras's own `Model.export`, checked against the Keras model before it is put in place.

Which packages each format needs depends on the backend Keras runs on (Keras 3.15):
SavedModel is traced by TensorFlow (on torch, through torch_xla too), ONNX by torch.onnx
(onnx, onnxscript), tf2onnx or jax2onnx, TFLite (LiteRT) by TensorFlow's converter or
litert_torch. A .keras file loads on every backend, so `KERAS_BACKEND=tensorflow` is the
way round a package missing for the current one.

An export is whole or absent: Keras writes into a fresh hidden folder
(`.mentor-tmp-…`, made by tempfile beside the target, a name no user file has), the
artefact is checked there and then renamed into place. On any failure only that folder and
the folders this export created on the way to --out are removed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import shutil
import tempfile

import numpy as np

from mentor.atomic import TEMP_PREFIX
from mentor.errors import MentorError, UsageError

FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "tflite": "litert"}

# (format, backend) → the modules Keras imports for it; None: Keras cannot on that backend
NEEDS = {
    ("saved_model", "tensorflow"): ["tensorflow"],
    ("saved_model", "jax"): ["tensorflow"],
    ("saved_model", "torch"): ["tensorflow", "torch_xla"],
    ("onnx", "tensorflow"): ["tf2onnx", "onnx"],
    ("onnx", "jax"): ["jax2onnx", "onnx"],
    ("onnx", "torch"): ["onnx", "onnxscript"],
    ("tflite", "tensorflow"): ["tensorflow"],
    ("tflite", "torch"): ["litert_torch"],
    ("tflite", "jax"): None,
}
PIP_NAMES = {"torch_xla": "torch_xla", "litert_torch": "litert-torch"}


def missing_packages(fmt: str, backend: str) -> list[str] | None:
    needs = NEEDS[(fmt, backend)]
    if needs is None:
        return None
    return [m for m in needs if importlib.util.find_spec(m) is None]


def check_exportable(fmt: str, backend: str, out: str):
    """Refuse before loading anything: a format Keras cannot write on this backend, a
    package it needs that is absent, or an --out it would refuse or could not create."""
    if fmt == "tflite" and not out.endswith(".tflite"):
        raise UsageError(f"--out {out}: a TFLite file must end in .tflite (Keras's rule); "
                         f"write e.g. --out {pathlib.Path(out).stem}.tflite.")
    missing = missing_packages(fmt, backend)
    if missing is None:
        raise MentorError(f"Keras cannot export {fmt} on the {backend} backend; run the same "
                          "command with KERAS_BACKEND=tensorflow (.keras files load on every "
                          "backend).")
    if missing:
        pip = " ".join(PIP_NAMES.get(m, m) for m in missing)
        raise MentorError(
            f"exporting {fmt} on the {backend} backend needs {', '.join(missing)}, not "
            f"installed: `pip install {pip}`"
            + ("" if backend == "tensorflow" else ", or run the same command with "
               "KERAS_BACKEND=tensorflow (.keras files load on every backend)") + ".")
    path = pathlib.Path(out)
    if os.path.lexists(path):
        raise MentorError(f"--out {out} exists already; choose another path or delete it.")
    # mkdir would say "Not a directory" or "File exists" without naming the culprit
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MentorError(f"--out {out}: {parent} is a file, not a folder; give a "
                                  "path in a folder.")
            break


def export_model(model, fmt: str, out: str, *, images: np.ndarray | None = None,
                 samples: int = 8, seed: int = 0) -> float:
    """Write `model` as `fmt` at `out` (whole or not at all), after running the artefact on
    `images` (default: `samples` random ones) and measuring the largest |difference| from
    the Keras model's logits, which it returns; NaN where no runtime for the format is
    installed."""
    import keras

    _, height, width, channels = model.input_shape
    if images is None:
        images = np.random.default_rng(seed).integers(
            0, 256, (samples, height, width, channels))
    x = np.asarray(images, "float32")
    # Also builds the model's traced state: torch.onnx refuses a model never called
    # ("The model provided has never called"), as a freshly loaded one is.
    want = keras.ops.convert_to_numpy(model(x, training=False))
    out_path = pathlib.Path(out)
    with _staging(out_path) as staged:
        try:
            model.export(str(staged), format=FORMATS[fmt], verbose=False)
        except Exception as e:  # the exporters raise many kinds; the user needs the reason
            raise MentorError(f"Keras could not export the model as {fmt} on the "
                              f"{keras.backend.backend()} backend: {type(e).__name__}: "
                              f"{e}") from e
        try:
            got = _run_exported(fmt, str(staged), x)
        except Exception as e:  # a runtime that cannot read what Keras wrote
            raise MentorError(f"the exported {fmt} model does not run in its runtime "
                              f"({type(e).__name__}: {e}); nothing was written to "
                              f"{out}.") from e
        os.replace(staged, out_path)
    if got is None:
        return float("nan")
    return float(np.max(np.abs(np.asarray(got, "float32").reshape(want.shape) - want)))


@contextlib.contextmanager
def _staging(out: pathlib.Path):
    """A path for the artefact inside a fresh hidden folder beside `out`, creating the
    folders to it; on leaving, that folder goes, and on failure also the created folders
    (never one that existed before)."""
    created = []
    for folder in reversed([out.parent, *out.parent.parents]):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as e:
                _remove_created(created)
                raise MentorError(f"cannot create {folder} for --out {out} "
                                  f"({e.strerror or e}); give a path in a writable "
                                  "folder.") from None
            created.append(folder)
    try:
        temp = pathlib.Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out.parent))
    except OSError as e:
        _remove_created(created)
        raise MentorError(f"cannot write in {out.parent} ({e.strerror or e}); give --out a "
                          "path in a writable folder.") from None
    done = False
    try:
        yield temp / out.name
        done = True
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        if not done:
            _remove_created(created)


def _remove_created(created: list[pathlib.Path]):
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # something else wrote there meanwhile: keep it
            folder.rmdir()


def _run_exported(fmt: str, path: str, x: np.ndarray):
    """The exported artefact's outputs on x, through its own runtime; None if absent."""
    if fmt in ("saved_model", "tflite") and importlib.util.find_spec("tensorflow") is None:
        return None
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # held: its variables die with it
        return loaded.serve(tf.constant(x)).numpy()
    if fmt == "tflite":
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():  # "deprecated": still TF's own way to run a .tflite
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_path=path)
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(path)
    return session.run(None, {session.get_inputs()[0].name: x})[0]
