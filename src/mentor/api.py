"""Every recipe from Python, with your own objects.

    import numpy as np, keras, mentor.api
    result = mentor.api.run("supervised", "runs/mine", model=my_model, train=(x, y),
                            test=(x_test, y_test), set=["train.epochs=3"])
    result.metrics["test_acc"], result.model      # metrics.json and the trained classifier

`config` is a recipe name (its defaults), a preset name, a TOML path, a dict of config
values or a config object. `model` and `teacher` take a `keras.Model` (raw 0..255 pixels in,
class scores out; see model.input_scale and teacher.input_scale for other pixels); each data
role takes `(x, y)` arrays, an `ImageSet` or a source string. The run directory is the one
the command line writes. `model` is trained in place. `set` takes "key=value" strings, as
`--set` does (one string is one override).

`callbacks` (keras.callbacks.Callback objects) join the fit of every training stage of the
run, after mentor's own: a teacher trained in the run, the model (the student) and a
baseline, in that order. Every stage rather than the main one: a monitoring callback then
sees all the training the run does, as its TensorBoard logs do, and a callback that changes
training (the learning rate, when to stop) changes the baseline too, which stays "the same
steps and optimizer" that the recipe compares against. Keras's callbacks start afresh at
each fit (`on_train_begin`); `self.model.stage.name` says which stage is training. A
callback that sets `self.model.stop_training = True` ends that stage: at an epoch's end,
after that epoch; after a batch, Keras ends the epoch there. Either way the epoch is
logged and checkpointed as usual, and the run goes on to its next stage, or evaluates and
saves the model as it is then, and completes (metrics.json's `steps` counts the steps
taken).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import keras
import numpy as np

from mentor import recipes
from mentor.config import apply_overrides, read_toml, set_dotted, to_dict
from mentor.core.fit import user_callbacks
from mentor.data.imageset import ImageSet
from mentor.errors import MentorError, UsageError
from mentor.models import load_model
from mentor.objects import DATA_PREFIX, MODEL_PREFIX, register
from mentor.run_folders import RunDir, default_run_path, input_paths


@dataclasses.dataclass
class Result:
    metrics: dict
    model: object  # the trained classifier (the student, for consistency and distill)
    run_dir: pathlib.Path


def as_source(data, role: str) -> str:
    """A data role's value as a source string: arrays and ImageSets are registered."""
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    if isinstance(data, str):
        return data
    if isinstance(data, ImageSet):
        return register(data, DATA_PREFIX)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        try:
            x, y = (np.asarray(a) for a in data)
        except ValueError:  # a ragged list: numpy cannot make one array of it
            raise MentorError(
                f"{role}: the images (or labels) are not all of one shape, so they make no "
                "N×H×W×C array; resize them to one size first, or save them as an image "
                "folder and use data.image_size.") from None
        return register(ImageSet(x, y, name=f"{role} arrays"), DATA_PREFIX)
    raise MentorError(f"{role} takes (x, y) arrays, an ImageSet or a source string, got "
                      f"{type(data).__name__}.")


def _values(config) -> tuple[dict, str]:
    if isinstance(config, dict):
        return dict(config), config.get("recipe", "config")
    if isinstance(config, tuple(r.config for r in recipes.every())):
        return to_dict(config), config.recipe
    if isinstance(config, os.PathLike):
        config = os.fspath(config)
    if not isinstance(config, str):
        raise UsageError(
            "config takes a recipe name (" + ", ".join(recipes.NAMES) + "), a preset name, a "
            "TOML path, a dict of config values or a config object (mentor.recipes."
            f"supervised.SupervisedConfig(), …), got {_kind(config)}.")
    if config in recipes.NAMES:
        return {"recipe": config}, config
    values, name, _ = read_toml(config)
    return values, name


def _kind(value) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__} (call it for a config object)"
    return f"{type(value).__name__} {value!r}"[:120]


def _overrides(overrides) -> list[str]:
    """`set` as a list of "key=value" strings; one string is one override, as --set takes."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, (list, tuple)):
        for item in overrides:
            if not isinstance(item, str):
                raise UsageError(
                    f"set takes \"key=value\" strings, e.g. set=[\"train.epochs=3\"]; one of "
                    f"them is {_kind(item)}.")
        return list(overrides)
    raise UsageError(f"set takes a list of \"key=value\" strings, e.g. "
                     f"set=[\"train.epochs=3\"], got {_kind(overrides)}.")


def run(config, out=None, *, model=None, teacher=None, train=None, test=None, target=None,
        set=(), name: str | None = None, callbacks=(), resume_anyway: bool = False) -> Result:
    """Run a recipe on the given objects; returns its metrics and trained model.
    `resume_anyway`: resume an unfinished run in `out` even though a data file or folder it
    trains on changed since it started (`--resume-anyway`)."""
    values, default_name = _values(config)
    overrides = _overrides(set)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise UsageError(f"out takes a folder path (str or pathlib.Path), got {_kind(out)}.")
    if name is not None and not isinstance(name, str):
        raise UsageError(f"name takes a string, got {_kind(name)}.")
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise UsageError(f"callbacks takes a list of keras.callbacks.Callback objects, got "
                         f"{_kind(callbacks)}.")
    if model is not None:
        if not isinstance(model, keras.Model):
            raise MentorError(f"model takes a keras.Model, got {type(model).__name__}.")
        set_dotted(values, "model.name", register(model, MODEL_PREFIX))
    if teacher is not None:
        if not isinstance(teacher, keras.Model):
            raise MentorError(f"teacher takes a keras.Model, got {type(teacher).__name__}.")
        set_dotted(values, "teacher.path", register(teacher, MODEL_PREFIX))
    for key, data in (("data.train", train), ("data.test", test), ("target.train", target)):
        if data is not None:
            set_dotted(values, key, as_source(data, key))
    callbacks = list(callbacks or ())
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise MentorError(f"callbacks takes keras.callbacks.Callback objects, got "
                              f"{type(callback).__name__}.")
    config = recipes.from_dict(apply_overrides(values, overrides))
    name = name or default_name
    if out is not None and not str(out).strip():
        raise UsageError("out is an empty path; give a folder, or None for runs/NAME-TIMESTAMP.")
    inputs = input_paths(to_dict(config))
    run_dir = RunDir(out or default_run_path(name, inputs=inputs),
                     resume_anyway=bool(resume_anyway), inputs=inputs)
    recipe = recipes.get(config.recipe)
    with user_callbacks(callbacks):
        metrics = recipe.run(config, run_dir, name=name)
    return Result(metrics, load_model(run_dir.file(recipe.delivers)), run_dir.path)
