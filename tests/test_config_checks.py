"""Configs are checked before work starts: every preset's and example's keys are read by
their recipe, every choice field refuses a bad value before any training step, and every
number is range-checked at load."""

import dataclasses
import pathlib

import keras
import pytest

from mentor.cli import main
from mentor.config import apply_overrides, list_presets, read_toml, record_reads
from mentor.errors import MentorError
from mentor.recipes import from_dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = [name for name, _ in list_presets()] + sorted(
    str(p) for p in (ROOT / "examples").glob("*.toml"))

# What makes any preset run in seconds on embedded data. Overriding a key does not hide it:
# the run still reads it, and the test asks only which keys were read.
TINY = {"data.train": "embedded:digits", "data.test": "", "data.image_size": 8,
        "data.val_fraction": 0.1, "model.name": "small_cnn", "model.options": {"width": 4},
        "train.epochs": 1, "train.steps_per_epoch": 2, "train.warmup_steps": 0,
        "train.batch_size": 8}
TINY_BY_RECIPE = {"distill": {"augment.crop_size": 0}}
# any recipe with a [robustness] sweep, or a [teacher] it trains first
TINY_SWEEP = {"robustness.max_images": 4, "robustness.corruptions": ["fog"],
              "robustness.severities": [1]}
# AdaMatch reads each of these in one mode only (a key its mode does not read is an error)
TINY_BY_MODE = {"uda": {"target.train": "embedded:digits"},
                "ssda": {"target.train": "embedded:digits", "target.labels_per_class": 2},
                "ssl": {"labels_per_class": 2}}
TEACHER = {"teacher.model.name": "small_cnn", "teacher.model.options": {"width": 4},
           "teacher.train.epochs": 1, "teacher.train.steps_per_epoch": 2,
           "teacher.train.warmup_steps": 0, "teacher.train.batch_size": 8, "teacher.path": ""}


