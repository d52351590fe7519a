"""Pieces every recipe shares: data splits, optimizer and schedule, weight averages,
checkpoints. Functions, not a base class: a recipe file calls what it needs.
"""

from __future__ import annotations

import math
import os
import sys

import keras
import numpy as np

from mentor.config import DataConfig, TrainConfig
from mentor.data.imageset import ImageSet
from mentor.data.pipeline import prepare, split_fraction
from mentor.errors import MentorError
from mentor.runs import check_free_space, disk_errors, mark, run_of
from mentor.runtime import eval_batch_size, predict, trim_to_devices

# ----------------------------------------------------------------------------- runs


def start_run(config, out, name: str):
    """What every recipe does first: the run directory, the seed, the resolved config, and
    the data. Returns (run_dir, train, val, test)."""
    from mentor.config import to_dict
    from mentor.runs import RunDir

    run_dir = out if isinstance(out, RunDir) else RunDir(out)
    keras.utils.set_random_seed(config.seed)
    run_dir.write_config(to_dict(config), name)
    train, val, test = load_splits(config.data, config.seed)
    print(f"data: {len(train)} train, {len(val) if val else 0} val, {len(test)} test images "
          f"of {train.image_shape}, {train.num_classes} classes", flush=True)
    return run_dir, train, val, test


def build_for(model_config, data: ImageSet, image_size: int = 0) -> keras.Model:
    """The configured model, sized for `data`'s classes, image size (or `image_size`, e.g.
    a crop's) and channels."""
    from mentor.models import build_model

    return build_model(model_config.name, num_classes=data.num_classes,
                       image_size=image_size or data.image_shape[0],
                       channels=data.image_shape[2], **model_config.options)


# ----------------------------------------------------------------------------- data


def load_splits(cfg: DataConfig, seed: int):
    """Load train (and test) sources, bring them to one image size and channel count, and
    split off validation (and test, when no test source is named). Returns (train, val, test);
    val is None when val_fraction is 0."""
    from mentor.data.sources import load_source

    train = load_source(cfg.train, image_size=cfg.image_size or None)
    size = cfg.image_size or max(train.x.shape[1:3])
    channels = cfg.channels or train.x.shape[-1]
    train = prepare(train, size, channels)
    if cfg.test:
        test = prepare(load_source(cfg.test, image_size=size), size, channels)
        check_same_classes(train, test)
    else:
        train, test = split_fraction(train, cfg.test_fraction, seed, ("train", "test"))
    val = None
    if cfg.val_fraction > 0:
        train, val = split_fraction(train, cfg.val_fraction, seed + 1)
    return train, val, test


def check_same_classes(reference: ImageSet, other: ImageSet):
    if int(other.y.max()) >= reference.num_classes or other.num_classes > reference.num_classes:
        raise MentorError(
            f"{other.name} has {other.num_classes} classes but {reference.name} has "
            f"{reference.num_classes}; they must share one label space."
        )


def check_model_matches(model: keras.Model, data: ImageSet):
    """The model's class count and input shape must fit the data."""
    classes = model.output_shape[-1]
    if classes < data.num_classes or int(data.y.max()) >= classes:
        raise MentorError(
            f"the model predicts {classes} classes but {data.name} has {data.num_classes} "
            f"(labels up to {int(data.y.max())}); use a model trained on the same classes."
        )
    want = tuple(model.input_shape[1:])
    if None not in want and want != data.image_shape:
        raise MentorError(
            f"the model takes images of shape {want} but {data.name} has {data.image_shape}; "
            "prepare the data to the model's image_size and channels."
        )


# ----------------------------------------------------------------------------- optimizer


def total_steps(cfg: TrainConfig, train_size: int) -> tuple[int, int]:
    """(steps_per_epoch, total optimizer steps)."""
    per_epoch = cfg.steps_per_epoch or math.ceil(train_size / cfg.batch_size)
    return per_epoch, per_epoch * cfg.epochs


def learning_rate(cfg: TrainConfig, steps: int):
    """Peak `learning_rate`: linear warm-up over warmup_steps, then cosine to 0 at `steps`
    (Keras's CosineDecay does both); a float for "constant" and "plateau" (the plateau
    callback lowers it)."""
    if cfg.schedule in ("constant", "plateau"):
        return cfg.learning_rate
    if cfg.schedule != "cosine":
        raise MentorError(
            f"train.schedule must be \"cosine\", \"constant\" or \"plateau\", got {cfg.schedule!r}."
        )
    if cfg.warmup_steps >= steps:
        raise MentorError(
            f"train.warmup_steps = {cfg.warmup_steps} leaves no steps for the cosine decay "
            f"(training has {steps} steps); lower it."
        )
    if cfg.warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            0.0, steps - cfg.warmup_steps, warmup_target=cfg.learning_rate,
            warmup_steps=cfg.warmup_steps)
    return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)


