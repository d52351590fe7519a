"""The command line's conventions: --version, `config show`, exit codes (2: the command or
the config is wrong; 1: the run failed), `predict`, `export`, run folders for `evaluate`
and `robustness`, and the warning when test images are the run's own training images."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from mentor.cli import main
from mentor.config import dumps, list_presets, to_dict
from mentor.recipes import load_config


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished supervised run on the 1797 UCI digits (8×8): 1438 train and validation
    images, 359 held back. About 15 s on 2 CPU cores; shared by the tests below."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = main(["train", "demo", "--set", "train.epochs=1", "--set", "data.train=embedded:digits",
                 "--set", "train.warmup_steps=0", "--out", str(out)])
    assert code == 0
    return out


# ---- --version, config show ---------------------------------------------------------------


def test_version_names_mentor_keras_and_the_backend(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out.strip()
    assert e.value.code == 0 and "\n" not in out
    assert out.startswith("mentor 0.") or out.startswith("mentor 1.")
    assert f"Keras {keras.__version__}" in out and keras.backend.backend() in out


@pytest.mark.parametrize("preset", [name for name, _ in list_presets()])
def test_config_show_loads_back_to_the_same_config(preset, capsys, tmp_path):
    code, out, err = run_cli(capsys, "config", "show", preset)
    assert code == 0, err
    shown = tmp_path / "shown.toml"
    shown.write_text(out)
    original, _ = load_config(preset)
    again, _ = load_config(str(shown))
    assert to_dict(again) == to_dict(original)
    assert dumps(to_dict(again)) in out  # every key, as config.toml has them


def test_config_show_applies_set_and_lists_defaults(capsys):
    code, out, _ = run_cli(capsys, "config", "show", "demo", "--set", "train.epochs=7")
    assert code == 0 and "epochs = 7" in out
    assert "[augment]" in out and "val_fraction = 0.1" in out  # a default the preset omits


# ---- exit codes ---------------------------------------------------------------------------


def test_a_usage_error_exits_2(capsys):
    code, _, err = run_cli(capsys, "config", "show", "demo", "--set", "train.epoch=3")
    assert code == 2 and "unknown config key 'train.epoch'" in err
    with pytest.raises(SystemExit) as e:  # argparse's own refusals stay 2
        main(["evaluate"])
    assert e.value.code == 2


def test_a_run_time_failure_exits_1(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "gone.keras", "--data", "embedded:digits")
    assert code == 1 and "no such model file" in err


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status" in out and "mentor predict" in out and "mentor export" in out


# ---- run folders and overlap --------------------------------------------------------------


def test_evaluate_a_run_folder_warns_that_its_training_images_are_not_a_test(
        tiny_run, capsys, tmp_path):
    code, out, err = run_cli(capsys, "evaluate", tiny_run, "--data", "embedded:digits",
                             "--json", tmp_path / "e.json")
    assert code == 0, err
    assert "accuracy" in out and "1797 images" in out
    assert "warning: 1438 of 1797 test images are training images of this run" in err
    assert "data.train = embedded:digits" in err
    assert json.loads((tmp_path / "e.json").read_text())["overlap_images"] == 1438

    # the model file inside the run says the same; a source it never saw says nothing
    code, _, err = run_cli(capsys, "evaluate", tiny_run / "model.keras", "--data",
                           "embedded:mnist5k", "--json", tmp_path / "f.json")
    assert code == 0 and "training images" not in err
    assert json.loads((tmp_path / "f.json").read_text())["overlap_images"] == 0


def test_evaluate_an_unfinished_run_folder_names_mentor_status(capsys, tmp_path):
    (tmp_path / "config.toml").write_text('recipe = "supervised"\n')
    code, _, err = run_cli(capsys, "evaluate", tmp_path, "--data", "embedded:digits")
    assert code == 1 and "no metrics.json" in err and f"mentor status {tmp_path}" in err


def test_evaluate_a_consistency_run_folder_shows_student_and_teacher(capsys, tmp_path):
    config, _ = load_config("demo-consistency", ["data.train=embedded:digits", "teacher.path="])
    (tmp_path / "config.toml").write_text(dumps(to_dict(config)))
    (tmp_path / "metrics.json").write_text("{}")
    for name in ("student", "teacher"):
        keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)]).save(tmp_path / f"{name}.keras")
    code, out, err = run_cli(capsys, "evaluate", tmp_path, "--data", "embedded:digits")
    assert code == 0, err
    assert "student_acc" in out and "teacher_acc" in out


def test_robustness_of_a_run_folder_counts_the_corruptions_it_used(tiny_run, capsys, tmp_path):
    code, out, err = run_cli(capsys, "robustness", tiny_run, "--data", "embedded:digits",
                             "--corruptions", "fog,snow,gaussian_noise,contrast",
                             "--severities", "1,3", "--max-images", "60",
                             "--out", tmp_path / "rob")
    assert code == 0, err
    assert "(4 corruptions × 2 severities)" in out
    metrics = json.loads((tmp_path / "rob" / "metrics.json").read_text())
    assert 0 < metrics["overlap_images"] <= 60 and "training images of this run" in err


# ---- predict ------------------------------------------------------------------------------


def test_predict_a_labelled_source_writes_one_row_an_image(tiny_run, capsys, tmp_path):
    target = tmp_path / "p.csv"
    code, out, err = run_cli(capsys, "predict", tiny_run, "embedded:digits", "--out", target)
    assert code == 0, err
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 1797 and list(rows[0]) == ["image", "predicted", "class_name",
                                                    "probability", "label"]
    assert rows[5]["image"] == "5" and rows[5]["class_name"] == rows[5]["predicted"]
    assert all(0.1 <= float(r["probability"]) <= 1 for r in rows)  # the top class of 10
    accuracy = np.mean([r["predicted"] == r["label"] for r in rows])
    assert f"1797 images → {target} (accuracy {accuracy:.4f}" in out
    assert "training images of this run" in err
    assert os.listdir(tmp_path) == ["p.csv"]  # no .partial beside it


def test_predict_a_folder_of_images_resizes_them_to_the_model(tiny_run, capsys, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # RGB, 20×30: the model takes 8×8 gray
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    target = tmp_path / "p.csv"
    code, out, err = run_cli(capsys, "predict", tiny_run / "model.keras", folder, "--out", target)
    assert code == 0, err
    rows = list(csv.DictReader(target.open()))
    assert [r["image"] for r in rows] == [str(folder / f"{i}.png") for i in range(3)]
    assert "label" not in rows[0] and "3 images" in out

    # image files by name give the same rows
    code, _, _ = run_cli(capsys, "predict", tiny_run / "model.keras",
                         *sorted(folder.iterdir()), "--out", tmp_path / "q.csv")
    assert code == 0 and (tmp_path / "q.csv").read_text() == target.read_text()


def test_predict_refuses_a_file_that_is_not_an_image(tiny_run, capsys, tmp_path):
    note = tmp_path / "a.png"
    note.write_text("not a picture")
    code, _, err = run_cli(capsys, "predict", tiny_run, note, tmp_path / "b.png",
                           "--out", tmp_path / "p.csv")
    assert code == 1 and f"no such image file: {tmp_path / 'b.png'}" in err
    code, _, err = run_cli(capsys, "predict", tiny_run, note, "--out", tmp_path / "p.csv")
    assert code == 1 and f"cannot decode the image {note}" in err
    assert not (tmp_path / "p.csv").exists()


# ---- export -------------------------------------------------------------------------------


def test_export_tflite_needs_a_tflite_name(tiny_run, capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", tiny_run, "--format", "tflite",
                           "--out", tmp_path / "m.bin")
    assert code == 2 and "must end in .tflite" in err


@pytest.mark.skipif(importlib.util.find_spec("onnx") is not None
                    and importlib.util.find_spec("onnxscript") is not None,
                    reason="onnx and onnxscript are installed: nothing is missing to report")
def test_export_without_the_exporters_package_says_what_to_install(tiny_run, capsys, tmp_path):
    if keras.backend.backend() != "torch":
        pytest.skip("the torch backend's ONNX exporter is the one checked here")
    code, _, err = run_cli(capsys, "export", tiny_run, "--format", "onnx",
                           "--out", tmp_path / "m.onnx")
    assert code == 1 and "pip install onnx" in err and "KERAS_BACKEND=tensorflow" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="tensorflow is not installed (pip install -e '.[tensorflow]')")
def test_export_saved_model_and_tflite_on_tensorflow_match_the_keras_model(tiny_run, tmp_path):
    """On the TensorFlow backend (a .keras file loads on any): each artefact is run by
    TensorFlow on random images and its logits compared with the Keras model's."""
    script = ("import sys; from mentor.cli import main; sys.exit("
              f"main(['export', {str(tiny_run)!r}, '--format', 'saved_model', '--out', "
              f"{str(tmp_path / 'sm')!r}]) or main(['export', {str(tiny_run)!r}, '--format', "
              f"'tflite', '--out', {str(tmp_path / 'm.tflite')!r}]))")
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "→" in line]
    assert len(lines) == 2 and all("logits within" in line for line in lines), result.stdout
    for line in lines:  # "within 1.2e-06": the artefacts compute what the model does
        assert float(line.split("within ")[1].split()[0]) < 1e-3
    assert (tmp_path / "sm" / "saved_model.pb").is_file() and (tmp_path / "m.tflite").is_file()
