"""What a run gives to the outside while it trains: TensorBoard logs of every stage, and the
caller's Keras callbacks (mentor.api.run(callbacks=...))."""

import csv
import importlib.util
import json

import keras
import numpy as np
import pytest

from mentor.errors import MentorError

# 3 epochs × 2 steps of 16 UCI digits (8×8): a run in seconds that still has epochs to count
TINY = ["data.train=\"embedded:digits\"", "train.epochs=3", "train.steps_per_epoch=2",
        "train.batch_size=16", "augment.kind=\"none\"", "model.options={width = 4}"]

HAS_TENSORBOARD = all(importlib.util.find_spec(name) is not None
                      for name in ("tensorflow", "tensorboard"))
needs_tensorboard = pytest.mark.skipif(
    not HAS_TENSORBOARD, reason="Keras's TensorBoard callback needs tensorflow and tensorboard")


def supervised(out, *extra, callbacks=()):
    import mentor.api

    return mentor.api.run("supervised", out, set=[*TINY, *extra], callbacks=callbacks)


def history(run_dir, name="history.csv") -> list[dict]:
    with open(run_dir / name) as f:
        return list(csv.DictReader(f))


def scalars(folder) -> dict:
    """{tag: {step: value}} over every event file in `folder`; a step written twice fails."""
    import tensorflow as tf

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps = found.setdefault(value.tag, {})
                assert event.step not in steps, f"{value.tag} step {event.step} written twice"
                steps[event.step] = float(tf.make_ndarray(value.tensor))
    return found


class Recorder(keras.callbacks.Callback):
    """Keeps (stage, epoch, the logs' keys) of every epoch end it sees."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((self.model.stage.name, epoch, sorted(logs)))


class StopAfter(keras.callbacks.Callback):
    """Stops the stage at the end of epoch `epochs` (1-based), keeping the weights then."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True
            self.weights = [w.copy() for w in self.model.classifier.get_weights()]