# Decoupled weight decay shrinks kernels only: decaying biases and normalization scales
# hurts and is not what the papers do (AdaMatch/FixMatch decay conv and dense kernels).
NO_DECAY = ["bias", "gamma", "beta", "moving_mean", "moving_variance"]


def build_optimizer(cfg: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    lr = learning_rate(cfg, steps)
    clip = {"global_clipnorm": cfg.clipnorm} if cfg.clipnorm else {}
    wd = cfg.weight_decay or None
    if cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, **clip)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=wd, **clip)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=wd,
                                   **clip)
    else:
        raise MentorError(
            f"train.optimizer must be \"adamw\", \"adam\" or \"sgd\", got {cfg.optimizer!r}."
        )
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def l2_penalty(model: keras.Model):
    """½‖w‖² over conv and dense kernels (not biases or normalization parameters): the
    coupled weight decay of the FixMatch/AdaMatch code, added to a loss."""
    kernels = [w for w in model.trainable_weights if "kernel" in w.path]
    return 0.5 * sum(keras.ops.sum(keras.ops.square(k)) for k in kernels)


# ----------------------------------------------------------------------------- averages


class WeightEMA(keras.layers.Layer):
    """Exponential moving average of a model's float weights (BN statistics included),
    held as non-trainable variables of whatever model owns this layer, so it is saved in
    checkpoints and updated inside the compiled train step on every backend. (Keras's
    optimizer `use_ema` fails on JAX on a second `fit`; see DESIGN.md.)

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates (the
    num_updates rule of TensorFlow's ExponentialMovingAverage), so short runs do not
    average in the random initialization.
    """

    def __init__(self, model: keras.Model, decay: float, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.decay = float(decay)
        sources = [w for w in model.weights if "float" in str(w.dtype)]
        self._sources = lambda: sources  # a closure: Keras must not track them twice
        self.averages = [
            self.add_weight(shape=w.shape, initializer="zeros", trainable=False,
                            name=f"ema_{i}")
            for i, w in enumerate(sources)
        ]
        for a, w in zip(self.averages, sources):
            # A host copy: assigning `w` itself would share its buffer on JAX, which then
            # donates that one buffer twice to the jitted train step.
            a.assign(keras.ops.convert_to_numpy(w))
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="count")
        # Its variables exist now. Unbuilt, it would make Keras re-trace the whole trainer
        # before every train_on_batch (Trainer._symbolic_build); on torch that trace falls
        # back to running both passes for real when an augmentation op has no meta kernel.
        self.built = True

    def update(self):
        n = self.count
        d = keras.ops.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for a, w in zip(self.averages, self._sources()):
            a.assign(d * a + (1.0 - d) * keras.ops.stop_gradient(w))
        self.count.assign(n + 1.0)

    def copy_to_model(self):
        for a, w in zip(self.averages, self._sources()):
            w.assign(keras.ops.convert_to_numpy(a))


