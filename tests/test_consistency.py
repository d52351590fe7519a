"""The consistency recipe: frozen teacher, aligned views, the loss, and a short real run."""

import json

import keras
import numpy as np
import pytest
from conftest import bn_classifier

from mentor import augment
from mentor.losses import consistency_loss
from mentor.recipes import from_dict
from mentor.recipes.consistency import ConsistencyLossConfig, ConsistencyTrainer

# Recipe tests run on every backend CI has: torch, then JAX (-m neutral).
pytestmark = pytest.mark.neutral


def make_trainer(magnitude=9, clean_view=None, ema=0.0, num_ops=2):
    keras.utils.set_random_seed(0)
    teacher, student = bn_classifier(name="teacher"), bn_classifier(name="student")
    noisy = augment.StrongAugment(num_ops=num_ops, magnitude=magnitude, flip=False,
                                  translate=0.0, seed=1)
    trainer = ConsistencyTrainer(student, teacher=teacher, clean_view=clean_view,
                                 noisy_view=noisy, loss=ConsistencyLossConfig(), ema=ema)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    return trainer


def test_teacher_weights_and_batchnorm_statistics_do_not_move():
    trainer = make_trainer(ema=0.99)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (32, 8, 8, 1)).astype("uint8"), np.arange(32) % 3
    teacher_before = [np.array(w) for w in trainer.teacher.get_weights()]
    student_before = [np.array(w) for w in trainer.classifier.get_weights()]
    trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(teacher_before, trainer.teacher.get_weights()):
        np.testing.assert_array_equal(a, b)  # kernels, biases, BN gamma/beta and statistics
    moved = [not np.allclose(a, b) for a, b in zip(student_before, trainer.classifier.get_weights())]
    assert all(moved)  # every student weight, its BN statistics included, did move
    assert not trainer.teacher.trainable_weights
    assert float(keras.ops.convert_to_numpy(trainer.ema.count)) == 8  # the student's EMA ran


def test_the_two_views_are_the_same_images_in_the_same_order():
    """Image i is a constant 10·i. At magnitude 0 every RandAugment op is the identity on a
    constant image, so the noisy view must equal the clean view image by image; flips and
    shifts with reflect padding keep a constant image constant too."""
    trainer = make_trainer(magnitude=0, clean_view=augment.WeakAugment(seed=3))
    x = (np.arange(16, dtype="uint8")[:, None, None, None] * 10) * np.ones((1, 8, 8, 1), "uint8")
    clean, noisy = (keras.ops.convert_to_numpy(v) for v in trainer.views(x))
    np.testing.assert_allclose(clean.mean(axis=(1, 2, 3)), np.arange(16) * 10, atol=1e-4)
    np.testing.assert_allclose(noisy, clean, atol=1e-3)


def test_training_loss_is_the_consistency_loss_of_the_two_views():
    # No RandAugment layer, no flip or shift: the noisy view is the input, both models see x.
    # (Magnitude 0 is not enough: AutoContrast and Equalize take no magnitude.)
    trainer = make_trainer(num_ops=0)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (8, 8, 8, 1)).astype("uint8"), np.arange(8) % 3
    student_logits = trainer(x, training=True)
    got = keras.ops.convert_to_numpy(trainer.compute_loss(x, y, student_logits, training=True))
    s = keras.ops.convert_to_numpy(trainer.classifier(x, training=True))
    t = keras.ops.convert_to_numpy(trainer.teacher(x, training=False))
    want = np.mean(keras.ops.convert_to_numpy(consistency_loss(y, s, t, temperature=10.0)))
    assert got == pytest.approx(float(want), rel=1e-5)


def test_consistency_config_defaults_follow_the_recipe():
    cfg = from_dict({"recipe": "consistency"})
    assert (cfg.loss.temperature, cfg.loss.ce_weight, cfg.loss.kd_weight) == (10.0, 0.5, 0.5)
    assert (cfg.augment.num_ops, cfg.augment.magnitude) == (2, 9)  # Xie et al. 2020 noise
    assert cfg.robustness.severities == [1, 2, 3, 4, 5]


@pytest.mark.torch_once
def test_short_consistency_run_on_real_digits(tmp_path):
    from mentor.recipes import consistency

    config = from_dict({
        "recipe": "consistency", "seed": 0,
        "data": {"train": "embedded:digits", "image_size": 16, "test_fraction": 0.2},
        "teacher": {"model": {"name": "small_cnn", "options": {"width": 8}},
                    "augment": {"flip": False}, "train": {"epochs": 2, "learning_rate": 0.01}},
        "model": {"name": "small_cnn", "options": {"width": 8}},
        "augment": {"magnitude": 5},
        "train": {"epochs": 2, "learning_rate": 0.01},
        "robustness": {"corruptions": ["gaussian_noise", "fog"], "severities": [1, 5],
                       "max_images": 64},
        "student_from_teacher_init": True,
    })
    metrics = consistency.RECIPE.run(config, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == metrics
    for key in ("recipe", "backend", "steps", "seconds", "teacher_clean_acc",
                "student_clean_acc", "teacher_corrupt_acc", "student_corrupt_acc"):
        assert key in metrics
    assert metrics["teacher_clean_acc"] > 0.3  # chance is 0.1
    assert metrics["teacher_params"] == metrics["student_params"] > 0  # same model, counted
    assert all(0 <= metrics[f"{w}_corrupt_acc/{c}/{s}"] <= 1 for w in ("teacher", "student")
               for c in ("gaussian_noise", "fog") for s in (1, 5))
    for name in ("teacher.keras", "student.keras", "report.html", "robustness.png",
                 "views.png", "per_corruption.png", "teacher_history.csv", "history.csv"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
