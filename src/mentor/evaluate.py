"""Evaluate a saved model, or a finished run's models, on any data source: accuracy
(`mentor evaluate`), or accuracy under every corruption (`mentor robustness`)."""

from __future__ import annotations

import pathlib
import sys
import time

import keras

from mentor.core.run import accuracy, check_model_matches
from mentor.corruptions import CORRUPTIONS, check
from mentor.corruptions.tables import tables
from mentor.data.files import scored_mask
from mentor.data.prepare import prepare
from mentor.errors import MentorError
from mentor.robustness import difference_heatmap, heatmap, subset, sweep


def load_model_and_data(model_path, source: str, *, unsafe: bool = False):
    """A saved classifier and a data source prepared to its input shape, checked to fit."""
    from mentor.data.sources import load_source
    from mentor.models import load_model

    model = load_model(model_path, safe_mode=not unsafe)
    _, height, _, channels = model.input_shape
    data = prepare(load_source(source, image_size=height), height or 0, channels or 0)
    check_model_matches(model, data)
    return model, data


# The model a finished run trained, by recipe; a run's other models sit beside it.
TRAINED = {"supervised": "model.keras", "adamatch": "model.keras",
           "consistency": "student.keras", "distill": "student.keras"}


def run_config(path):
    """The config of the run in `path`, read for using its saved models: Python objects it
    names (a model or arrays given to mentor.api) are not needed, and not looked up."""
    from mentor.config import load_config
    from mentor.objects import unresolved

    with unresolved():
        return load_config(str(pathlib.Path(path) / "config.toml"))[0]


def finished_run(path) -> tuple[pathlib.Path, object]:
    """A completed run directory and its config, or a MentorError saying why not."""
    path = pathlib.Path(path)
    if not (path / "config.toml").is_file():
        raise MentorError(f"{path} has no config.toml: give a mentor run directory or a "
                          ".keras file.")
    if not (path / "metrics.json").is_file():
        raise MentorError(f"{path} holds no finished run (no metrics.json yet): `mentor status "
                          f"{path}` says where it stands; resume it with the same `mentor "
                          "train` command and --out, or give one of its .keras files.")
    return path, run_config(path)


def run_models(path) -> tuple[pathlib.Path, object, dict]:
    """A finished run's models, the trained one first: name → .keras path. A consistency
    or distill run's teacher comes along where the run saved it (or loaded it from a file that is
    still there), so its student can be judged against it."""
    from mentor.teachers import teacher_file

    path, config = finished_run(path)
    trained = path / TRAINED[config.recipe]
    if not trained.is_file():
        raise MentorError(f"{trained} is missing although {path} finished; copy the run "
                          "directory again whole, or give a .keras file.")
    if config.recipe not in ("consistency", "distill"):
        return path, config, {"model": trained}
    models = {"student": trained}
    teacher = path / "teacher.keras"
    if not teacher.is_file() and config.teacher.path:
        try:
            teacher = teacher_file(config.teacher.path)
        except MentorError:  # moved since: the student alone is still worth evaluating
            pass
    if teacher.is_file():
        models["teacher"] = teacher
    return path, config, models


def model_and_run(path) -> tuple[pathlib.Path, pathlib.Path | None]:
    """(the .keras file to use, the run it belongs to or None) for a .keras file or a
    finished run directory (its trained model)."""
    path = pathlib.Path(path)
    if path.is_dir():
        run, _, models = run_models(path)
        return next(iter(models.values())), run
    parent = path.parent
    run = parent if (parent / "config.toml").is_file() else None
    return path, run


def evaluate_model(model_path: str, source: str, *, batch_size: int = 256,
                   unsafe: bool = False, run=None) -> dict:
    """Accuracy of a `.keras` classifier on a source, prepared to the model's input shape;
    with `run`, the images the run trained on are counted among the test images."""
    from mentor.overlap import record_overlap

    model, data = load_model_and_data(model_path, source, unsafe=unsafe)
    metrics = {"backend": keras.backend.backend(), "model": str(model_path), "data": source,
               "images": len(data), "test_acc": accuracy(model, data, batch_size)}
    record_overlap(metrics, run, data.x)
    return metrics


def evaluate_run(path, source: str, *, batch_size: int = 256, unsafe: bool = False) -> dict:
    """Every model of a finished run on a source: a distill run's teacher, student and
    labels-only student (evaluate_distill_run); otherwise `<name>_acc` for each of
    run_models' models (`test_acc` the trained one's)."""
    from mentor.overlap import record_overlap

    path, config, models = run_models(path)
    if config.recipe == "distill":
        return evaluate_distill_run(path, source, batch_size=batch_size, unsafe=unsafe)
    metrics = {"recipe": config.recipe, "backend": keras.backend.backend(), "run": str(path),
               "data": source}
    first = None
    for name, file in models.items():
        model, data = load_model_and_data(file, source, unsafe=unsafe)
        acc = accuracy(model, data, batch_size)
        if first is None:
            first = data
            metrics.update(images=len(data), test_acc=acc)
        metrics[f"{name}_acc"] = acc
    record_overlap(metrics, path, first.x)
    return metrics