class Crash(keras.callbacks.Callback):
    """Raises at the end of epoch `epoch` (1-based), after that epoch's checkpoint."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("crash on purpose")


# ----------------------------------------------------------------------------- callbacks


@pytest.mark.neutral
def test_a_callback_from_python_sees_every_epoch_with_mentors_logs(tmp_path):
    recorder = Recorder()
    supervised(tmp_path / "run", callbacks=[recorder])
    # after mentor's own callbacks: the learning rate is in the logs it gets
    keys = ["acc", "learning_rate", "loss", "val_acc", "val_loss"]
    assert recorder.seen == [("model", epoch, keys) for epoch in range(3)]
    assert len(history(tmp_path / "run")) == 3


@pytest.mark.neutral
def test_a_callback_that_stops_training_ends_the_run_early_with_the_model_as_it_is(tmp_path):
    stop = StopAfter(1)
    result = supervised(tmp_path / "run", callbacks=[stop])
    run = tmp_path / "run"
    assert result.metrics["steps"] == 2  # one epoch of 2 steps, not 3 epochs
    assert len(history(run)) == 1
    assert sorted(p.name for p in (run / "checkpoints").glob("*.npz")) == ["epoch-0001.npz"]
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    # model.keras (evaluated for metrics.json) is the model as training stopped it
    for saved, stopped in zip(result.model.get_weights(), stop.weights, strict=True):
        np.testing.assert_array_equal(saved, stopped)


def test_callbacks_must_be_keras_callbacks(tmp_path):
    with pytest.raises(MentorError, match="callbacks takes keras.callbacks.Callback"):
        supervised(tmp_path / "run", callbacks=[lambda epoch, logs: None])
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_callbacks_and_the_warmup_clamp_reach_the_teacher_and_the_baseline(tmp_path, capsys):
    """A distill run that trains its teacher and a labels-only baseline: the callback sees
    the three stages in the order they train, and each stage's schedule clamps its own
    warm-up, the note naming the config section it comes from."""
    import mentor.api

    recorder = Recorder()
    result = mentor.api.run("distill", tmp_path / "kd", callbacks=[recorder], set=[
        "data.train=\"embedded:digits\"", "model.options={width = 4}", "augment.flip=false",
        "train.epochs=2", "train.steps_per_epoch=2", "train.batch_size=16",
        "train.warmup_steps=1000", "baseline.enabled=true", "teacher.path=\"\"",
        "teacher.model.name=\"small_cnn\"", "teacher.model.options={width = 4}",
        "teacher.train.epochs=2", "teacher.train.steps_per_epoch=2",
        "teacher.train.batch_size=16", "teacher.train.warmup_steps=1000"])
    assert [(stage, epoch) for stage, epoch, _ in recorder.seen] == [
        ("teacher", 0), ("teacher", 1), ("student", 0), ("student", 1),
        ("baseline", 0), ("baseline", 1)]
    assert result.metrics["steps"] == 4 and result.metrics["teacher_steps"] == 4
    out = capsys.readouterr().out
    # 4 steps each: 10 % of them rounds down to no warm-up
    assert out.count("note: teacher.train.warmup_steps = 1000 is not shorter than the 4 "
                     "steps") == 1
    assert out.count("note: train.warmup_steps = 1000 is not shorter than the 4 steps") == 2


# ----------------------------------------------------------------------------- TensorBoard


@needs_tensorboard
@pytest.mark.neutral
def test_a_run_writes_tensorboard_scalars_for_each_epoch(tmp_path):
    supervised(tmp_path / "run")
    run = tmp_path / "run"
    rows = history(run)
    train = scalars(run / "tensorboard" / "model" / "train")
    val = scalars(run / "tensorboard" / "model" / "validation")
    for tag, column in (("epoch_loss", "loss"), ("epoch_acc", "acc"),
                        ("epoch_learning_rate", "learning_rate")):
        assert train[tag] == pytest.approx({i: float(r[column]) for i, r in enumerate(rows)},
                                           rel=1e-5), tag
    for tag, column in (("epoch_loss", "val_loss"), ("epoch_acc", "val_acc")):
        assert val[tag] == pytest.approx({i: float(r[column]) for i, r in enumerate(rows)},
                                         rel=1e-5), tag
    # the cosine really moved: the logged rates are the schedule's, not one constant
    rates = train["epoch_learning_rate"]
    assert rates[0] > rates[1] > rates[2] >= 0


@needs_tensorboard
def test_a_resumed_run_appends_to_the_same_tensorboard_folder(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash on purpose"):
        supervised(run, callbacks=[Crash(epoch=2)])  # epochs 1 and 2 are checkpointed
    first = scalars(run / "tensorboard" / "model" / "train")["epoch_loss"]
    assert sorted(first) == [0, 1]
    supervised(run)  # the same config into the same directory: resumes at epoch 3
    files = list((run / "tensorboard" / "model" / "train").glob("events.out.tfevents.*"))
    assert len(files) == 2  # one a process, in one folder
    losses = scalars(run / "tensorboard" / "model" / "train")["epoch_loss"]
    assert sorted(losses) == [0, 1, 2]  # each epoch once (scalars fails on a repeat)
    assert losses[2] == pytest.approx(float(history(run)[2]["loss"]), rel=1e-5)


def test_without_tensorflow_or_tensorboard_a_run_says_so_once_and_goes_on(
        tmp_path, capsys, monkeypatch):
    import sys

    from mentor.core import fit

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "tensorboard", raising=False)
    monkeypatch.setattr(fit._Said, "missing", False)
    result = supervised(tmp_path / "run")
    assert result.metrics["steps"] == 6
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert fit.tensorboard_callback(tmp_path / "again") is None
    out = capsys.readouterr().out
    assert out.count("no TensorBoard logs") == 1
    assert "tensorboard is not installed; `pip install tensorflow-cpu tensorboard`" in out


def test_every_stage_logs_to_its_own_tensorboard_folder(tmp_path):
    from mentor.run_folders import RunDir

    run = RunDir(tmp_path / "run")
    folders = {name: run.stage(name).tensorboard
               for name in ("model", "teacher", "student", "baseline")}
    assert folders == {name: tmp_path / "run" / "tensorboard" / name for name in folders}
    for name in ("model", "student", "baseline"):
        assert run.stage(name).train_key == "train"
    assert run.stage("teacher").train_key == "teacher.train"
