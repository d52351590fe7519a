"""The resumable fit loop: the callbacks every Stage (run_folders.py: where one training stage of a
run keeps its checkpoints, history and TensorBoard logs) runs with (mentor's own, then the
caller's: `user_callbacks`), and `train`, which compiles a trainer, fits it for its schedule,
resuming from the stage's newest checkpoint, and finishes it."""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys

import keras

from mentor.atomic import write_atomically
from mentor.compat import flush_tensorboard, scheduled_learning_rate
from mentor.config import TrainConfig
from mentor.core.checkpoints import (
    Checkpoints,
    checkpoint_files,
    resume_from,
    state_bytes,
)
from mentor.core.optim import build_optimizer
from mentor.data.files import is_streamed
from mentor.data.pipeline import EvalBatches, feed
from mentor.errors import MentorError
from mentor.inference import trim_to_devices
from mentor.run_folders import Stage, check_free_space, mark
from mentor.runtime import eval_batch_size, process_shard, writes


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


# The caller's callbacks (mentor.api.run(callbacks=...)): every stage's fit of the run gets
# them, after mentor's own. A context variable, not a parameter threaded through every
# recipe, teacher and baseline: the recipes stay as they are, and no stage can miss them.
_user_callbacks: contextvars.ContextVar[tuple] = contextvars.ContextVar("user_callbacks",
                                                                        default=())


@contextlib.contextmanager
def user_callbacks(callbacks):
    """Within the block, every `fit_resumable` appends `callbacks` to its own."""
    token = _user_callbacks.set(tuple(callbacks))
    try:
        yield
    finally:
        _user_callbacks.reset(token)


class _Said:
    missing = False  # the missing-TensorFlow note is said once a process, not once a stage


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, flushed at the end of every epoch: tf.summary buffers
    events for up to 2 minutes, and a killed run should keep its curves up to the last
    epoch it finished, as history.csv does."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        flush_tensorboard(self)


def tensorboard_callback(log_dir) -> keras.callbacks.Callback | None:
    """Keras's TensorBoard callback writing to `log_dir` (train/ and validation/ in it), or
    None, with one note, where it cannot write: on every backend Keras writes the event
    files with TensorFlow's tf.summary, whose scalar summaries come from the tensorboard
    package, so both must be installed; without them the run goes on unlogged."""
    import importlib
    import importlib.util

    missing = [name for name in ("tensorflow", "tensorboard")
               if name not in sys.modules and importlib.util.find_spec(name) is None]
    if missing:
        if not _Said.missing:
            _Said.missing = True
            print(f"mentor: no TensorBoard logs: Keras writes them with TensorFlow and "
                  f"TensorBoard, and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                  "not installed; `pip install tensorflow-cpu tensorboard` (tensorflow on "
                  "macOS) adds them", flush=True)
        return None
    if "tensorflow" not in sys.modules:
        # TensorFlow's start-up lines ("could not find cuda drivers, GPU will not be
        # used") would read as if they were about this run's backend.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tf = importlib.import_module("tensorflow")
        importlib.import_module("tensorboard.summary")
        if keras.backend.backend() != "tensorflow":
            # Summaries are written on the CPU; a TensorFlow that saw the GPU would reserve
            # most of its memory beside torch or JAX. Once TensorFlow has started (it ran
            # ops already) this is refused, and then it has chosen its devices anyway.
            with contextlib.suppress(RuntimeError):
                tf.config.set_visible_devices([], "GPU")
    except Exception as error:  # a broken install must not stop the training
        if not _Said.missing:
            _Said.missing = True
            print(f"mentor: no TensorBoard logs: TensorFlow or TensorBoard does not import "
                  f"({type(error).__name__}: {error})", flush=True)
        return None
    # The model graph is off: a mentor trainer is a subclassed model whose graph says
    # little, and writing it would trace the train step once more.
    return EpochTensorBoard(log_dir=str(log_dir), write_graph=False)


def trim_history(path, epochs: int):
    """Drop rows of a CSVLogger file from epochs a resumed run will train again."""
    if not os.path.isfile(str(path)):
        return
    with open(str(path)) as f:
        lines = f.readlines()
    kept = lines[:1] + [row for row in lines[1:] if int(row.split(",", 1)[0]) < epochs]
    write_atomically(path, "".join(kept))


def validation_feed(validation):
    """Validation (x, y) as `fit` takes it, cut to a multiple of the device count (and to
    this process's share: `trim_to_devices`); file-backed images as batches decoded in
    order."""
    validation = trim_to_devices(validation)
    if validation is None or not is_streamed(validation[0]):
        return validation
    return EvalBatches(*validation, eval_batch_size() // process_shard()[1])


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

    The callbacks, in order: mentor's (divergence guard, learning rate into the logs),
    `callbacks` (the recipe's: plateau, early stopping, SWA), the status, history.csv,
    TensorBoard, checkpoints, then the caller's (`user_callbacks`). A callback that sets
    `stop_training` ends the stage (after a batch, Keras cuts the epoch short there); that
    epoch is logged and checkpointed like any other. Callbacks tell the stages apart by `self.model.stage.name`.
    """
    trainer.stage = stage  # a plain value: Keras tracks layers and variables, not this
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
    if stage.history and writes():  # the run directory is process 0's (runtime.writes)
        trim_history(stage.history, done)
        cbs.append(keras.callbacks.CSVLogger(str(stage.history), append=done > 0))
    if stage.tensorboard and writes():
        # A resumed stage appends new event files to the same folder; epochs trained again
        # after the newest checkpoint appear twice at the same step (TensorBoard draws both).
        board = tensorboard_callback(stage.tensorboard)
        if board is not None:
            cbs.append(board)
    if checkpoints:  # after the logger: a row is never missing for a saved epoch
        cbs.append(Checkpoints(checkpoints, cfg.checkpoint_every, cfg.keep_checkpoints,
                               exclude))
    cbs.extend(_user_callbacks.get())
    if done < cfg.epochs:
        validation = validation_feed(validation)
        data = feed(batches(done * per_epoch))
        try:
            trainer.fit(data, epochs=cfg.epochs, initial_epoch=done, steps_per_epoch=per_epoch,
                        shuffle=False, validation_data=validation,
                        validation_batch_size=None if isinstance(validation, EvalBatches)
                        else eval_batch_size(), callbacks=cbs, verbose=fit_verbosity())
        finally:
            if hasattr(data, "close"):  # a streaming loader's worker processes
                data.close()
    return done


def train(trainer: keras.Model, batches, stage: Stage, cfg: TrainConfig, *, per_epoch: int,
          steps: int, validation=None, callbacks=(), finish: bool = True) -> int:
    """Compile `trainer` with cfg's optimizer and an accuracy metric, fit it resumably for
    `steps` optimizer steps (a frozen `trainer.teacher` is left out of checkpoints: it is
    saved once, as teacher.keras) and, unless `finish` is false, finish it (the weight
    average into the model). Returns the optimizer steps taken, fewer than `steps` when
    early stopping ended the stage."""
    trainer.compile(optimizer=build_optimizer(cfg, steps, trainer.classifier,
                                              key=stage.train_key),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    teacher = getattr(trainer, "teacher", None)
    fit_resumable(trainer, batches, stage, cfg, per_epoch=per_epoch,
                  exclude=(teacher,) if teacher is not None else (),
                  validation=validation, callbacks=callbacks)
    if finish:
        trainer.finish()
    return int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))