def file_keys(values: dict, config, prefix="") -> set:
    """The dotted keys a TOML file sets, down to the config's fields (a dict-valued field
    such as model.options is one key)."""
    keys = set()
    for key, value in values.items():
        if key in ("recipe", "description"):
            continue
        section = vars(config)[key]
        if isinstance(value, dict) and hasattr(section, "__dataclass_fields__"):
            keys |= file_keys(value, section, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("source", CONFIGS)
def test_every_key_a_preset_or_example_sets_is_read_by_its_recipe(source, tmp_path):
    from mentor import recipes

    values, name, _ = read_toml(source)
    recipe = values["recipe"]
    sections = {f.name for f in dataclasses.fields(recipes.get(recipe).config)}
    overrides = {**TINY, **TINY_BY_RECIPE.get(recipe, {}),
                 **(TINY_BY_MODE[values.get("mode", "uda")] if recipe == "adamatch" else {}),
                 **(TINY_SWEEP if "robustness" in sections else {}),
                 **(TEACHER if "teacher" in sections else {})}
    config = from_dict(apply_overrides(read_toml(source)[0],
                                       [f"{k}={_toml(v)}" for k, v in overrides.items()]))
    with record_reads(config) as read:
        recipes.get(recipe).run(config, tmp_path / "run", name=name)
    unread = file_keys(values, config) - read
    assert not unread, f"{source} sets keys its recipe never reads: {sorted(unread)}"


def _toml(value):
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_record_reads_sees_only_what_is_read():
    config = from_dict({"recipe": "supervised"})
    with record_reads(config) as read:
        _ = config.train.epochs, config.model.name
    assert read == {"train", "train.epochs", "model", "model.name"}


# ----------------------------------------------------------------------------- choices
# Each bad choice must fail before any training step: fit is booby-trapped, and no teacher
# may have been trained or saved.

CHOICES = [
    ("demo", "augment.kind", '"medium"', "augment.kind"),
    ("demo", "train.optimizer", '"lion"', "train.optimizer"),
    ("demo", "train.schedule", '"linear"', "train.schedule"),
    ("demo", "runtime.precision", '"float8"', "runtime.precision"),
    ("demo", "data.channels", "2", "data.channels"),
    ("demo", "model.name", '"resnet9"', "unknown model 'resnet9'"),
    ("demo-adamatch", "mode", '"semi"', "mode"),
    ("demo-adamatch", "weak.kind", '"light"', "weak.kind"),
    ("demo-distill", "baseline.augment.kind", '"heavy"', "baseline.augment.kind"),
    ("demo-distill", "model.options", "{widht = 4}", "no option 'widht'"),
    ("demo-distill", "teacher.model.options", "{width = 0}", "[teacher.model] small_cnn"),
    ("demo-distill", "model.options", "{width = 0}", "[model] small_cnn"),
    ("demo-distill", "teacher.train.optimizer", '"adagrad"', "teacher.train.optimizer"),
    ("demo-consistency", "teacher.augment.kind", '"noisy"', "teacher.augment.kind"),
]


@pytest.fixture
def no_fit(monkeypatch):
    def fit(*args, **kwargs):
        raise AssertionError("training started before the bad value was refused")
    monkeypatch.setattr(keras.Model, "fit", fit)


@pytest.mark.parametrize("preset,key,value,words", CHOICES,
                         ids=[f"{c[0]}:{c[1]}" for c in CHOICES])
def test_a_bad_choice_fails_before_any_training_step(preset, key, value, words, tmp_path,
                                                     capsys, no_fit):
    out = tmp_path / "run"
    code = main(["train", preset, "--set", f"{key}={value}", "--set", "teacher.path=",
                 "--out", str(out)] if preset in ("demo-distill", "demo-consistency") else
                ["train", preset, "--set", f"{key}={value}", "--out", str(out)])
    err = capsys.readouterr().err
    # width = 0 is refused by the model's builder at preflight, with the data's shape in
    # hand (core.run.build_for): still a config key at fault, so a usage error
    assert code == 2 and words in err, err
    assert not (out / "teacher.keras").exists() and not (out / "metrics.json").exists()


# ----------------------------------------------------------------------------- ranges

RANGES = [
    ("train.learning_rate", -0.003, "> 0"),
    ("train.label_smoothing", 2.0, "in [0, 1)"),
    ("train.ema", 1.5, "in [0, 1)"),
    ("data.image_size", 1, "8..2048"),
    ("data.image_size", -5, "8..2048"),
    ("data.image_size", 10000, "8..2048"),
    ("seed", -1, "0..2147483647"),
    ("train.epochs", 0, "≥ 1"),
    ("train.steps_per_epoch", -1, "≥ 0"),
    ("train.batch_size", 0, "≥ 1"),
    ("data.val_fraction", 1.0, "in [0, 1)"),
    ("augment.magnitude", 11, "0..10"),
]


@pytest.mark.parametrize("key,value,rule", RANGES, ids=[f"{k}={v}" for k, v, _ in RANGES])
def test_numbers_out_of_range_are_refused_at_load_with_the_rule(key, value, rule):
    values = apply_overrides({"recipe": "supervised"}, [f"{key}={value}"])
    with pytest.raises(MentorError) as error:
        from_dict(values)
    assert f"'{key}' must be" in str(error.value) and rule in str(error.value)
    assert f"got {value}" in str(error.value)


def test_rules_between_keys_are_checked_at_load():
    with pytest.raises(MentorError, match="needs labels_per_class ≥ 1"):
        from_dict({"recipe": "adamatch", "mode": "ssl"})
    with pytest.raises(MentorError, match="student_from_teacher_init needs"):
        from_dict({"recipe": "consistency", "student_from_teacher_init": True,
                   "teacher": {"path": "t.keras"}})


def test_a_batch_larger_than_the_data_is_refused_before_training(tmp_path, capsys, no_fit):
    code = main(["train", "demo", "--set", "data.train=embedded:digits",
                 "--set", "train.batch_size=5000", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "train.batch_size = 5000 is larger than the" in err, err  # the data's size


def test_an_image_size_too_large_for_memory_is_refused_before_resizing(monkeypatch):
    from mentor.config import DataConfig
    from mentor.data import memory, splits

    monkeypatch.setattr(memory, "available_memory", lambda: 2**30)
    with pytest.raises(MentorError, match="more than half of the 1.0 GiB"):
        splits.load_splits(DataConfig(train="embedded:digits", image_size=2048), 0)
