import math

import keras
import numpy as np
import pytest

from mentor.config import TrainConfig
from mentor.core.averaging import WeightEMA, recalibrate_batchnorm
from mentor.core.checkpoints import Checkpoints, load_state, resume_from, save_state
from mentor.core.optim import build_optimizer, learning_rate, total_steps
from mentor.errors import MentorError


def lr_at(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.neutral
def test_warmup_then_cosine_values_by_hand():
    cfg = TrainConfig(learning_rate=0.1, warmup_steps=10)
    s = learning_rate(cfg, 110)
    assert lr_at(s, 0) == pytest.approx(0.0, abs=1e-7)
    assert lr_at(s, 5) == pytest.approx(0.05, rel=1e-5)  # linear: half way up
    assert lr_at(s, 10) == pytest.approx(0.1, rel=1e-5)  # peak
    assert lr_at(s, 60) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 50 / 100)), rel=1e-5)
    assert lr_at(s, 110) == pytest.approx(0.0, abs=1e-7)  # cosine reaches 0 at the end


@pytest.mark.neutral
def test_cosine_without_warmup_and_constant():
    s = learning_rate(TrainConfig(learning_rate=0.2), 100)
    assert lr_at(s, 0) == pytest.approx(0.2) and lr_at(s, 50) == pytest.approx(0.1, rel=1e-5)
    assert learning_rate(TrainConfig(learning_rate=0.2, schedule="constant"), 100) == 0.2


@pytest.mark.neutral
def test_a_warmup_as_long_as_the_run_is_clamped_to_a_tenth_with_a_note(capsys):
    s = learning_rate(TrainConfig(learning_rate=0.1, warmup_steps=500), 200)
    # 500 ≥ 200 steps → 10 % of 200 = 20 warm-up steps, then 180 of cosine
    assert lr_at(s, 0) == pytest.approx(0.0, abs=1e-7)
    assert lr_at(s, 10) == pytest.approx(0.05, rel=1e-5)  # half way up
    assert lr_at(s, 20) == pytest.approx(0.1, rel=1e-5)  # the peak, where warm-up ends
    assert lr_at(s, 65) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)), rel=1e-5)
    assert lr_at(s, 110) == pytest.approx(0.05, rel=1e-5)  # middle of the cosine: cos(π/2) = 0
    assert lr_at(s, 200) == pytest.approx(0.0, abs=1e-7)  # the end
    out = capsys.readouterr().out
    assert ("note: train.warmup_steps = 500 is not shorter than the 200 steps of this "
            "training, so the warm-up is 20 steps (10 % of them). Set train.warmup_steps "
            "≤ 199 (e.g. 20)") in out


@pytest.mark.neutral
def test_a_clamped_warmup_of_a_very_short_run_is_none(capsys):
    # 8 steps: 10 % rounds down to 0, so the cosine starts at the peak (no step at rate 0)
    s = learning_rate(TrainConfig(learning_rate=0.1, warmup_steps=8), 8)
    assert lr_at(s, 0) == pytest.approx(0.1, rel=1e-6)
    assert lr_at(s, 4) == pytest.approx(0.05, rel=1e-5)
    assert lr_at(s, 8) == pytest.approx(0.0, abs=1e-7)
    assert "the warm-up is 0 steps" in capsys.readouterr().out


def test_the_warmup_note_names_the_section_and_a_shorter_warmup_is_kept(capsys):
    build_optimizer(TrainConfig(warmup_steps=100), 100, key="teacher.train")
    assert "note: teacher.train.warmup_steps = 100 is not shorter than the 100 steps" in \
        capsys.readouterr().out
    s = learning_rate(TrainConfig(learning_rate=0.1, warmup_steps=99), 100)
    assert lr_at(s, 99) == pytest.approx(0.1, rel=1e-5)  # 99 steps up: as configured
    assert capsys.readouterr().out == ""


def test_bad_schedule_settings():
    from mentor.recipes import from_dict

    # choices are refused at load, before any optimizer exists
    with pytest.raises(MentorError, match="train.schedule.*'cosine'"):
        from_dict({"recipe": "supervised", "train": {"schedule": "linear"}})
    with pytest.raises(MentorError, match="train.optimizer.*'adamw'"):
        from_dict({"recipe": "supervised", "train": {"optimizer": "lion"}})


def test_total_steps():
    assert total_steps(TrainConfig(batch_size=64, epochs=3), 1000) == (16, 48)
    assert total_steps(TrainConfig(batch_size=64, epochs=3, steps_per_epoch=5), 1000) == (5, 15)


@pytest.mark.neutral
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_shrinks_kernels_not_biases(name):
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    dense.kernel.assign(np.ones((3, 2), "float32"))
    dense.bias.assign(np.ones(2, "float32"))
    opt = build_optimizer(TrainConfig(optimizer=name, learning_rate=0.5, weight_decay=0.1,
                                      schedule="constant"), 10)
    zeros = [keras.ops.zeros(dense.kernel.shape), keras.ops.zeros(dense.bias.shape)]
    opt.apply_gradients(zip(zeros, [dense.kernel, dense.bias]))
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    np.testing.assert_allclose(kernel, 1 - 0.5 * 0.1, rtol=1e-6)  # w ← w − lr·wd·w
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.bias), 1.0)


