"""AdaMatch: the loss and its state by hand, the second pass's batch-norm, weight decay,
target labels that cannot leak, checkpointed state, bad inputs, and a short run."""

import json

import keras
import numpy as np
import pytest
from conftest import as_numpy as np_
from conftest import write_npz

from mentor.compat import batch_norm_statistics_frozen, flatten_layers
from mentor.config import set_dotted
from mentor.core.checkpoints import load_state, save_state
from mentor.errors import MentorError
from mentor.recipes import from_dict
from mentor.recipes.adamatch import AdaMatchLossConfig, AdaMatchTrainer

# Recipe tests run on every backend CI has: torch, then JAX (-m neutral).
pytestmark = pytest.mark.neutral


def classifier(classes=3, momentum=0.5):
    return keras.Sequential([keras.Input((4, 4, 1)),
                             keras.layers.BatchNormalization(momentum=momentum),
                             keras.layers.Flatten(), keras.layers.Dense(classes)])


def make(l2=0.0, total_steps=100, seed=0, ema_decay=0.0, **loss):
    keras.utils.set_random_seed(seed)
    trainer = AdaMatchTrainer(classifier(), weak=None, strong=None,
                              loss=AdaMatchLossConfig(l2=l2, target_window=4, **loss),
                              num_classes=3, total_steps=total_steps, ema=ema_decay)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    return trainer


def data(n=4, ratio=3, seed=0):
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 256, (n, 4, 4, 1)).astype("float32")
    target = rng.integers(0, 128, (n * ratio, 4, 4, 1)).astype("float32")
    return {"source": source, "target": target}, np.arange(n) % 3


def test_the_source_only_pass_keeps_batchnorm_moving_statistics():
    trainer = make()
    bn = trainer.classifier.layers[0]
    x, _ = data()
    trainer(x, training=True)
    # Only pass 1 (source and target, each twice: weak and strong) moved the statistics:
    # momentum 0.5 from 0 → half the mean of the combined batch.
    combined = np.concatenate([x["source"], x["source"], x["target"], x["target"]])
    np.testing.assert_allclose(np_(bn.moving_mean), 0.5 * combined.mean(axis=(0, 1, 2)),
                               rtol=1e-5)
    before = np_(bn.moving_mean).copy(), np_(bn.moving_variance).copy()
    with batch_norm_statistics_frozen(trainer.classifier):
        out = np_(trainer.classifier(x["source"], training=True))
    np.testing.assert_array_equal(np_(bn.moving_mean), before[0])
    np.testing.assert_array_equal(np_(bn.moving_variance), before[1])
    # …while the pass itself normalized with its batch's statistics, not the moving ones
    assert not np.allclose(out, np_(trainer.classifier(x["source"], training=False)))
    assert bn.momentum == 0.5


def test_loss_and_state_by_hand():
    trainer = make(tau=0.9, source_momentum=0.5)
    trainer.step.assign(25.0)  # ¼ of 100 steps: μ = ½
    x, y = np.zeros((1,)), np.array([0, 1])
    ln3 = np.log(3.0)
    z_source = np.array([[ln3, 0.0, 0.0], [0.0, ln3, 0.0],  # weak: p = (.6, .2, .2), (.2, .6, .2)
                         [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "float32")  # strong: uniform
    z_target_weak = np.array([[2 * ln3, 0.0, 0.0], [0.0, 0.0, 0.0]], "float32")
    z_target_strong = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "float32")
    t = keras.ops.convert_to_tensor
    trainer.keep(z_source=t(z_source), z_target_weak=t(z_target_weak),
                 z_target_strong=t(z_target_strong), target_labels=None)
    loss = float(np_(trainer.compute_loss(x, y, t(z_source[:2]), training=True)))

    source_ce = -np.log(0.6) + -np.log(1 / 3)  # mean over the batch of weak, plus strong
    p_sw = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])
    source_mean = 0.5 * (1 / 3) + 0.5 * p_sw.mean(0)  # running average, momentum 0.5
    p_tw = np.array([[9 / 11, 1 / 11, 1 / 11], [1 / 3, 1 / 3, 1 / 3]])
    history = np.vstack([np.full((3, 3), 1 / 3), p_tw.mean(0)])  # window of 4, oldest out
    aligned = p_tw * source_mean / history.mean(0)
    aligned /= aligned.sum(-1, keepdims=True)
    threshold = 0.9 * 0.6  # τ · mean max p_source_weak
    mask = aligned.max(-1) >= threshold
    target = np.mean(mask * np.log(3.0))  # CE of a uniform strong view is ln 3 for any label
    assert mask.tolist() == [True, False]
    assert loss == pytest.approx(source_ce + 0.5 * target, rel=1e-5)
    np.testing.assert_allclose(np_(trainer.source_mean), source_mean, rtol=1e-5)
    np.testing.assert_allclose(np_(trainer.target_history), history, rtol=1e-5)
    assert float(np_(trainer.step)) == 26.0


