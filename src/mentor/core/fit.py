"""The resumable fit loop: a Stage (where one training stage of a run keeps its checkpoints
and history), the callbacks every stage runs with, and `train`, which compiles a trainer,
fits it for its schedule, resuming from the stage's newest checkpoint, and finishes it."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sys

import keras

from mentor.compat import scheduled_learning_rate
from mentor.config import TrainConfig
from mentor.core.checkpoints import (
    Checkpoints,
    checkpoint_files,
    resume_from,
    state_bytes,
)
from mentor.core.optim import build_optimizer
from mentor.errors import MentorError
from mentor.runs import check_free_space, mark
from mentor.runtime import eval_batch_size, trim_to_devices


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage of a run ("model", "teacher", "student" or "baseline"): the run
    directory it belongs to, its checkpoint folder and its history file. `RunDir.stage`
    makes them; `Stage()` trains in memory, with neither checkpoints nor history."""

    name: str = "model"
    run: pathlib.Path | None = None
    checkpoints: pathlib.Path | None = None
    history: pathlib.Path | None = None


class StatusLog(keras.callbacks.Callback):
    """Keeps the run's status.json at the stage and epoch training has reached, so
    `mentor status` can say where a run is."""

    def __init__(self, stage: Stage):
        super().__init__()
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        mark(self.stage.run, "running", stage=self.stage.name, epoch=epoch + 1,
             epochs=(self.params or {}).get("epochs"))


class LearningRateLog(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs (history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = scheduled_learning_rate(self.model.optimizer)


class DivergenceGuard(keras.callbacks.Callback):
    """Stop at the first step whose loss is NaN or infinite, before the next checkpoint is
    written, with a message that says where and what to try. The newest checkpoint (if any)
    stays the last good state: rerunning the same command resumes from it."""

    def __init__(self, checkpoints=None):
        super().__init__()
        self.checkpoints = checkpoints
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        saved = checkpoint_files(self.checkpoints) if self.checkpoints else []
        kept = (f"the last good checkpoint, {saved[-1]}, is kept" if saved
                else "no checkpoint had been written yet")
        raise MentorError(
            f"training diverged: the loss became {float(loss)} at epoch {self.epoch + 1}, "
            f"batch {batch + 1}. Try a lower train.learning_rate, a longer "
            f"train.warmup_steps or train.clipnorm = 1.0 (into a new --out), and check the "
            f"data for broken images; {kept}.")


def trim_history(path, epochs: int):
    """Drop rows of a CSVLogger file from epochs a resumed run will train again."""
    if not os.path.isfile(str(path)):
        return
    with open(str(path)) as f:
        lines = f.readlines()
    kept = lines[:1] + [row for row in lines[1:] if int(row.split(",", 1)[0]) < epochs]
    with open(str(path), "w") as f:
        f.writelines(kept)


def fit_verbosity() -> int:
    """A live progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def fit_resumable(trainer: keras.Model, batches, stage: Stage, cfg: TrainConfig, *,
                  per_epoch: int, exclude=(), validation=None, callbacks=()) -> int:
    """`trainer.fit` over cfg.epochs × per_epoch steps that survives being killed.

    With a stage that has a checkpoint folder, the newest good checkpoint there is loaded
    first (model, optimizer, averages, recipe and random state) and training goes on from
    its epoch: `batches(start_step)` must return the data from that global step on
    (mentor's Batches do), so the order is the one an uninterrupted run sees. The stage's
    history (CSV) is appended to, minus rows of epochs trained again. Returns the epoch
    training started at.
    """
    checkpoints = stage.checkpoints
    done = resume_from(trainer, checkpoints, exclude=exclude) if checkpoints else 0
    cbs = [DivergenceGuard(checkpoints), LearningRateLog(), *callbacks]
    if checkpoints:
        if not trainer.optimizer.built:
            trainer.optimizer.build(trainer.trainable_variables)
        # keep + 1 checkpoints exist while the newest is written, then the final models
        check_free_space(checkpoints, (cfg.keep_checkpoints + 2) * state_bytes(trainer, exclude),
                         f"{cfg.keep_checkpoints} checkpoints of this run "
                         "(train.keep_checkpoints)")
    if stage.run is not None:
        cbs.append(StatusLog(stage))
    if stage.history:
        trim_history(stage.history, done)
        cbs.append(keras.callbacks.CSVLogger(str(stage.history), append=done > 0))
    if checkpoints:  # after the logger: a row is never missing for a saved epoch
        cbs.append(Checkpoints(checkpoints, cfg.checkpoint_every, cfg.keep_checkpoints,
                               exclude))
    if done < cfg.epochs:
        trainer.fit(batches(done * per_epoch), epochs=cfg.epochs, initial_epoch=done,
                    steps_per_epoch=per_epoch, shuffle=False,
                    validation_data=trim_to_devices(validation),
                    validation_batch_size=eval_batch_size(), callbacks=cbs,
                    verbose=fit_verbosity())
    return done


def train(trainer: keras.Model, batches, stage: Stage, cfg: TrainConfig, *, per_epoch: int,
          steps: int, validation=None, callbacks=(), finish: bool = True) -> int:
    """Compile `trainer` with cfg's optimizer and an accuracy metric, fit it resumably for
    `steps` optimizer steps (a frozen `trainer.teacher` is left out of checkpoints: it is
    saved once, as teacher.keras) and, unless `finish` is false, finish it (the weight
    average into the model). Returns the optimizer steps taken, fewer than `steps` when
    early stopping ended the stage."""
    trainer.compile(optimizer=build_optimizer(cfg, steps, trainer.classifier),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    teacher = getattr(trainer, "teacher", None)
    fit_resumable(trainer, batches, stage, cfg, per_epoch=per_epoch,
                  exclude=(teacher,) if teacher is not None else (),
                  validation=validation, callbacks=callbacks)
    if finish:
        trainer.finish()
    return int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))
