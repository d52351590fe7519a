"""The supervised recipe end to end, and its trainer on each backend."""

import json
import math

import keras
import numpy as np
import pytest

from mentor.config import to_dict
from mentor.core.lifecycle import accuracy
from mentor.core.trainer import ClassifierTrainer
from mentor.data.splits import load_splits
from mentor.models import build_model, load_model
from mentor.recipes import from_dict, supervised

# Recipe tests run on every backend CI has: torch, then JAX (-m neutral).
pytestmark = pytest.mark.neutral

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def digits_config(**train):
    return from_dict({
        "recipe": "supervised", "seed": 1,
        "data": {"train": "embedded:digits", "test_fraction": 0.2, "val_fraction": 0.1},
        "model": {"name": "small_cnn", "options": {"width": 8}},
        "augment": {"kind": "weak", "flip": False},
        "train": {"batch_size": 64, "epochs": 4, "learning_rate": 0.01, "warmup_steps": 5,
                  **train},
    })


@pytest.mark.torch_once
def test_supervised_learns_on_real_digits_and_writes_the_run_directory(tmp_path):
    config = digits_config(ema=0.9)
    metrics = supervised.RECIPE.run(config, tmp_path / "run", name="digits")
    run = tmp_path / "run"

    history = np.genfromtxt(run / "history.csv", delimiter=",", names=True)
    assert len(history) == 4
    assert history["loss"][-1] < 0.5 * history["loss"][0]  # it learns
    assert metrics["test_acc"] > 0.6  # chance is 0.1 (≈ 0.9 with more epochs)

    written = json.loads((run / "metrics.json").read_text())
    assert written == metrics
    for key in ("recipe", "backend", "steps", "seconds", "test_acc"):
        assert key in written
    assert written["recipe"] == "supervised" and written["steps"] == 4 * math.ceil(1294 / 64)
    assert 0.0 <= written["test_acc"] <= 1.0

    again = from_dict(tomllib.loads((run / "config.toml").read_text()))
    assert to_dict(again) == to_dict(config)
    for name in ("report.html", "curves.png", "augment.png", "model.keras"):
        assert (run / name).stat().st_size > 0, name
    assert list((run / "checkpoints").glob("epoch-*.npz"))
    assert not list(run.rglob("*.partial*"))

    # the saved model is the evaluated one (EMA weights), and it reloads to the same score
    _, _, test = load_splits(config.data, config.seed)
    assert accuracy(load_model(run / "model.keras"), test) == pytest.approx(metrics["test_acc"])


def tiny_classifier():
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])


def test_trainer_fit_with_ema_runs_twice_and_updates_the_average():
    """Keras's optimizer EMA breaks on JAX on a second fit; ours must not."""
    keras.utils.set_random_seed(0)
    classifier = tiny_classifier()
    trainer = ClassifierTrainer(classifier, ema=0.99)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    x = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 1)).astype("uint8")
    y = np.arange(24) % 3
    start = [keras.ops.convert_to_numpy(w).copy() for w in classifier.trainable_weights]
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert float(keras.ops.convert_to_numpy(trainer.ema.count)) == 6  # one update a step
    kernel = keras.ops.convert_to_numpy(classifier.trainable_weights[0])
    average = keras.ops.convert_to_numpy(trainer.ema.averages[0])
    assert not np.allclose(kernel, start[0])  # the weights moved
    assert not np.allclose(average, start[0]) and not np.allclose(average, kernel)


def test_one_fit_step_of_a_zoo_model_with_augmentation():
    from mentor.augment import StrongAugment

    classifier = build_model("wrn", num_classes=10, image_size=16, channels=3, depth=10, width=1)
    trainer = ClassifierTrainer(classifier, augmenter=StrongAugment(seed=0))
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype("uint8")
    before = keras.ops.convert_to_numpy(classifier.trainable_weights[0]).copy()
    logs = trainer.fit(x, np.arange(8), batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    assert not np.allclose(keras.ops.convert_to_numpy(classifier.trainable_weights[0]), before)


@pytest.mark.torch_once
def test_same_seed_gives_the_same_metrics(tmp_path):
    config = digits_config(epochs=1)
    a = supervised.RECIPE.run(config, tmp_path / "a")
    b = supervised.RECIPE.run(config, tmp_path / "b")
    assert a["test_acc"] == b["test_acc"] and a["val_acc"] == b["val_acc"]


@pytest.mark.torch_once
def test_swa_in_a_run_recalibrates_batchnorm_on_the_averaged_weights(tmp_path, monkeypatch):
    """SWA's unit test is in test_training; here the run must re-estimate batch norm after
    loading the average, on the training images (the averaged weights never produced the
    statistics the model holds)."""
    from mentor.core import trainer as trainer_module

    calls = []
    real = trainer_module.recalibrate_batchnorm
    monkeypatch.setattr(trainer_module, "recalibrate_batchnorm",
                        lambda model, x, batch_size: calls.append((model.name, len(x)))
                        or real(model, x, batch_size))
    metrics = supervised.RECIPE.run(digits_config(swa_start=0.5), tmp_path / "swa")
    assert calls == [(calls[0][0], metrics["train_images"])]


@pytest.mark.torch_once
def test_usps_to_mnist_example_runs(shared_data, tmp_path, monkeypatch):
    """The source-only baseline TOML of the foundation issue (one epoch here)."""
    import pathlib

    from mentor.cli import main

    root = pathlib.Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    # The example downloads USPS and MNIST; here it reads the dev machines' copies of them.
    code = main(["train", "examples/usps_to_mnist.toml", "--set", "train.epochs=1",
                 "--set", f"data.train={shared_data / 'usps.npz'}?split=0",
                 "--set", f"data.test={shared_data / 'mnist_test.npz'}",
                 "--out", str(tmp_path / "usps")])
    assert code == 0
    metrics = json.loads((tmp_path / "usps" / "metrics.json").read_text())
    assert metrics["test_images"] == 10000 and metrics["train_images"] + metrics["val_images"] == 7291
    assert metrics["test_acc"] > 0.3  # USPS → MNIST transfers poorly at first; chance is 0.1


class RecordingTrainer(ClassifierTrainer):
    """Records the labels of every training batch it consumes (torch runs eagerly)."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if training:
            self.seen.append(tuple(keras.ops.convert_to_numpy(y).tolist()))
        return super().compute_loss(x, y, y_pred, sample_weight, training)


@pytest.mark.skipif(keras.backend.backend() != "torch",
                    reason="records batches in Python from inside compute_loss, which JAX and "
                           "TensorFlow trace once; the loader is backend-independent")
def test_in_memory_loader_order_is_exact_whatever_the_worker_count():
    """fit consumes exactly batches[0], batches[1], … across epochs, with workers 1 or 2:
    in-memory rows are gathered by one thread, since with threads Keras 3.15's enqueuer
    serves its first-batch peek from the shared queue, so batch 0 would arrive last."""
    from mentor.data import ImageSet
    from mentor.data.pipeline import Batches

    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 256, (96, 8, 8, 1)).astype("uint8"), np.arange(96) % 3,
                    class_names=["a", "b", "c"])
    planned = [tuple(Batches(data, 16, steps=12, seed=5)[i][1].tolist()) for i in range(12)]
    seen = {}
    for workers in (1, 2):
        trainer = RecordingTrainer(tiny_classifier())
        trainer.seen = []
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
        trainer.fit(Batches(data, 16, steps=12, seed=5, workers=workers), epochs=2,
                    steps_per_epoch=6, shuffle=False, verbose=0)
        seen[workers] = trainer.seen
    assert seen[1] == planned and seen[2] == planned