def test_weight_decay_changes_the_update_by_exactly_its_gradient():
    x, y = data()
    kernels = []
    for l2 in (0.0, 0.01):
        trainer = make(l2=l2)
        w0 = np_(trainer.classifier.layers[-1].kernel).copy()
        trainer.train_on_batch(x, y)
        kernels.append(np_(trainer.classifier.layers[-1].kernel))
    # Nesterov SGD's first step moves by −lr·(1 + momentum)·g; the L2 term adds l2·w to g.
    np.testing.assert_allclose(kernels[1] - kernels[0], -0.1 * 1.9 * 0.01 * w0, atol=2e-6)
    assert np.abs(kernels[1] - kernels[0]).max() > 1e-5


def test_target_labels_cannot_influence_training():
    x, y = data(seed=1)
    labels = np.arange(12) % 3
    results = []
    for target_labels in (labels, np.random.default_rng(0).permutation(labels)[::-1].copy()):
        trainer = make(ema_decay=0.9)
        for _ in range(3):
            logs = trainer.train_on_batch({**x, "target_labels": target_labels}, y,
                                          return_dict=True)
        results.append(([np_(w) for w in trainer.weights], logs["pseudo_acc"]))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)  # weights, BN statistics, EMA, recipe state


def test_alignment_state_survives_a_checkpoint_round_trip(tmp_path):
    x, y = data()
    trainer = make()
    for _ in range(3):
        trainer.train_on_batch(x, y)
    save_state(trainer, tmp_path / "epoch-0001.npz", epoch=1)
    other = make(seed=5)
    assert load_state(other, tmp_path / "epoch-0001.npz") == 1
    for name in ("source_mean", "target_history", "step"):
        np.testing.assert_array_equal(np_(getattr(other, name)), np_(getattr(trainer, name)))
    assert float(np_(other.step)) == 3.0
    assert not np.allclose(np_(other.source_mean), 1 / 3)  # it really had moved


# ----------------------------------------------------------------------------- runs


