"""Inputs a user can trust mentor with: the README's Python example runs as written on a
torch-only install; every argument of mentor.api of the wrong kind, and every config key of
the wrong kind or unread, gets one message naming it; whatever config mentor writes reads
back the same; a run made from Python objects is a self-contained folder the command line
evaluates and predicts with; a teacher that is no classifier is refused when loaded."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import write_npz
from hypothesis import given, settings
from hypothesis import strategies as st

import mentor.api
from mentor.cli import main
from mentor.config import dumps, to_dict
from mentor.errors import MentorError
from mentor.recipes import from_dict, load_config
from mentor.recipes.supervised import SupervisedConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A torch-only install: tensorflow and tensorboard are not found (find_spec says None, as
# for a package never installed), whatever this environment holds.
WITHOUT_TENSORFLOW = '''
import sys
from importlib.machinery import PathFinder


class _Without:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "tensorboard"):
            return None
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_Without if f is PathFinder else f for f in sys.meta_path]
'''


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


@pytest.mark.torch_once
def test_readme_python_example_runs_verbatim_without_tensorflow(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_TENSORFLOW)
    (tmp_path / "example.py").write_text(readme_python_example())
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT / "src")]
                                        + ([env["PYTHONPATH"]] if "PYTHONPATH" in env else []))
    check = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                            "print(u.find_spec('tensorflow'))"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "None", check.stderr  # the emulation holds
    result = subprocess.run([sys.executable, "example.py"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "mine" / "metrics.json").is_file()


# ----------------------------------------------------------------------------- arguments


def tiny(classes=3):
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                             keras.layers.Flatten(), keras.layers.Dense(classes)])


def arrays(n=48, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), np.arange(n) % classes


QUICK = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=16",
         "train.warmup_steps=0", "augment.kind=\"none\""]


@pytest.mark.parametrize("kwargs, words", [
    ({"config": 3}, ["config takes", "int 3"]),
    ({"config": ["supervised"]}, ["config takes", "list"]),
    ({"config": SupervisedConfig}, ["config takes", "the class SupervisedConfig"]),
    ({"config": "supervised", "set": 5}, ["set takes a list", "int 5"]),
    ({"config": "supervised", "set": [("train.epochs", 1)]}, ["set takes", "tuple"]),
    ({"config": "supervised", "set": {"train.epochs": 1}}, ["set takes a list", "dict"]),
    ({"config": "supervised", "out": 7}, ["out takes a folder path", "int 7"]),
    ({"config": "supervised", "name": 7}, ["name takes a string"]),
    ({"config": "supervised", "callbacks": "tb"}, ["callbacks takes", "str 'tb'"]),
])
def test_arguments_of_the_wrong_kind_are_named(kwargs, words, tmp_path):
    kwargs = {"out": tmp_path / "run", **kwargs}
    with pytest.raises(MentorError) as caught:
        mentor.api.run(**kwargs)
    for word in words:
        assert word in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused at the door, before any work


@pytest.mark.torch_once
@pytest.mark.parametrize("overrides", ["train.epochs=1", None, ("train.epochs=1",)])
def test_set_takes_one_string_none_or_a_tuple(overrides, tmp_path):
    config = {"recipe": "supervised", "train": {"epochs": 1, "steps_per_epoch": 2,
                                               "batch_size": 16, "warmup_steps": 0},
              "augment": {"kind": "none"}}
    result = mentor.api.run(config, pathlib.Path(tmp_path / "run"), model=tiny(),
                            train=arrays(), set=overrides)
    assert result.metrics["steps"] == 2


def test_one_string_is_one_override():
    from mentor.api import _overrides

    assert _overrides("train.epochs=3") == ["train.epochs=3"]
    assert _overrides(None) == [] and _overrides(("a=1", "b=2")) == ["a=1", "b=2"]


# ----------------------------------------------------------------------------- finished runs


@pytest.mark.torch_once
def test_a_run_from_python_objects_is_evaluated_and_predicted_without_them(
        tmp_path, capsys, monkeypatch):
    import json

    import mentor.objects

    x, y = arrays(60)
    result = mentor.api.run("supervised", tmp_path / "run", model=tiny(), train=(x, y),
                            test=(x[:30], y[:30]), set=QUICK)
    run = str(tmp_path / "run")
    assert "object:" in (tmp_path / "run" / "config.toml").read_text()
    data = write_npz(tmp_path / "test.npz", x=x[:30], y=y[:30])
    monkeypatch.setattr(mentor.objects, "_objects", {})  # as in a new process
    assert main(["evaluate", run, "--data", data, "--json", str(tmp_path / "e.json")]) == 0
    # its training arrays are gone with the process: the overlap check says so, no traceback
    err = capsys.readouterr().err
    assert "arrays given from Python" in err and "Traceback" not in err
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["test_acc"] == pytest.approx(result.metrics["test_acc"])
    assert main(["predict", run, data, "--out", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {result.metrics['test_acc']:.4f}" in out
    assert main(["robustness", run, "--data", data, "--corruptions", "fog", "--severities",
                 "1", "--out", str(tmp_path / "robust")]) == 0
    robust = json.loads((tmp_path / "robust" / "metrics.json").read_text())
    assert robust["clean_acc"] == pytest.approx(result.metrics["test_acc"])


# ----------------------------------------------------------------------------- config files

# Any text a str can hold and a file can store: lone surrogates cannot be written as UTF-8.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
LONG = st.builds(lambda s, n: s * n, TEXT, st.integers(1, 200))
SCALARS = (TEXT | LONG | st.booleans() | st.integers(-2**63, 2**63 - 1)
           | st.floats(allow_nan=False))
VALUES = st.recursive(SCALARS | st.lists(SCALARS, max_size=4),
                      lambda inner: st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(TEXT, VALUES, max_size=6))
def test_dumps_writes_toml_that_reads_back_the_same(values):
    import tomllib

    assert tomllib.loads(dumps(values)) == values


@settings(max_examples=60, deadline=None, database=None)
@given(description=TEXT | LONG, train=TEXT, rate=st.floats(1e-9, 10),
       seed=st.integers(0, 2**31 - 1))
def test_a_written_config_loads_back_the_same(description, train, rate, seed,
                                              tmp_path_factory):
    config = from_dict({"recipe": "distill", "description": description, "seed": seed,
                        "data": {"train": train}, "train": {"learning_rate": rate}})
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_bytes(dumps(to_dict(config)).encode("utf-8"))
    assert to_dict(load_config(str(path))[0]) == to_dict(config)


def test_a_multi_line_description_survives_a_run(tmp_path):
    description = 'line one\nline "two"\ttabbed \\ backslash\r\x00 é'
    result = mentor.api.run({"recipe": "supervised", "description": description},
                            tmp_path / "run", model=tiny(), train=arrays(), set=QUICK)
    config, _ = load_config(str(result.run_dir / "config.toml"))
    assert config.description == description


@pytest.mark.parametrize("content, words", [
    (b"recipe = \"supervised\"\ndescription = \"caf\xe9\"\n",
     ["byte 0xe9 on line 2", "not UTF-8"]),
    (bytes(range(256)), ["not UTF-8"]),
    (b"recipe = \"supervised\"\x00\n", ["not valid TOML"]),
])
def test_a_config_file_that_is_not_toml_text_is_named(content, words, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(MentorError) as caught:
        load_config(str(path))
    assert str(path) in str(caught.value)
    for word in words:
        assert word in str(caught.value)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("values, words", [
    ({"model": {"name": "keras.applications:MobileNet", "options": {"alpha": "x"}}},
     ["'model.options.alpha' must be a number", "1.0", "'x' (str)"]),
    ({"model": {"options": {"width": 3.5}}}, ["'model.options.width' must be an integer"]),
    ({"model": {"options": {"width": True}}}, ["'model.options.width' must be an integer"]),
    ({"recipe": "distill", "teacher": {"model": {"options": {"dropout": "none"}}}},
     ["'teacher.model.options.dropout' must be a number"]),
    ({"train": {"backbone_lr_scale": 0}},
     ["'train.backbone_lr_scale' is 0", "random weights", "Set it > 0"]),
    ({"model": {"name": "keras.applications:MobileNet"}, "train": {"backbone_lr_scale": 0}},
     ["'train.backbone_lr_scale' is 0", "imagenet"]),
    ({"recipe": "consistency", "teacher": {"train": {"backbone_lr_scale": 0}}},
     ["'teacher.train.backbone_lr_scale' is 0"]),
    ({"recipe": "adamatch", "mode": "ssl", "labels_per_class": 4,
      "target": {"labels_per_class": 2}},
     ["'target.labels_per_class' is not read in mode 'ssl'", "'ssda'"]),
    ({"recipe": "adamatch", "mode": "ssl", "labels_per_class": 4,
      "target": {"train": "embedded:digits"}}, ["'target.train' is not read in mode 'ssl'"]),
    ({"recipe": "adamatch", "mode": "uda", "labels_per_class": 4,
      "target": {"train": "embedded:digits"}}, ["'labels_per_class' is not read in mode 'uda'"]),
    ({"recipe": "adamatch", "mode": "ssda", "labels_per_class": 4,
      "target": {"train": "embedded:digits", "labels_per_class": 2}},
     ["'labels_per_class' is not read in mode 'ssda'"]),
])
def test_config_keys_of_the_wrong_kind_or_unread_are_named(values, words):
    with pytest.raises(MentorError) as caught:
        from_dict({"recipe": "supervised", **values})
    for word in words:
        assert word in str(caught.value)


def test_what_the_checks_leave_alone(tmp_path):
    from_dict({"recipe": "supervised", "model": {"options": {"dropout": 0, "width": 8}}})
    from_dict({"recipe": "supervised", "model": {"name": "keras.applications:MobileNet",
                                                 "options": {"alpha": 1}}})
    from_dict({"recipe": "distill", "teacher": {"path": "t.keras",
                                                "train": {"backbone_lr_scale": 0}}})
    from mentor.objects import MODEL_PREFIX, register

    from_dict({"recipe": "supervised", "model": {"name": register(tiny(), MODEL_PREFIX)},
               "train": {"backbone_lr_scale": 0}})
    tiny().save(tmp_path / "pre.keras")
    from_dict({"recipe": "supervised", "model": {"name": str(tmp_path / "pre.keras")},
               "train": {"backbone_lr_scale": 0}})
    # a resolved config writes every key, the modes' unread ones at their defaults
    for mode, extra in (("ssl", {"labels_per_class": 4}),
                        ("uda", {"target": {"train": "embedded:digits"}})):
        config = from_dict({"recipe": "adamatch", "mode": mode, **extra})
        assert to_dict(from_dict(to_dict(config))) == to_dict(config)


# ----------------------------------------------------------------------------- teachers


def _teacher_file(tmp_path, kind):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    if kind == "two outputs":
        flat = keras.layers.Flatten()(x)
        outputs = [keras.layers.Dense(3)(flat), keras.layers.Dense(3)(flat)]
    else:  # a map of class scores per position: (None, 4, 4, 3)
        outputs = keras.layers.Conv2D(3, 3, strides=2, padding="same")(x)
    path = tmp_path / f"{kind.replace(' ', '_')}.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.mark.parametrize("recipe", ["distill", "consistency"])
@pytest.mark.parametrize("kind", ["two outputs", "a map"])
def test_a_teacher_that_is_no_classifier_is_refused_at_load(recipe, kind, tmp_path, capsys):
    path = _teacher_file(tmp_path, kind)
    data = write_npz(tmp_path / "d.npz", x=arrays()[0], y=arrays()[1])
    config = tmp_path / "c.toml"
    config.write_text(f"recipe = \"{recipe}\"\n")
    code = main(["train", str(config), "--out", str(tmp_path / "run"), "--set",
                 f"data.train=\"{data}\"", "--set", f"teacher.path=\"{path}\"",
                 *sum((["--set", o] for o in QUICK if not o.startswith("augment")), [])])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("mentor: error:") and "Traceback" not in err
    assert str(path) in err and "(batch, classes)" in err
    assert ("2 outputs" in err) if kind == "two outputs" else ("(None, 4, 4, 3)" in err)


def test_a_python_teacher_that_is_no_classifier_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 1))
    teacher = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs))
    with pytest.raises(MentorError, match="teacher given to mentor.api.*\\(batch, classes\\)"):
        mentor.api.run("distill", tmp_path / "kd", teacher=teacher, train=arrays(),
                       set=QUICK[:-1])


@pytest.mark.torch_once
def test_a_distill_run_with_a_python_teacher_says_how_to_evaluate_it(tmp_path, capsys,
                                                                     monkeypatch):
    import mentor.objects

    x, y = arrays(60)
    mentor.api.run("distill", tmp_path / "kd", teacher=tiny(), train=(x, y), set=QUICK[:-1])
    data = write_npz(tmp_path / "test.npz", x=x, y=y)
    monkeypatch.setattr(mentor.objects, "_objects", {})  # as in a new process
    capsys.readouterr()
    if (tmp_path / "kd" / "teacher.keras").is_file():  # the run kept its teacher
        assert main(["evaluate", str(tmp_path / "kd"), "--data", data]) == 0
    else:
        assert main(["evaluate", str(tmp_path / "kd"), "--data", data]) == 1
        err = capsys.readouterr().err
        assert "keras.Model given from Python" in err and "student.keras" in err
    assert main(["evaluate", str(tmp_path / "kd" / "student.keras"), "--data", data]) == 0


# ----------------------------------------------------------------------------- more doors


def test_a_preset_name_cannot_reach_a_file_outside_the_presets(tmp_path):
    import mentor.config
    from mentor.config import read_toml

    evil = tmp_path / "evil.toml"
    evil.write_text('recipe = "supervised"\n')
    presets = pathlib.Path(str(mentor.config._preset_dir()))
    climb = os.path.relpath(tmp_path / "evil", presets)  # ../../…/evil, no .toml
    with pytest.raises(MentorError, match="unknown preset"):
        read_toml(climb)


def test_a_config_nested_too_deeply_is_refused_with_a_message(tmp_path):
    from mentor.config import read_toml

    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(MentorError, match="nests arrays or tables too deeply"):
        read_toml(str(deep))


def test_paths_are_taken_wherever_a_string_path_is(tmp_path):
    from mentor.data.sources import load_source
    from mentor.recipes import load_config

    config = tmp_path / "c.toml"
    config.write_text('recipe = "supervised"\n')
    assert load_config(config)[0].recipe == "supervised"
    x, y = arrays(12)
    data = pathlib.Path(write_npz(tmp_path / "d.npz", x=x, y=y))
    assert len(load_source(data)) == 12
    with pytest.raises(MentorError, match="spec string or a path, got int"):
        load_source(12)


def test_images_of_several_shapes_given_from_python_get_a_message():
    from mentor.api import as_source

    ragged = [np.zeros((8, 8, 1), np.uint8), np.zeros((9, 9, 1), np.uint8)]
    with pytest.raises(MentorError, match="not all of one shape"):
        as_source((ragged, [0, 1]), "data.train")


def test_evaluating_a_model_with_two_heads_is_refused_at_load(tmp_path, capsys):
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(3)(flat), keras.layers.Dense(2)(flat)])
    two.save(tmp_path / "two.keras")
    x, y = arrays(12)
    data = write_npz(tmp_path / "d.npz", x=x, y=y)
    code = main(["evaluate", str(tmp_path / "two.keras"), "--data", data])
    err = capsys.readouterr().err
    assert code == 1 and "gives 2 outputs" in err and "Traceback" not in err


def test_predict_takes_a_softmax_models_probabilities_as_they_are(tmp_path):
    from mentor.predict import predict_images

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, kernel_initializer="zeros",
                                                 bias_initializer=keras.initializers.Constant(
                                                     [0.0, 5.0, 0.0])),
                              keras.layers.Softmax()])
    x, y = arrays(6)
    text, _ = predict_images(model, [write_npz(tmp_path / "d.npz", x=x, y=y)])
    probability = float(text.splitlines()[1].split(",")[3])
    # softmax([0, 5, 0])[1] = e^5 / (e^5 + 2) = 0.98670; a second softmax would give 0.4753
    assert probability == pytest.approx(0.98670, abs=1e-4)


def test_a_cache_folder_that_is_a_file_is_one_message(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("MENTOR_CACHE", str(cache))
    model = tmp_path / "m.keras"
    keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(model)
    code = main(["evaluate", str(model), "--data", "usps:test"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("mentor: error:") and "Traceback" not in err
    assert str(cache) in err


def test_a_setting_the_run_never_reads_is_said_in_the_log_metrics_and_report(tmp_path, capsys):
    x, y = arrays(48)
    result = mentor.api.run("supervised", tmp_path / "run", model=tiny(), train=(x, y),
                            set=QUICK + ["train.optimizer=\"adamw\"", "train.momentum=0.5",
                                         "train.plateau_patience=7"])
    # momentum is SGD's; AdamW never reads it. plateau_patience: read only with a plateau
    # schedule, not this warm-up cosine one.
    assert result.metrics["unread_settings"] == "train.momentum, train.plateau_patience"
    assert "this run never read train.momentum, train.plateau_patience" in \
        capsys.readouterr().err
    assert "Set but never read by this run" in (tmp_path / "run" / "report.html").read_text()


@pytest.mark.parametrize("kwargs, words", [
    ({"num_classes": "10", "image_size": 8, "channels": 1}, "num_classes must be a whole"),
    ({"num_classes": 10, "image_size": 0, "channels": 1}, "image_size must be a whole"),
    ({"num_classes": 10, "image_size": 8, "channels": 2}, "channels must be 1"),
])
def test_build_model_checks_its_shape_arguments(kwargs, words):
    from mentor.models import build_model

    with pytest.raises(MentorError, match=words):
        build_model("small_cnn", **kwargs)
