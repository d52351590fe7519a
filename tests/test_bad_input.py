"""Bad input that used to pass silently, end in a traceback or lose a result.

Each must give one clear message (the problem and the fix), a non-zero exit from the CLI
and nothing half-written.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import mark_run, write_npz

from mentor import MentorError
from mentor.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(code, err, *words, usage=False):
    """The CLI's one-message refusal: "mentor: error: …" with `words`, no traceback; exit 2
    for a usage error (`usage`), else 1."""
    assert code == (2 if usage else 1), err
    assert err.startswith("mentor: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


def argparse_refused(capsys, argv, *words):
    """argparse's refusal of a flag's value: exit 2 with the usage line and `words`."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "usage: mentor" in err and "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


@pytest.fixture
def model(tmp_path):
    """A 10-class model for 8×8 gray images (embedded:digits' shape)."""
    path = tmp_path / "m.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(path)
    return path


# ---- 1. whole-number flags ---------------------------------------------------------------


@pytest.mark.parametrize("size", ["0", "-3"])
def test_evaluate_refuses_a_batch_size_below_one(capsys, model, size):
    argparse_refused(capsys, ["evaluate", model, "--data", "embedded:digits",
                              "--batch-size", size], "--batch-size", "≥ 1", size)


@pytest.mark.parametrize(("flag", "value"), [
    ("--max-images", "-5"), ("--seed", "-1"), ("--max-images", "many")])
def test_robustness_refuses_negative_or_non_whole_counts(capsys, model, tmp_path, flag, value):
    out_dir = tmp_path / "out"
    argparse_refused(capsys, ["robustness", model, "--data", "embedded:digits",
                              flag, value, "--out", out_dir], flag, value)
    assert not out_dir.exists()


@pytest.mark.parametrize("command", [["train", "demo"], ["demo", "supervised"]])
def test_devices_refuses_a_negative_count(capsys, tmp_path, command):
    out_dir = tmp_path / "out"
    argparse_refused(capsys, command + ["--devices", "-1", "--out", out_dir],
                     "--devices", "≥ 0")
    assert not out_dir.exists()


def test_int_types_accept_whole_numbers_at_their_bounds():
    from mentor.cli import non_negative_int, positive_int

    assert positive_int("1") == 1 and non_negative_int("0") == 0


# ---- 2. robustness: severities and corruptions ------------------------------------------


@pytest.mark.parametrize("severities", ["high", "0", "6", "1,x", ","])
def test_robustness_severities_must_be_levels_1_to_5(capsys, model, tmp_path, severities):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "robustness", model, "--data", "embedded:digits",
                             "--severities", severities, "--out", out_dir)
    refused(code, err, "--severities", "1,3,5", usage=True)
    assert not out_dir.exists() and "accuracy" not in out


def test_robustness_unknown_corruption_names_the_choices(capsys, model, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "robustness", model, "--data", "embedded:digits",
                           "--corruptions", "snow,fgo", "--out", out_dir)
    refused(code, err, "unknown corruption 'fgo'", "Did you mean 'fog'", "gaussian_noise",
            usage=True)
    assert not out_dir.exists()


# ---- 3. evaluate --json ------------------------------------------------------------------


def test_evaluate_json_into_missing_folders_is_written_whole(capsys, model, tmp_path):
    target = tmp_path / "out" / "missing" / "dir" / "m.json"
    code, _, err = run_cli(capsys, "evaluate", model, "--data", "embedded:digits",
                           "--json", target)
    assert code == 0, err
    assert 0 <= json.loads(target.read_text())["test_acc"] <= 1
    assert os.listdir(target.parent) == ["m.json"]  # no .partial left beside it


@pytest.mark.parametrize("where", ["under a file", "a directory"])
def test_evaluate_json_that_cannot_be_written_is_refused_before_evaluating(
        capsys, model, tmp_path, where):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    target = a_file / "m.json" if where == "under a file" else tmp_path
    code, out, err = run_cli(capsys, "evaluate", model, "--data", "embedded:digits",
                             "--json", target)
    refused(code, err, "--json", str(target),
            f"{a_file} is a file, not a folder" if where == "under a file" else "is a directory")
    assert "accuracy" not in out  # refused before the evaluation, not after it
    assert a_file.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["a_file", "m.keras"]