def config(**values):
    base = {"recipe": "adamatch", "seed": 0, "mode": "ssl", "labels_per_class": 5,
            "data": {"train": "embedded:digits", "test_fraction": 0.2, "val_fraction": 0.1},
            "model": {"name": "small_cnn", "options": {"width": 4}},
            "weak": {"flip": False}, "strong": {"flip": False},
            "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 16}}
    if values.get("mode", "ssl") != "ssl":
        del base["labels_per_class"]  # read in mode ssl only: elsewhere an error
    for key, value in values.items():
        set_dotted(base, key, value)
    return from_dict(base)


@pytest.mark.torch_once
def test_short_ssl_run_writes_the_output_contract(tmp_path):
    from mentor.recipes import adamatch

    metrics = adamatch.RECIPE.run(config(**{"baseline.enabled": True}), tmp_path / "run")
    for key in ("target_acc", "source_acc", "source_only_target_acc"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["steps"] == 6 and metrics["source_images"] == 50
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    for column in ("source_loss", "target_loss", "mu", "mask_rate", "pseudo_acc"):
        assert column in header
        assert f"val_{column}" not in header  # training monitors, not validation metrics
    assert "val_acc" in header
    base = (tmp_path / "run" / "baseline_history.csv").read_text().splitlines()
    assert len(base) == 1 + 2  # the same epochs of the same steps


# input checks run before any backend work: once is enough
@pytest.mark.torch_once
def test_bad_adamatch_inputs_get_clear_messages(tmp_path):
    from mentor.recipes import adamatch

    x = np.zeros((300, 8, 8), np.uint8)
    with pytest.raises(MentorError, match="fewer than labels_per_class = 500"):
        adamatch.RECIPE.run(config(labels_per_class=500), tmp_path / "a")
    with pytest.raises(MentorError, match="needs target.train"):
        adamatch.RECIPE.run(config(mode="uda"), tmp_path / "b")
    five = write_npz(tmp_path / "five.npz", x=x, y=np.arange(300) % 5)
    twelve = write_npz(tmp_path / "twelve.npz", x=x, y=np.arange(300) % 12)
    with pytest.raises(MentorError, match="share one label space"):
        adamatch.RECIPE.run(config(mode="uda", **{"data.train": five, "target.train": twelve}),
                     tmp_path / "c")
    empty = write_npz(tmp_path / "empty.npz", x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, int))
    with pytest.raises(MentorError, match="empty|no images"):
        adamatch.RECIPE.run(config(mode="uda", **{"target.train": empty}), tmp_path / "d")
    rgba = write_npz(tmp_path / "rgba.npz", x=np.zeros((300, 8, 8, 4), np.uint8), y=np.arange(300) % 5)
    with pytest.raises(MentorError, match="must have 1 or 3 channels"):
        adamatch.RECIPE.run(config(mode="uda", **{"data.train": five, "target.train": rgba}),
                     tmp_path / "f")
    with pytest.raises(MentorError, match="mode.*must be one of .uda., .ssda., .ssl."):
        adamatch.RECIPE.run(config(mode="semi"), tmp_path / "e")
    for d in "abcdef":
        assert not (tmp_path / d / "metrics.json").exists()


def test_ssda_adds_the_labeled_target_images_to_the_source():
    from mentor.data.sources import load_source
    from mentor.recipes.adamatch import split_by_mode

    digits = load_source("embedded:digits")
    cfg = config(mode="ssda", **{"target.train": "embedded:mnist5k",
                                 "target.labels_per_class": 3})
    source, target = split_by_mode(cfg, digits)
    assert len(source) == len(digits) + 30 and len(target) == 5000 - 30
    assert source.image_shape == target.image_shape == digits.image_shape  # 8×8×1
    assert np.bincount(source.y[len(digits):]).tolist() == [3] * 10
    with pytest.raises(MentorError, match="target.labels_per_class"):
        split_by_mode(config(mode="ssda", **{"target.train": "embedded:mnist5k"}), digits)


def test_history_columns_keras_left_empty_are_not_plotted(tmp_path):
    from mentor.report import plot_history, read_history

    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,mu,val_loss\n0,1.0,0.0,NA\n1,0.5,0.5,NA\n")
    assert set(read_history(csv)) == {"epoch", "loss", "mu"}
    assert plot_history(csv, tmp_path / "c.png").is_file()


def test_every_layer_of_the_trainer_is_built_after_one_step():
    """An unbuilt layer (the weight average was one) makes Keras trace the whole trainer
    again before every train_on_batch (Trainer._symbolic_build checks layer.built): on
    torch that ran both passes a second time."""
    from mentor import augment

    trainer = make(ema_decay=0.9)
    trainer.weak = augment.WeakAugment(flip=False, seed=0)
    trainer.strong = augment.StrongAugment(flip=False, seed=1)
    x, y = data()
    trainer.train_on_batch(x, y)
    assert [l.name for l in flatten_layers(trainer) if not l.built] == []
