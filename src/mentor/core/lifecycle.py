"""The start and the end of every run: the run directory, the random seed, the data and the
models checked before any training step (`start_run`, `preflight`), and the report and
metrics written last (`finish_run`)."""

from __future__ import annotations

import dataclasses
import sys
import time

import keras
import numpy as np

from mentor import augment
from mentor.config import AugmentConfig, dumps, quietly, to_dict, unread_settings
from mentor.data.files import BadImages, scored_mask
from mentor.data.imageset import ImageSet
from mentor.data.splits import load_splits
from mentor.errors import MentorError, UsageError
from mentor.inference import predict
from mentor.models import build
from mentor.overlap import warn_test_in_train
from mentor.report import plot_history, write_report
from mentor.run_folders import RunDir, read_mark
from mentor.runtime import writes


def start_run(config, run_dir: RunDir, name: str):
    """What every recipe does first: the random seed, the resolved config in the run folder,
    and the data. Returns (train, val, test)."""
    keras.utils.set_random_seed(config.seed)
    run_dir.write_config(to_dict(config), name)
    train, val, test = load_splits(config.data, config.seed)
    print(f"data: {len(train)} train, {len(val) if val else 0} val, {len(test)} test images "
          f"of {train.image_shape}, {train.num_classes} classes", flush=True)
    run_dir.test_in_train = _test_in_train(config.data, train, val, test)
    return train, val, test


def _test_in_train(data_config, train, val, test) -> int:
    """Test images the run trains on; only a named test source can hold any (a split one
    is other rows of the same set)."""
    if not data_config.test:
        return 0
    return warn_test_in_train(train, val, test, data_config.test, data_config.train)


def build_for(model_config, data: ImageSet, image_size: int = 0, *,
              key: str = "model") -> keras.Model:
    """The configured model, sized for `data`'s classes, image size (or `image_size`, e.g.
    a crop's) and channels. A builder that cannot make it (an option out of its range)
    is reported as the config key `key` at fault."""
    size = image_size or data.image_shape[0]
    try:
        return build(model_config, num_classes=data.num_classes, image_size=size,
                     channels=data.image_shape[2])
    except MentorError:
        raise
    except Exception as error:  # the builders' own checks and Keras's: ValueError, TypeError…
        raise UsageError(
            f"[{key}] {model_config.name} with options {model_config.options} cannot be "
            f"built for {size}×{size}×{data.image_shape[2]} images: {error}. Change "
            f"{key}.options or {key}.name, or bring the images to a size it takes with "
            f"data.image_size (e.g. data.image_size = 32).") from None


def preflight(config, train: ImageSet, image_size: int = 0):
    """Build every model this run will train (the model, its baselines' twin, a teacher
    trained here at teacher.image_size) and every augmentation before the first training
    step, so that a bad value fails in the first seconds, not after a teacher has trained.
    The global seed is set again afterwards: what trains next starts from the same random
    state as if nothing had been built."""
    import contextlib
    import io


    # Checking a key is not using it (config.record_reads), and what building says ("its
    # head is replaced") is said again when the model is built for real.
    with quietly(), contextlib.redirect_stdout(io.StringIO()):
        _preflight(config, train, image_size)
    keras.utils.set_random_seed(config.seed)


def _preflight(config, train, image_size):

    models = [("model", config.model, image_size)]
    teacher = getattr(config, "teacher", None)
    if teacher is not None and not teacher.path:  # trained here at its own side
        models.append(("teacher.model", teacher.model,
                       getattr(teacher, "image_size", 0) or image_size))
    for key, spec, size in models:
        model = build_for(spec, train, size, key=key)
        side = size or train.image_shape[0]
        if key == "teacher.model" and tuple(model.input_shape[1:3]) not in (
                (side, side), (None, None)):  # it must take its training images
            raise UsageError(
                f"[{key}] {spec.name} built for {side}×{side} images takes "
                f"{model.input_shape[1]}×{model.input_shape[2]} ones; give {key} a model "
                "that takes the size it is built for.")
    for key, section in _augment_sections(config):
        augment.from_config(section, 0)
    for key, cfg in [("train", config.train)] + (
            [("teacher.train", teacher.train)] if teacher is not None and not teacher.path
            else []):
        if cfg.batch_size > len(train):
            raise MentorError(
                f"{key}.batch_size = {cfg.batch_size} is larger than the {len(train)} "
                f"training images: each batch would repeat images. Lower {key}.batch_size "
                f"to at most {len(train)}, or add data.")