def evaluate_distill_run(path, source: str, *, batch_size: int = 256, unsafe: bool = False) -> dict:
    """A finished distill run's teacher (flip-averaged when the run's was), student and
    labels-only student on another data source, under metrics.json's keys and the run's own
    test view. Why: 2000 test images leave ±0.01 of sampling noise on each accuracy, as much
    as the effects the recipe is judged by; a larger test set tells them apart."""
    from mentor.config import DistillConfig
    from mentor.data.sources import load_source
    from mentor.models import load_model
    from mentor.objects import MODEL_PREFIX
    from mentor.overlap import record_overlap
    from mentor.recipes.distill import (
        compare,
        eval_view,
        flip_averaged,
        gives_probabilities,
        logits,
    )
    from mentor.teachers import teacher_file

    path = pathlib.Path(path)
    if not (path / "config.toml").is_file():
        raise MentorError(f"{path} has no config.toml: give a mentor run directory or a "
                          ".keras file.")
    config = run_config(path)
    if not isinstance(config, DistillConfig):
        models = sorted(p.name for p in path.glob("*.keras")) or ["none yet"]
        raise MentorError(f"{path} is not a distill run; evaluate one of its models instead "
                          f"({', '.join(models)}).")
    if not (path / "student.keras").is_file():
        raise MentorError(f"{path} has no student.keras: the run has not finished its student; "
                          "resume it with `mentor train` on the same --out first.")
    teacher_path = path / "teacher.keras"
    if not teacher_path.is_file() and config.teacher.path:  # the run loaded its teacher
        teacher_path = teacher_file(config.teacher.path)
    if not teacher_path.is_file() and config.teacher.path.startswith(MODEL_PREFIX):
        raise MentorError(f"the teacher of {path} was a keras.Model given from Python, which "
                          "the run does not save: evaluate the student alone (`mentor "
                          f"evaluate {path / 'student.keras'} --data ...`).")
    if not teacher_path.is_file():
        raise MentorError(f"the teacher of {path} is gone: neither {path}/teacher.keras nor "
                          f"its teacher.path {config.teacher.path!r} exists.")
    student = load_model(path / "student.keras", safe_mode=not unsafe)
    size = student.input_shape[1]
    base = config.data.image_size or size
    data = prepare(load_source(source, image_size=base), base, student.input_shape[-1])
    view = eval_view(data, config.augment.eval_crop, size)
    check_model_matches(student, view)
    teacher = load_model(teacher_path, safe_mode=not unsafe)
    check_model_matches(teacher, view)
    if config.teacher.flip_average:
        teacher = flip_averaged(teacher)
    metrics = {"recipe": "distill", "backend": keras.backend.backend(), "run": str(path),
               "data": source, "images": len(view)}
    record_overlap(metrics, path, data.x)
    metrics.update(compare(logits(teacher, view, batch_size, gives_probabilities(teacher, view)),
                           logits(student, view, batch_size), view.y,
                           scored_mask(view.x, view.name)))
    if (path / "baseline.keras").is_file():
        metrics["student_labels_only_acc"] = accuracy(
            load_model(path / "baseline.keras", safe_mode=not unsafe), view, batch_size)
    return metrics


def evaluate_file(model_path, source: str, *, cifar10c=None, out=None, corruptions=(),
                  severities=(1, 2, 3, 4, 5), max_images: int = 0, seed: int = 0,
                  unsafe: bool = False):
    """`mentor robustness`: sweep a saved model, or a finished run's models (the trained one,
    and a consistency or distill run's teacher beside it), and write a run directory.
    Returns (metrics, run directory path): the trained model's numbers under the usual keys,
    another model's summary under `<name>_clean_acc`, `<name>_corrupt_acc`, ….
    """
    from mentor.overlap import record_overlap
    from mentor.report import write_report
    from mentor.runs import RunDir, default_run_path

    start = time.time()
    check(list(corruptions) or CORRUPTIONS, severities)
    if pathlib.Path(model_path).is_dir():
        run_path, _, files = run_models(model_path)
    else:
        file, run_path = model_and_run(model_path)
        files = {"model": file}
    models, data = {}, None
    for name, file in files.items():
        model, prepared = load_model_and_data(file, source, unsafe=unsafe)
        if data is not None and prepared.image_shape != data.image_shape:
            print(f"robustness: {name} takes images of shape {prepared.image_shape}, not "
                  f"{data.image_shape}; left out (it cannot see the same corrupted images)",
                  file=sys.stderr)
            continue
        models[name], data = model, data if data is not None else prepared
    run = RunDir(out or default_run_path("robustness"), kind="robustness")  # inputs sound
    data = subset(data, max_images, seed)
    results = sweep(models, data, corruptions=list(corruptions) or None,
                    severities=tuple(severities), seed=seed, cifar10c_dir=cifar10c)
    main, *others = results
    result = results[main]
    metrics = {"recipe": "robustness", "backend": keras.backend.backend(), "steps": 0,
               "model": str(model_path), "data": source, "images": len(data), **result}
    for name in others:
        metrics.update({f"{name}_{k}": v for k, v in results[name].items() if "/" not in k})
    record_overlap(metrics, run_path, data.x)
    metrics["seconds"] = round(time.time() - start, 1)
    per_c, per_s = tables(result)
    summary = {k: v for k, v in metrics.items() if "/" not in k}
    summary.update({f"mean over severities: {c}": v for c, v in per_c.items()})
    summary.update({f"mean over corruptions: severity {s}": v for s, v in per_s.items()})
    figures = [("Accuracy per corruption and severity",
                heatmap(results, run.file("robustness.png"), images=len(data)).name)]
    for name in others:
        figures.append((f"{main} − {name} in every corruption × severity cell",
                        difference_heatmap(results, run.file(f"difference_{name}.png"),
                                           base=name, other=main).name))
    write_report(run.file("report.html"), f"robustness of {model_path}", summary, figures)
    run.write_metrics(metrics)
    return metrics, run.path
