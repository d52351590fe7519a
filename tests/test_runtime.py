"""Devices and precision: data parallel on two virtual JAX devices, mixed precision."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from mentor import recipes
from mentor.errors import MentorError
from mentor.runtime import plan_devices, runtime

HERE = pathlib.Path(__file__).parent
TWO_DEVICES = {**os.environ, "KERAS_BACKEND": "jax", "OMP_NUM_THREADS": "1",
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def test_each_recipe_on_two_devices_matches_one_device_with_the_same_global_batch():
    pytest.importorskip("jax")
    done = subprocess.run([sys.executable, str(HERE / "two_devices.py")], env=TWO_DEVICES,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    resume = results.pop("resume")  # AdaMatch's checkpoint from two devices, read on one
    assert resume["epoch"] == 1 and resume["devices"] == 1 and resume["max_diff"] == 0.0
    assert set(results) == set(recipes.NAMES)
    for recipe, r in results.items():
        assert r["devices"] == 2, recipe
        assert r["variable_devices"] == 2, recipe  # each variable on both devices
        assert np.isfinite(r["loss_1"]) and r["loss_1"] > 0, recipe
        np.testing.assert_allclose(r["loss_2"], r["loss_1"], rtol=1e-5, err_msg=recipe)
        assert r["moved"] > 1e-4, (recipe, "the step changed nothing: a vacuous comparison")
        assert r["max_weight_diff"] < 1e-5, (recipe, r)


def test_a_run_on_two_devices_records_them_and_completes(tmp_path):
    """The whole command: data sharded by Keras, validation and the final accuracy (a last
    batch of 359 test images, odd) on two devices."""
    pytest.importorskip("jax")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mentor", "train", "demo", "--devices", "2", "--set",
         "data.train=embedded:digits", "--set", "train.epochs=1", "--set",
         "train.steps_per_epoch=3", "--set", "train.warmup_steps=1", "--out", str(out)],
        env=TWO_DEVICES, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["devices"] == 2 and metrics["backend"] == "jax"
    assert metrics["precision"] == "float32" and 0 <= metrics["test_acc"] <= 1


@pytest.mark.neutral
def test_device_requests_that_cannot_be_met_are_refused():
    with pytest.raises(MentorError, match="at most|JAX backend"):
        plan_devices(64, (64,))
    with pytest.raises(MentorError, match="≥ 0"):
        plan_devices(-1, (64,))
    assert plan_devices(1, (7,)) == []  # one device: the backend's default, any batch
    with pytest.raises(MentorError, match="runtime.precision"):
        with runtime(precision="float8"):
            pass


def test_an_uneven_global_batch_is_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: ["cpu:0", "cpu:1"])
    with pytest.raises(MentorError, match="train.batch_size = 63 is the global batch"):
        plan_devices(2, (64, 63))
    assert plan_devices(0, (64,)) == ["cpu:0", "cpu:1"]


@pytest.mark.neutral
# float16 is a GPU policy run on torch; bfloat16, the accelerators' (TPU, A100/H100), on both
@pytest.mark.parametrize("precision", ["mixed_bfloat16", pytest.param(
    "mixed_float16", marks=pytest.mark.torch_once)])
def test_a_step_in_mixed_precision_has_a_finite_float32_loss(precision):
    from mentor import augment
    from mentor.models import build_model
    from mentor.recipes.adamatch import AdaMatchLossConfig, AdaMatchTrainer

    with runtime(precision=precision):
        classifier = build_model("small_cnn", num_classes=4, image_size=8, channels=1, width=4)
        # No RandAugment ops: the augmenters' dtype is the point here, and their ops are
        # compiled and tested elsewhere (tests/test_augment.py)
        trainer = AdaMatchTrainer(classifier, weak=augment.WeakAugment(flip=False, seed=0),
                                  strong=augment.StrongAugment(flip=False, num_ops=0, seed=1),
                                  loss=AdaMatchLossConfig(target_window=4, l2=1e-3),
                                  num_classes=4, total_steps=10, ema=0.9)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        conv = [l for l in classifier.layers if isinstance(l, keras.layers.Conv2D)][0]
        assert conv.compute_dtype == precision.removeprefix("mixed_")
        assert conv.kernel.dtype == "float32"  # variables stay float32
        assert trainer.weak.compute_dtype == "float32"  # pixels are not rounded
        rng = np.random.default_rng(0)
        x = {"source": rng.integers(0, 256, (4, 8, 8, 1)).astype("uint8"),
             "target": rng.integers(0, 256, (12, 8, 8, 1)).astype("uint8")}
        y = np.arange(4) % 4
        trainer(x, training=True)
        loss = trainer.compute_loss(x, y, None, training=False)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        logs = trainer.train_on_batch(x, y, return_dict=True)
        assert np.isfinite(logs["loss"])
        z = classifier(x["source"])
        assert keras.backend.standardize_dtype(z.dtype) == "float32"  # float32 logits
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards


def test_precision_flag_reaches_the_run(tmp_path, capsys):
    from mentor.cli import main

    out = tmp_path / "run"
    assert main(["train", "demo", "--precision", "mixed_bfloat16", "--set",
                 "data.train=embedded:digits", "--set", "train.epochs=1", "--set",
                 "train.steps_per_epoch=2", "--set", "train.warmup_steps=1",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_bfloat16" and metrics["devices"] == 1
    # Resuming elsewhere with other devices or precision is the same run: allowed.
    assert "[runtime]" in (out / "config.toml").read_text()


def test_resuming_ignores_the_runtime_section_but_not_the_rest(tmp_path):
    from mentor.config import to_dict
    from mentor.recipes import load_config
    from mentor.run_folders import NotOurs, RunDir

    config, _ = load_config("demo", [])
    values = to_dict(config)
    run = RunDir(tmp_path)
    run.write_config(values, "demo")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-0001.npz").write_bytes(b"")  # something to resume
    values["runtime"] = {"devices": 8, "precision": "mixed_bfloat16"}  # another machine
    again = RunDir(tmp_path)
    again.write_config(values, "demo")
    assert again.resumed
    values["train"]["learning_rate"] *= 2  # another run
    with pytest.raises(NotOurs, match="another config"):
        RunDir(tmp_path).write_config(values, "demo")