class SWA(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018): the mean of the model's trainable
    weights at the end of each epoch from `start_epoch` on. Call `finish` after training to
    load the average; BN statistics must then be recomputed (`recalibrate_batchnorm`)."""

    def __init__(self, model: keras.Model, start_epoch: int):
        super().__init__()
        self.target, self.start_epoch = model, start_epoch
        self.sum, self.n = None, 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.start_epoch:
            return
        values = [np.asarray(keras.ops.convert_to_numpy(w)) for w in self.target.trainable_weights]
        self.sum = values if self.sum is None else [s + v for s, v in zip(self.sum, values)]
        self.n += 1

    def finish(self) -> bool:
        if not self.n:
            return False
        for w, s in zip(self.target.trainable_weights, self.sum):
            w.assign(s / self.n)
        return True


def recalibrate_batchnorm(model: keras.Model, x: np.ndarray, batch_size: int = 128,
                          max_batches: int = 50):
    """Recompute BatchNorm moving statistics as the plain average over up to `max_batches`
    batches (momentum k/(k+1) at the k-th batch), as SWA requires: the averaged weights never
    produced the statistics the model holds."""
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    if not norms:
        return
    saved = [l.momentum for l in norms]
    for l in norms:
        # numpy, not ops.zeros_like: JAX's cannot take a Keras variable
        l.moving_mean.assign(np.zeros(l.moving_mean.shape, "float32"))
        l.moving_variance.assign(np.ones(l.moving_variance.shape, "float32"))
    for k, start in enumerate(range(0, min(len(x), batch_size * max_batches), batch_size)):
        for l in norms:
            l.momentum = k / (k + 1.0)
        model(x[start:start + batch_size], training=True)
    for l, m in zip(norms, saved):
        l.momentum = m


# ----------------------------------------------------------------------------- callbacks


def _state_variables(trainer: keras.Model, exclude=()):
    """What a checkpoint holds: every variable of `trainer` (models, weight averages, recipe
    state, the augmenters' random-generator states) except metrics (reset every epoch) and
    the models in `exclude` (a frozen teacher: it is saved once, as teacher.keras)."""
    skip = {id(v) for m in exclude for v in m.variables}
    skip |= {id(v) for m in trainer.metrics for v in m.variables}
    return [v for v in trainer.variables if id(v) not in skip]


def save_state(trainer: keras.Model, path, *, epoch: int, exclude=()):
    """Write the trainer's and its optimizer's state to `path` (.npz) atomically: a reader
    sees the previous file or the whole new one, never a part."""
    arrays = {f"var{i}": np.asarray(keras.ops.convert_to_numpy(v))
              for i, v in enumerate(_state_variables(trainer, exclude))}
    arrays.update({f"opt{i}": np.asarray(keras.ops.convert_to_numpy(v))
                   for i, v in enumerate(trainer.optimizer.variables)})
    arrays["epoch"] = np.asarray(epoch)
    path = str(path)
    tmp = path[:-len(".npz")] + ".partial.npz"
    with disk_errors(tmp), open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def state_bytes(trainer: keras.Model, exclude=()) -> int:
    """The size of one checkpoint of `trainer` (before zip overhead)."""
    variables = [*_state_variables(trainer, exclude), *trainer.optimizer.variables]
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
               for v in variables)


def _read_state(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}  # reads every array: a truncated file fails here


def load_state(trainer: keras.Model, path, *, exclude=()) -> int:
    """Restore what `save_state` wrote; returns the number of epochs it had completed.
    The trainer must be compiled; its optimizer is built here so its slots exist."""
    state = _read_state(path)
    if not trainer.optimizer.built:
        trainer.optimizer.build(trainer.trainable_variables)
    variables = _state_variables(trainer, exclude)
    opt_vars = trainer.optimizer.variables
    n_var = sum(k.startswith("var") for k in state)
    n_opt = sum(k.startswith("opt") for k in state)
    shapes_ok = n_var == len(variables) and n_opt == len(opt_vars) and all(
        tuple(state[f"var{i}"].shape) == tuple(v.shape) for i, v in enumerate(variables)) and all(
        tuple(state[f"opt{i}"].shape) == tuple(v.shape) for i, v in enumerate(opt_vars))
    if not shapes_ok:
        raise MentorError(
            f"checkpoint {path} does not fit this run's models and optimizer ({n_var} "
            f"variables saved, {len(variables)} here): it was written with another config. "
            "Resume with the config the run started with, or choose another --out.")
    for i, v in enumerate(variables):
        v.assign(state[f"var{i}"])
    for i, v in enumerate(opt_vars):
        v.assign(state[f"opt{i}"])
    return int(state["epoch"])


def checkpoint_files(directory) -> list:
    """Complete checkpoints in `directory`, oldest first."""
    if not os.path.isdir(str(directory)):
        return []
    names = sorted(f for f in os.listdir(str(directory))
                   if f.startswith("epoch-") and f.endswith(".npz") and ".partial." not in f)
    return [os.path.join(str(directory), f) for f in names]


def resume_from(trainer: keras.Model, directory, *, exclude=()) -> int:
    """Load the newest readable checkpoint in `directory`; return its epoch (0: none).
    A corrupt or truncated file is skipped, with a warning, for the one before it."""
    for path in reversed(checkpoint_files(directory)):
        try:
            epoch = load_state(trainer, path, exclude=exclude)
        except MentorError:
            raise
        except Exception as error:  # zipfile, EOF, ValueError…: whatever a torn file gives
            print(f"mentor: warning: checkpoint {path} is unreadable ({type(error).__name__}: "
                  f"{error}); trying the one before it", file=sys.stderr, flush=True)
            continue
        print(f"resuming from {path}: {epoch} epochs done, optimizer step "
              f"{int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))}", flush=True)
        return epoch
    return 0


def trim_history(path, epochs: int):
    """Drop rows of a CSVLogger file from epochs a resumed run will train again."""
    if not os.path.isfile(str(path)):
        return
    with open(str(path)) as f:
        lines = f.readlines()
    kept = lines[:1] + [row for row in lines[1:] if int(row.split(",", 1)[0]) < epochs]
    with open(str(path), "w") as f:
        f.writelines(kept)


class Checkpoints(keras.callbacks.Callback):
    """Every `every` epochs and after the last, the whole training state (save_state) to
    `<dir>/epoch-NNNN.npz`, written to a temporary name and renamed, keeping the newest
    `keep`."""

    def __init__(self, directory, every: int = 1, keep: int = 2, exclude=()):
        super().__init__()
        self.directory, self.every, self.keep = str(directory), max(1, every), max(1, keep)
        self.exclude = tuple(exclude)

    def on_epoch_end(self, epoch, logs=None):
        last = self.params is not None and epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        os.makedirs(self.directory, exist_ok=True)
        save_state(self.model, os.path.join(self.directory, f"epoch-{epoch + 1:04d}.npz"),
                   epoch=epoch + 1, exclude=self.exclude)
        for old in checkpoint_files(self.directory)[:-self.keep]:
            os.remove(old)


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


def fit_resumable(trainer: keras.Model, batches, *, epochs: int, per_epoch: int,
                  checkpoints=None, history=None, every: int = 1, keep: int = 2,
                  exclude=(), validation=None, callbacks=()):
    """`trainer.fit` over a run of epochs × per_epoch steps that survives being killed.

    With a `checkpoints` directory, the newest good checkpoint there is loaded first (model,
    optimizer, averages, recipe and random state) and training goes on from its epoch:
    `batches(start_step)` must return the data from that global step on (mentor's Batches
    do), so the order is the one an uninterrupted run sees. `history` (a CSV path) is
    appended to, minus rows of epochs trained again. Returns the epoch training started at.
    """
    done = resume_from(trainer, checkpoints, exclude=exclude) if checkpoints else 0
    cbs = [DivergenceGuard(checkpoints), LearningRateLog(), *callbacks]
    if checkpoints:
        if not trainer.optimizer.built:
            trainer.optimizer.build(trainer.trainable_variables)
        # keep + 1 checkpoints exist while the newest is written, then the final models
        check_free_space(checkpoints, (keep + 2) * state_bytes(trainer, exclude),
                         f"{keep} checkpoints of this run (train.keep_checkpoints)")
        cbs.append(StatusLog(checkpoints))
    if history:
        trim_history(history, done)
        cbs.append(keras.callbacks.CSVLogger(str(history), append=done > 0))
    if checkpoints:  # after the logger: a row is never missing for a saved epoch
        cbs.append(Checkpoints(checkpoints, every, keep, exclude))
    if done < epochs:
        trainer.fit(batches(done * per_epoch), epochs=epochs, initial_epoch=done,
                    steps_per_epoch=per_epoch, shuffle=False,
                    validation_data=trim_to_devices(validation),
                    validation_batch_size=eval_batch_size(), callbacks=cbs,
                    verbose=fit_verbosity())
    return done


def fit_student(trainer: keras.Model, teacher: keras.Model, train: ImageSet, val, run, cfg,
                *, seed: int, workers: int = 1) -> int:
    """What `consistency` and `distill` share: compile the teacher–student trainer, fit it
    resumably into run/checkpoints/student and history.csv (the frozen teacher left out of
    checkpoints), then load the weight average. Returns the number of steps."""
    from mentor.data.pipeline import Batches

    per_epoch, steps = total_steps(cfg, len(train))
    trainer.compile(optimizer=build_optimizer(cfg, steps),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    fit_resumable(
        trainer, lambda start: Batches(train, cfg.batch_size, steps=steps, seed=seed,
                                       start_step=start, workers=workers),
        epochs=cfg.epochs, per_epoch=per_epoch, checkpoints=run.checkpoints / "student",
        history=run.file("history.csv"), every=cfg.checkpoint_every,
        keep=cfg.keep_checkpoints, exclude=(teacher,),
        validation=(val.x, val.y) if val is not None else None)
    if trainer.ema is not None:
        trainer.ema.copy_to_model()
    return steps


class StatusLog(keras.callbacks.Callback):
    """Keeps the run's status.json at the stage ("teacher", "student", "baseline" or the
    main model) and epoch training has reached, so `mentor status` can say where a run is."""

    def __init__(self, checkpoints):
        super().__init__()
        self.run = run_of(checkpoints)
        stage = os.path.basename(os.path.normpath(str(checkpoints)))
        self.stage = "model" if stage == "checkpoints" else stage

    def on_epoch_end(self, epoch, logs=None):
        if self.run is not None:
            mark(self.run, "running", stage=self.stage, epoch=epoch + 1,
                 epochs=(self.params or {}).get("epochs"))


class LearningRateLog(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs (history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            opt = self.model.optimizer
            lr = opt.learning_rate
            if callable(getattr(opt, "_learning_rate", None)):
                lr = opt._learning_rate(opt.iterations)
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


def fit_verbosity() -> int:
    """A live progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def accuracy(model: keras.Model, data: ImageSet, batch_size: int = 256) -> float:
    logits = predict(model, data.x, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == data.y))