@pytest.mark.neutral
def test_weight_ema_values_by_hand():
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Sequential([keras.Input((1,)), dense])
    dense.kernel.assign([[1.0]])
    ema = WeightEMA(model, decay=0.5)
    dense.kernel.assign([[3.0]])
    ema.update()  # n = 0: d = min(0.5, 1/10) = 0.1 → 0.1·1 + 0.9·3 = 2.8
    assert float(keras.ops.convert_to_numpy(ema.averages[0])[0, 0]) == pytest.approx(2.8)
    ema.update()  # n = 1: d = min(0.5, 2/11) → (2/11)·2.8 + (9/11)·3
    want = (2 / 11) * 2.8 + (9 / 11) * 3
    assert float(keras.ops.convert_to_numpy(ema.averages[0])[0, 0]) == pytest.approx(want)
    ema.copy_to_model()
    assert float(keras.ops.convert_to_numpy(dense.kernel)[0, 0]) == pytest.approx(want)


def test_batchnorm_recalibration_gives_the_plain_mean():
    bn = keras.layers.BatchNormalization()
    model = keras.Sequential([keras.Input((2,)), bn])
    x = np.random.default_rng(0).normal(3.0, 2.0, (400, 2)).astype("float32")
    recalibrate_batchnorm(model, x, batch_size=100)
    # the mean of four batch means is the mean of the data
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), x.mean(0), rtol=1e-5)


def test_swa_loads_the_mean_of_the_epochs_it_averaged():
    """SWA from epoch 2 of 3: the model ends at the mean of its weights after epochs 2 and 3,
    not at the last ones."""
    from mentor.core.averaging import SWA

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(
            [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]))
    swa = SWA(model, start_epoch=2)
    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    model.fit(x, np.arange(32) % 3, batch_size=8, epochs=3, callbacks=[record, swa], verbose=0)
    assert swa.n == 2 and swa.finish()
    for i, w in enumerate(model.trainable_weights):
        assert not np.allclose(seen[1][i], seen[2][i])  # the epochs really differ
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), (seen[1][i] + seen[2][i]) / 2,
                                   rtol=1e-6)


def test_batchnorm_recalibration_gives_the_plain_variance_of_batches():
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Sequential([keras.Input((2,)), bn])
    x = np.random.default_rng(1).normal(3.0, 2.0, (300, 2)).astype("float32")
    recalibrate_batchnorm(model, x, batch_size=100)
    batch_vars = [x[i:i + 100].var(0) for i in range(0, 300, 100)]  # biased, as Keras keeps
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               np.mean(batch_vars, 0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored


def _tiny_trainer(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.AdamW(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_checkpoints_keep_the_newest_and_leave_no_partial_files(tmp_path):
    model = _tiny_trainer()
    model.fit(np.ones((4, 2)), np.zeros(4), verbose=0)  # builds the optimizer's slots
    cb = Checkpoints(tmp_path / "ck", every=1, keep=2)
    cb.set_model(model)
    for epoch in range(4):
        cb.on_epoch_end(epoch)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["epoch-0003.npz",
                                                                   "epoch-0004.npz"]
    other = _tiny_trainer(seed=1)
    assert load_state(other, tmp_path / "ck" / "epoch-0004.npz") == 4
    for a, b in zip(other.weights + other.optimizer.variables,
                    model.weights + model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert int(keras.ops.convert_to_numpy(other.optimizer.iterations)) == 1


def test_resume_skips_a_truncated_checkpoint_for_the_one_before(tmp_path, capsys):
    model = _tiny_trainer()
    model.fit(np.ones((4, 2)), np.zeros(4), verbose=0)
    save_state(model, tmp_path / "epoch-0001.npz", epoch=1)
    good = [keras.ops.convert_to_numpy(w) for w in model.weights]
    model.fit(np.ones((4, 2)), np.zeros(4), verbose=0)
    save_state(model, tmp_path / "epoch-0002.npz", epoch=2)
    data = (tmp_path / "epoch-0002.npz").read_bytes()
    (tmp_path / "epoch-0002.npz").write_bytes(data[: len(data) // 2])  # a torn write
    other = _tiny_trainer(seed=1)
    assert resume_from(other, tmp_path) == 1
    assert "epoch-0002.npz is unreadable" in capsys.readouterr().err
    for a, b in zip(other.weights, good):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)


def test_a_stage_whose_checkpoints_are_all_unreadable_says_it_starts_over(tmp_path, capsys):
    (tmp_path / "epoch-0001.npz").write_bytes(b"not a zip")
    (tmp_path / "epoch-0002.npz").write_bytes(b"")
    model = _tiny_trainer()
    model.fit(np.ones((4, 2)), np.zeros(4), verbose=0)
    assert resume_from(model, tmp_path) == 0
    err = capsys.readouterr().err
    assert "none of the 2 checkpoint(s)" in err and "starts over from its first step" in err


def test_a_checkpoint_from_another_model_is_refused_plainly(tmp_path):
    model = _tiny_trainer()
    model.fit(np.ones((4, 2)), np.zeros(4), verbose=0)
    save_state(model, tmp_path / "epoch-0001.npz", epoch=1)
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(5)])
    other.compile(optimizer="adamw", loss="mse")
    with pytest.raises(MentorError, match="written with another config"):
        resume_from(other, tmp_path)
