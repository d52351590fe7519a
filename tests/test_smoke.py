"""Every recipe, end to end, in a few steps: one short `run` each, then its saved model
reloaded from the .keras file must reproduce the accuracy the run recorded.

Cheap enough for every backend: CI runs these on TensorFlow as its smoke run
(`KERAS_BACKEND=tensorflow python -m pytest -m smoke`); they run on torch and JAX with the
rest of the suite.
"""

import html
import json
import re

import keras
import numpy as np
import pytest

from mentor import recipes
from mentor.core.lifecycle import accuracy
from mentor.data.splits import load_splits
from mentor.evaluate import evaluate_run
from mentor.models import load_model
from mentor.recipes import from_dict

pytestmark = [pytest.mark.smoke, pytest.mark.neutral]

DATA = {"train": "embedded:digits", "test_fraction": 0.2, "val_fraction": 0.1}
TINY = {"name": "small_cnn", "options": {"width": 4}}
STEPS = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "warmup_steps": 1}
TEACHER = {"model": TINY, "augment": {"flip": False}, "train": STEPS}

# The numbers each recipe's verdict sentence must quote, as metrics.json has them.
VERDICT_KEYS = {"supervised": ["test_acc"],
                "consistency": ["teacher_corrupt_acc", "student_corrupt_acc",
                                "teacher_clean_acc", "student_clean_acc"],
                "distill": ["student_acc", "teacher_acc", "student_labels_only_acc"],
                "adamatch": ["target_acc", "source_only_target_acc"],
                "augmix": ["clean_acc", "corrupt_acc"]}

# Figures each report must show besides the one that carries its recipe's comparison.
KEY_FIGURES = {"supervised": [],
               "consistency": ["difference.png", "robustness.png"],
               "distill": ["views.png"],
               "adamatch": ["accuracy.png", "views.png"],
               "augmix": ["views.png"]}

CASES = {  # recipe → (config, its model's file, metric that file must reproduce)
    "supervised": ({"augment": {"flip": False}}, "model.keras", "test_acc"),
    "consistency": ({"teacher": TEACHER, "robustness": {"corruptions": ["gaussian_noise"],
                                                        "severities": [1],
                                                        "max_images": 32}},
                    "student.keras", "student_clean_acc"),
    "distill": ({"teacher": TEACHER, "augment": {"flip": False},
                 "baseline": {"enabled": True}}, "student.keras", "student_acc"),
    "adamatch": ({"mode": "ssl", "labels_per_class": 5, "weak": {"flip": False},
                  "strong": {"flip": False}, "baseline": {"enabled": True}}, "model.keras",
                 "source_acc"),
    "augmix": ({"augment": {"flip": False}, "robustness": {"corruptions": ["gaussian_noise"],
                                                          "severities": [1],
                                                          "max_images": 32}},
               "model.keras", "clean_acc"),
}


@pytest.mark.parametrize("recipe", recipes.NAMES)  # every recipe the registry holds
def test_one_short_run_and_a_keras_round_trip(recipe, tmp_path):
    assert recipe in CASES, f"recipe {recipe!r} has no smoke case: add one to CASES"
    extra, saved, metric = CASES[recipe]
    assert saved == recipes.get(recipe).delivers
    config = from_dict({"recipe": recipe, "seed": 0, "data": DATA, "model": TINY,
                        "train": STEPS, **extra})
    metrics = recipes.get(recipe).run(config, tmp_path / "run")
    assert metrics["backend"] == keras.backend.backend() and metrics["steps"] == 2
    assert (tmp_path / "run" / "metrics.json").is_file()

    model = load_model(tmp_path / "run" / saved)
    train, val, test = load_splits(config.data, config.seed)
    data = val if metric == "source_acc" else test
    assert accuracy(model, data) == pytest.approx(metrics[metric], abs=1e-9)
    plain = keras.saving.load_model(tmp_path / "run" / saved)  # Keras alone
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(data.x[:8])),
                               keras.ops.convert_to_numpy(model(data.x[:8])),
                               rtol=1e-4, atol=1e-4)

    # The report opens with a verdict quoting the numbers metrics.json holds.
    saved_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    page = (tmp_path / "run" / "report.html").read_text()
    said = html.unescape(re.search(r'<p class="verdict">(.*?)</p>', page).group(1))
    for key in VERDICT_KEYS[recipe]:
        assert f"{100 * saved_metrics[key]:.1f} %" in said, (key, said)
    for figure in [recipes.get(recipe).figure, *KEY_FIGURES[recipe]]:
        assert f'src="{figure}"' in page and (tmp_path / "run" / figure).stat().st_size > 0
    if recipe == "adamatch":  # the target's accuracy over training, for AdaMatch and source-only
        for history in ("history.csv", "baseline_history.csv"):
            header = (tmp_path / "run" / history).read_text().splitlines()[0].split(",")
            assert "target_acc" in header, (history, header)

    # `mentor evaluate RUN` scores the finished run on other data through its recipe's path.
    scored = evaluate_run(tmp_path / "run", "embedded:digits")
    assert scored["images"] == 1797 and scored["recipe"] == recipe
    accuracies = [v for k, v in scored.items() if k.endswith("_acc")]
    assert accuracies and all(0.0 <= v <= 1.0 for v in accuracies), scored
