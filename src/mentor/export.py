"""`mentor export`: a trained classifier as a TensorFlow SavedModel, ONNX or TFLite file,
through Keras's own `Model.export`, checked against the Keras model after writing.

Which packages each format needs depends on the backend Keras runs on (Keras 3.15):
SavedModel is traced by TensorFlow (on torch, through torch_xla too), ONNX by torch.onnx
(onnx, onnxscript), tf2onnx or jax2onnx, TFLite (LiteRT) by TensorFlow's converter or
litert_torch. A .keras file loads on every backend, so `KERAS_BACKEND=tensorflow` is the
way round a package missing for the current one.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil

import numpy as np

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
    package it needs that is absent, or an --out it would refuse."""
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
    if os.path.exists(out):
        raise MentorError(f"--out {out} exists already; choose another path or delete it.")


def export_model(model, fmt: str, out: str, *, samples: int = 8, seed: int = 0) -> float:
    """Write `model` as `fmt` at `out` (whole or not at all), then run the artefact on
    `samples` random images and return the largest |difference| from the Keras model's
    logits, or NaN where no runtime for the format is installed."""
    import keras

    out_path = pathlib.Path(out)
    partial = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    _remove(partial)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width, channels = model.input_shape
    x = np.random.default_rng(seed).integers(
        0, 256, (samples, height, width, channels)).astype("float32")
    try:
        model.export(str(partial), format=FORMATS[fmt], verbose=False)
    except Exception as e:  # the exporters raise many kinds; the user needs the reason
        _remove(partial)
        raise MentorError(f"Keras could not export the model as {fmt} on the "
                          f"{keras.backend.backend()} backend: {type(e).__name__}: {e}") from e
    os.replace(partial, out_path)
    got = _run_exported(fmt, str(out_path), x)
    if got is None:
        return float("nan")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.max(np.abs(np.asarray(got, "float32").reshape(want.shape) - want)))


def _remove(path: pathlib.Path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


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