def _augment_sections(config, prefix=""):

    for f in dataclasses.fields(config):
        value = vars(config)[f.name]
        if isinstance(value, AugmentConfig):
            yield prefix + f.name, value
        elif dataclasses.is_dataclass(value):
            yield from _augment_sections(value, f"{prefix}{f.name}.")


def check_model_matches(model: keras.Model, data: ImageSet):
    """The model's class count and input shape must fit the data."""
    classes = model.output_shape[-1]
    if classes < data.num_classes or int(data.y.max()) >= classes:
        raise MentorError(
            f"the model predicts {classes} classes but {data.name} has {data.num_classes} "
            f"(labels up to {int(data.y.max())}); use a model trained on the same classes."
        )
    want = tuple(model.input_shape[1:])
    if None not in want and want != data.image_shape:
        raise MentorError(
            f"the model takes images of shape {want} but {data.name} has {data.image_shape}; "
            "prepare the data to the model's image_size and channels."
        )


def accuracy(model: keras.Model, data: ImageSet, batch_size: int = 256) -> float:
    """Top-1 accuracy over the images of `data` that could be read: a file-backed image
    that fails to decode counts neither as a hit nor in the count (files.scored_rows)."""
    logits = predict(model, data.x, batch_size)
    scored = scored_mask(data.x, data.name)
    return float(np.mean((np.argmax(logits, axis=-1) == data.y)[scored]))


def history_figures(run_dir, stages) -> list[tuple[str, str]]:
    """One training-curve figure per stage that trained in this run: (caption, file).
    `stages` holds (caption, stage) or (caption, stage, plot options), the options going
    to `report.plot_history` (`objective`, `labels`)."""
    if not writes():  # the report they go into is process 0's (finish_run)
        return []
    figures = []
    for caption, stage, *options in stages:
        if stage is None or stage.history is None or not stage.history.is_file():
            continue
        png = run_dir.file(stage.history.name.replace("history.csv", "curves.png"))
        title = "training" if stage.name == "model" else stage.name
        figures.append((caption, plot_history(stage.history, png, title,
                                              **(options[0] if options else {})).name))
    return figures


def finish_run(run_dir, config, title: str, metrics: dict, figures, notes=(), *,
               verdict=None, glossary=None) -> dict:
    """The end of every run: the total time into `metrics`, report.html (the per-cell
    corruption accuracies stay in metrics.json only) led by `verdict(metrics)` and
    explaining the metric names with `glossary`, then metrics.json, written last so it
    exists only for completed runs."""
    skipped = BadImages.all_skipped()
    if skipped:  # files of image folders that did not decode (the log named them)
        metrics["skipped_images"] = len(skipped)
        metrics["skipped_files"] = [f for f, _ in skipped[:10]]
    warnings = []
    if BadImages.unscored:  # test or validation files left out of the accuracies
        metrics["unscored_images"] = len(BadImages.unscored)
        metrics["unscored_files"] = list(BadImages.unscored)[:10]
        warnings.append(f"{len(BadImages.unscored)} test or validation images could not be "
                        "read and are left out of the accuracies (unscored_files).")
    overlap = getattr(run_dir, "test_in_train", 0)
    if overlap:
        metrics["warning_test_in_train"] = overlap
        warnings.append(f"{overlap} test images are also training images (data.test = "
                        f"{config.data.test}, data.train = {config.data.train}): the test "
                        "accuracy measures memorisation, not generalisation.")
    unread = unread_settings(config)
    if unread:  # set, yet read by nothing this run did
        metrics["unread_settings"] = ", ".join(unread)
        print(f"mentor: warning: this run never read {', '.join(unread)}: set, but with this "
              "config they change nothing (e.g. train.momentum under AdamW)", file=sys.stderr,
              flush=True)
        warnings.append(f"Set but never read by this run (they changed nothing): "
                        f"{', '.join(unread)}.")
    changed = read_mark(run_dir.path).get("data_changed")
    if changed:  # resumed with --resume-anyway (write_metrics records the key)
        warnings.append(f"{', '.join(changed)} changed while this run was interrupted, and "
                        "it resumed anyway: its model trained on both versions of the data.")
    metrics["seconds"] = round(time.time() - run_dir.started, 1)
    shown = {k: v for k, v in metrics.items() if "/" not in k}
    write_report(run_dir.file("report.html"), title, shown, figures, dumps(to_dict(config)),
                 notes=notes, warnings=warnings, verdict=verdict(metrics) if verdict else "",
                 terms=glossary)
    run_dir.write_metrics(metrics)
    return metrics
