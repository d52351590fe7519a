"""`mentor export` end to end: every format Keras writes on the backend under test, run by
its own runtime on real images (the UCI digits embedded with mentor) and compared with the
Keras model; and what an export leaves behind when it fails (nothing of its own, and
nothing of the user's touched).

Each backend's pass exercises its own exporters: the format tests are marked `neutral`
(the JAX pass) and `smoke` (the TensorFlow pass) as well as running in the torch pass."""

import importlib.util

import keras
import numpy as np
import pytest

from mentor.cli import main
from mentor.export import NEEDS

# The exporters' packages that cannot join this test environment; every other one is in
# the `test` extra, so its format is tested rather than skipped.
NOT_INSTALLABLE = {
    "torch_xla": "torch_xla's newest wheel (2.9) is built against torch 2.9, not the "
                 "torch of this environment",
    "litert_torch": "litert-torch pins typing_extensions 4.12 (through litert-converter), "
                    "older than the one this environment's packages use",
}


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits():
    from mentor.data.sources import load_source

    data = load_source("embedded:digits")
    return data.x.astype("float32"), data.y


@pytest.fixture(scope="module")
def model_file(digits, tmp_path_factory):
    """A small classifier trained briefly on the digits, saved as a .keras file: export
    starts from a freshly loaded model, as the command line does."""
    x, y = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(momentum=0.9), keras.layers.Flatten(),
        keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("export") / "digits.keras"
    model.save(path)
    return path


def artefact_logits(fmt, path, x):
    """The artefact's outputs on x, through the runtime that format is made for."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    import tensorflow as tf

    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(path))
        return loaded.serve(tf.constant(x)).numpy()
    interpreter = tf.lite.Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.neutral
@pytest.mark.smoke
@pytest.mark.parametrize("fmt", ["onnx", "saved_model", "tflite"])
def test_export_matches_the_keras_model_on_real_images(fmt, model_file, digits, capsys,
                                                       tmp_path):
    from mentor.models import load_model

    backend = keras.backend.backend()
    out = tmp_path / ("m.tflite" if fmt == "tflite" else f"m.{fmt}")
    needs = NEEDS[(fmt, backend)]
    if needs is None:  # Keras has no exporter for it: the refusal names the way round
        code, _, err = run_cli(capsys, "export", model_file, "--format", fmt, "--out", out)
        assert code == 1 and "KERAS_BACKEND=tensorflow" in err and not out.exists()
        return
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(NOT_INSTALLABLE.get(module, f"{module} is not installed "
                                                   "(pip install -e '.[test]')"))
    code, stdout, err = run_cli(capsys, "export", model_file, "--format", fmt, "--out", out)
    assert code == 0, err
    assert "logits within" in stdout
    x, y = digits
    want = keras.ops.convert_to_numpy(load_model(model_file)(x, training=False))
    got = np.asarray(artefact_logits(fmt, out, x)).reshape(want.shape)
    np.testing.assert_allclose(got, want, atol=1e-3 * max(1.0, np.abs(want).max()))
    assert np.mean(got.argmax(-1) == want.argmax(-1)) > 0.995
    assert np.mean(want.argmax(-1) == y) > 0.8  # a model that learned the digits
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left beside it


# ----------------------------------------------------------------------------- failures


def _torch_onnx_available():
    return keras.backend.backend() == "torch" and all(
        importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


needs_torch_onnx = pytest.mark.skipif(not _torch_onnx_available(),
                                      reason="checked on the torch backend's ONNX exporter")


@needs_torch_onnx
def test_export_leaves_files_next_to_the_target_alone(model_file, capsys, tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "keep.partial.onnx").write_text("mine")
    (folder / "keep.onnx.partial").write_text("mine too")
    code, _, err = run_cli(capsys, "export", model_file, "--format", "onnx",
                           "--out", folder / "keep.onnx")
    assert code == 0, err
    assert (folder / "keep.partial.onnx").read_text() == "mine"
    assert (folder / "keep.onnx.partial").read_text() == "mine too"
    assert sorted(p.name for p in folder.iterdir()) == [
        "keep.onnx", "keep.onnx.partial", "keep.partial.onnx"]


@needs_torch_onnx
def test_a_failed_export_removes_only_what_it_created(model_file, tmp_path, monkeypatch):
    from mentor.errors import MentorError
    from mentor.export import check_exportable, export_model
    from mentor.models import load_model

    def fail(self, *args, **kwargs):
        raise RuntimeError("exporter broke")

    model = load_model(model_file)
    monkeypatch.setattr(keras.Model, "export", fail)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "other.txt").write_text("mine")
    for out in (existing / "new" / "deeper" / "m.onnx", existing / "m.onnx"):
        check_exportable("onnx", "torch", str(out))
        with pytest.raises(MentorError, match="could not export .*exporter broke"):
            export_model(model, "onnx", str(out))
        assert sorted(p.name for p in existing.iterdir()) == ["other.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_export_under_a_file_names_the_file(model_file, capsys, tmp_path):
    (tmp_path / "somefile.txt").write_text("x")
    code, _, err = run_cli(capsys, "export", model_file, "--format", "onnx",
                           "--out", tmp_path / "somefile.txt" / "x.onnx")
    if code == 1 and "pip install" in err:
        pytest.skip("the exporter's packages are missing, which is refused first")
    assert code == 1 and err.startswith("mentor: error:")
    assert "somefile.txt is a file, not a folder" in err and "Traceback" not in err
    assert (tmp_path / "somefile.txt").read_text() == "x"


def test_export_to_an_unwritable_folder_says_so(tmp_path, monkeypatch):
    from mentor.errors import MentorError
    from mentor.export import export_model

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mentor.export.tempfile.mkdtemp", refuse)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    with pytest.raises(MentorError, match="Permission denied.*writable folder"):
        export_model(model, "onnx", str(tmp_path / "sub" / "x.onnx"))
    assert list(tmp_path.iterdir()) == []