# ---- 4. KERAS_BACKEND --------------------------------------------------------------------


def test_check_backend_refuses_an_unknown_backend_and_names_the_valid_ones(monkeypatch):
    from mentor._backend import check_backend

    monkeypatch.setenv("KERAS_BACKEND", "pytorch")
    with pytest.raises(MentorError) as e:
        check_backend()
    for word in ("'pytorch'", "torch", "jax", "tensorflow"):
        assert word in str(e.value)
    for good in ("torch", "jax", "tensorflow"):
        monkeypatch.setenv("KERAS_BACKEND", good)
        check_backend()
    monkeypatch.delenv("KERAS_BACKEND")
    check_backend()


def test_a_backend_that_is_not_installed_is_named_with_how_to_install_it(monkeypatch):
    import importlib.util

    from mentor._backend import check_backend

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(MentorError, match=r"KERAS_BACKEND=jax is not installed: `pip install jax`"):
        check_backend()


def test_cli_with_an_unknown_backend_exits_with_the_message_not_a_traceback():
    env = dict(os.environ, KERAS_BACKEND="pytorch")
    result = subprocess.run([sys.executable, "-m", "mentor", "presets"], env=env, check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "mentor: error: KERAS_BACKEND='pytorch'" in result.stderr
    assert "torch, jax, tensorflow" in result.stderr


# ---- 5. damaged status.json and config.toml ----------------------------------------------


def unfinished_run(path, *, config='recipe = "supervised"\n', status='{"state": "runn'):
    """A run directory with a checkpoint saved, its config.toml and status.json as given."""
    (mark_run(path) / "checkpoints").mkdir(parents=True)
    np.savez(path / "checkpoints" / "epoch-0001.npz", var0=np.zeros(2))
    (path / "config.toml").write_text(config)
    (path / "status.json").write_text(status)
    return path


def test_status_with_a_damaged_status_json_is_rebuilt_from_the_run_files(capsys, tmp_path):
    run = unfinished_run(tmp_path / "run")
    code, out, err = run_cli(capsys, "status", run)
    assert code == 1 and "Traceback" not in err
    assert "interrupted" in out and "resume" in out
    assert f"status.json of {run} is damaged" in err and "rebuilt from the run's files" in err

    (run / "metrics.json").write_text("{}")
    code, out, _ = run_cli(capsys, "status", run)
    assert code == 0 and "completed" in out


def test_mark_starts_a_damaged_status_json_afresh(tmp_path):
    from mentor.run_folders import mark

    run = unfinished_run(tmp_path / "run")
    mark(run, "running", stage="model")
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "running" and status["stage"] == "model"


def test_resume_with_a_damaged_config_toml_rewrites_it_and_resumes(capsys, tmp_path):
    import tomllib

    from mentor.run_folders import RunDir

    values = {"recipe": "supervised", "train": {"epochs": 3}}
    run = unfinished_run(tmp_path / "run", config='recipe = "superv', status="{")
    run_dir = RunDir(run)
    run_dir.write_config(values, "test")
    err = capsys.readouterr().err
    assert run_dir.resumed
    assert f"config.toml of {run} is damaged" in err and "Traceback" not in err
    assert tomllib.loads((run / "config.toml").read_text()) == values
    assert json.loads((run / "status.json").read_text())["state"] == "running"
    assert not list(run.glob("*.partial"))


# ---- 6, 7. npz: NaN count, no images -----------------------------------------------------


def test_npz_nan_count_is_of_images_with_any_nan_pixel(capsys, model, tmp_path):
    x = np.random.default_rng(0).random((60, 8, 8, 1)).astype("float32")
    x[:33, 0, 0, 0] = np.nan  # one bad pixel in each of 33 images
    x[40, 1, 1, 0] = np.inf
    data = write_npz(tmp_path / "nan.npz", x=x, y=np.arange(60) % 3)
    code, _, err = run_cli(capsys, "evaluate", model, "--data", data)
    refused(code, err, "34 image(s) contain NaN or infinite pixels")


def test_empty_npz_says_it_holds_no_images(capsys, model, tmp_path):
    data = write_npz(tmp_path / "empty.npz", x=np.zeros((0, 8, 8, 1), np.uint8), y=np.zeros(0, int))
    code, _, err = run_cli(capsys, "evaluate", model, "--data", data)
    refused(code, err, "empty.npz holds no images", "(0, 8, 8, 1)")
    assert "selection" not in err


# ---- 8. a .keras file that is not a zip --------------------------------------------------


def test_evaluate_a_keras_file_that_is_not_a_zip_says_so(capsys, tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_text("a text file, not a model\n")
    code, out, err = run_cli(capsys, "evaluate", bad, "--data", "embedded:digits")
    refused(code, err, f"{bad} is not a Keras .keras file", "zip archive", "model.save")
    assert "File not found" not in err and "accuracy" not in out


# ---- 9. labels whose class ids leave most ids unused -------------------------------------


def test_one_stray_label_is_refused_not_trained_as_a_thousand_classes(capsys, model, tmp_path):
    y = np.arange(60) % 3
    y[7] = 1000
    data = write_npz(tmp_path / "stray.npz", x=np.zeros((60, 8, 8, 1), np.uint8), y=y)
    code, _, err = run_cli(capsys, "evaluate", model, "--data", data)
    refused(code, err, "stray.npz", "largest label is 1000", "1 image(s)", "0..K-1")


def test_negative_labels_are_refused(capsys, model, tmp_path):
    data = write_npz(tmp_path / "neg.npz", x=np.zeros((6, 8, 8, 1), np.uint8),
               y=np.array([0, 1, 2, -1, 1, 0]))
    code, _, err = run_cli(capsys, "evaluate", model, "--data", data)
    refused(code, err, "neg.npz", "≥ 0", "-1")


def test_sparse_labels_are_refused_from_arrays_too():
    from mentor.data.imageset import ImageSet

    with pytest.raises(MentorError, match="largest label is 1000"):
        ImageSet(np.zeros((4, 8, 8), np.uint8), [0, 1, 2, 1000])
    # with class names the ids are the names' positions: out of range is another message
    assert ImageSet(np.zeros((2, 8, 8), np.uint8), [0, 9], [str(i) for i in range(10)])


def test_a_selection_of_few_classes_keeps_the_file_class_ids(tmp_path):
    from mentor.data.sources import load_source

    data = write_npz(tmp_path / "few.npz", x=np.zeros((6, 8, 8), np.uint8),
               y=np.array([0, 1, 2, 2, 3, 4]), part=np.array([0, 0, 1, 1, 0, 0]))
    part = load_source(f"{data}?part=1")  # keeps only label 2 of the file's 0..4
    assert part.y.tolist() == [2, 2] and part.num_classes == 5


def test_embedded_and_shared_data_still_load(shared_data):
    from mentor.data.sources import load_source

    for spec in ["embedded:digits", "embedded:mnist5k", *sorted(shared_data.glob("*.npz"))]:
        data = load_source(str(spec))
        assert data.num_classes == int(data.y.max()) + 1


def test_a_run_on_a_folder_with_broken_files_counts_them_and_strict_refuses(capsys, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("zero", "one"):
        for i in range(12):
            path = tmp_path / "imgs" / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    (tmp_path / "imgs" / "zero" / "empty.png").write_bytes(b"")
    (tmp_path / "imgs" / "one" / "text.jpg").write_text("not a picture")
    tiny = ["--set", "data.train=folder:" + str(tmp_path / "imgs"), "--set", "train.epochs=1",
            "--set", "train.batch_size=8", "--set", "model.options.width=4"]
    code, out, _ = run_cli(capsys, "train", "demo", *tiny, "--out", tmp_path / "run")
    assert code == 0 and "skipped 2 of 26 files that do not decode" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 2
    assert sorted(os.path.basename(f) for f in metrics["skipped_files"]) == ["empty.png",
                                                                              "text.jpg"]
    code, _, err = run_cli(capsys, "train", "demo", *tiny, "--strict", "--out", tmp_path / "s")
    # classes in sorted order: "one" (text.jpg) is read before "zero" (empty.png)
    refused(code, err, "cannot decode the image", "text.jpg", "Without --strict")
    assert not (tmp_path / "s" / "metrics.json").exists()
