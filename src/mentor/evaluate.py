"""Evaluate a saved model, or a finished run's models, on any data source: accuracy
(`mentor evaluate`), or accuracy under every corruption (`mentor robustness`)."""

from __future__ import annotations

import pathlib
import sys
import time

import keras

from mentor import recipes
from mentor.core.lifecycle import accuracy, check_model_matches
from mentor.corruptions import CORRUPTIONS, check
from mentor.corruptions.tables import tables
from mentor.data.prepare import prepare
from mentor.data.sources import load_source
from mentor.errors import MentorError
from mentor.models import load_model
from mentor.objects import unresolved
from mentor.overlap import record_overlap
from mentor.report import write_report
from mentor.robustness import difference_heatmap, heatmap, say, subset, sweep
from mentor.run_folders import RunDir, default_run_path


def load_model_and_data(model_path, source: str, *, unsafe: bool = False):
    """A saved classifier and a data source prepared to its input shape, checked to fit."""
    model = load_model(model_path, safe_mode=not unsafe)
    _, height, _, channels = model.input_shape
    data = prepare(load_source(source, image_size=height), height or 0, channels or 0)
    check_model_matches(model, data)
    return model, data


def run_config(path):
    """The config of the run in `path`, read for using its saved models: Python objects it
    names (a model or arrays given to mentor.api) are not needed, and not looked up."""
    with unresolved():
        return recipes.load_config(str(pathlib.Path(path) / "config.toml"))[0]


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
    path, config = finished_run(path)
    models = recipes.get(config.recipe).models(path, config)
    trained = next(iter(models.values()))
    if not trained.is_file():
        raise MentorError(f"{trained} is missing although {path} finished; copy the run "
                          "directory again whole, or give a .keras file.")
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
    model, data = load_model_and_data(model_path, source, unsafe=unsafe)
    metrics = {"backend": keras.backend.backend(), "model": str(model_path), "data": source,
               "images": len(data), "test_acc": accuracy(model, data, batch_size)}
    record_overlap(metrics, run, data.x)
    return metrics


def evaluate_run(path, source: str, *, batch_size: int = 256, unsafe: bool = False) -> dict:
    """Every model of a finished run on a source: the recipe's own evaluation where it has
    one (distillation: teacher, student and labels-only student on its test view);
    otherwise `<name>_acc` for each of run_models' models (`test_acc` the trained one's)."""
    path, config, models = run_models(path)
    recipe = recipes.get(config.recipe)
    if recipe.evaluate is not None:
        return recipe.evaluate(path, config, source, batch_size=batch_size, unsafe=unsafe)
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


def evaluate_file(model_path, source: str, *, cifar10c=None, out=None, corruptions=(),
                  severities=(1, 2, 3, 4, 5), max_images: int = 0, seed: int = 0,
                  unsafe: bool = False):
    """`mentor robustness`: sweep a saved model, or a finished run's models (the trained one,
    and a consistency or distill run's teacher beside it), and write a run directory.
    Returns (metrics, run directory path): the trained model's numbers under the usual keys,
    another model's summary under `<name>_clean_acc`, `<name>_corrupt_acc`, ….
    """
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
    write_report(run.file("report.html"), f"robustness of {model_path}", summary, figures,
                 verdict=say(metrics))
    run.write_metrics(metrics)
    return metrics, run.path
