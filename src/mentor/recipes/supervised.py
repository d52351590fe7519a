"""Recipe `supervised`: a classifier trained on labeled images.

It is the teacher trainer of `consistency` and `distill`, and the source-only and
labels-only baseline of `adamatch` and `distill`. Augmentation runs on the backend inside
the train step (per image); evaluation can use an exponential moving average (EMA) of the
weights or stochastic weight averaging (SWA), as the seeds' full-scale teachers did.

    from mentor.config import load_config
    from mentor.recipes import supervised
    config, name = load_config("demo")
    metrics = supervised.run(config, "runs/demo")
"""

from __future__ import annotations

import pathlib
import time

import keras
import numpy as np

from mentor import augment
from mentor.config import AugmentConfig, SupervisedConfig, to_dict, dumps
from mentor.data.pipeline import Batches
from mentor.errors import MentorError
from mentor.models import count_params, load_model
from mentor.report import plot_history, write_report
from mentor.runs import RunDir, recorded
from mentor.training import (SWA, WeightEMA, accuracy, build_for, build_optimizer,
                             check_model_matches, fit_resumable, l2_penalty,
                             recalibrate_batchnorm, start_run, total_steps)


def augment_layer(cfg: AugmentConfig, seed: int) -> keras.layers.Layer | None:
    if cfg.kind == "none":
        return None
    if cfg.kind == "weak":
        return augment.WeakAugment(flip=cfg.flip, translate=cfg.translate, seed=seed)
    if cfg.kind == "strong":
        return augment.StrongAugment(num_ops=cfg.num_ops, magnitude=cfg.magnitude,
                                     flip=cfg.flip, translate=cfg.translate, seed=seed)
    raise MentorError(f"augment.kind must be \"none\", \"weak\" or \"strong\", got {cfg.kind!r}.")


class SupervisedTrainer(keras.Model):
    """Augment (training only) → classifier → cross-entropy, with an optional weight EMA.

    Only `classifier` is the deliverable; this wrapper exists for training and holds its
    state (EMA, augmentation seed) so that checkpoints capture all of it.
    """

    def __init__(self, classifier: keras.Model, augmenter=None, ema_decay: float = 0.0,
                 label_smoothing: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)  # an L2 loss on kernels (AdaMatch's baseline); 0 for the rest
        self.classifier = classifier
        self.augmenter = augmenter
        self.ema = WeightEMA(classifier, ema_decay, name="ema") if ema_decay else None
        self.label_smoothing = label_smoothing

    def build(self, input_shape):
        pass  # the classifier arrives built; augmenters have no weights to create

    def call(self, x, training=False):
        if training and self.augmenter is not None:
            x = self.augmenter(x, training=True)
        return self.classifier(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        n = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.one_hot(keras.ops.cast(y, "int32"), n)
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / n
        loss = keras.ops.mean(keras.ops.categorical_crossentropy(labels, y_pred, from_logits=True))
        if self.l2:
            loss = loss + self.l2 * l2_penalty(self.classifier)
        if self.losses:  # layer regularizers; weight decay itself lives in the optimizer
            loss = loss + keras.ops.sum(self.losses)
        if training and self.ema is not None:
            # The average lags the weights by one step; at decay ≥ 0.99 that is noise.
            self.ema.update()
        return loss


def fit_classifier(config: SupervisedConfig, classifier: keras.Model, train, val=None, *,
                   run: RunDir | None = None, prefix: str = "", l2: float = 0.0):
    """Train `classifier` in place on `train`; return (trainer, optimizer steps taken).

    Other recipes call this for their teachers and baselines, with a `prefix` ("teacher_")
    that keeps their history and checkpoints apart from the main model's.
    """
    t = config.train
    per_epoch, steps = total_steps(t, len(train))
    trainer = SupervisedTrainer(classifier, augment_layer(config.augment, config.seed),
                                ema_decay=t.ema, label_smoothing=t.label_smoothing, l2=l2)
    trainer.compile(optimizer=build_optimizer(t, steps),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    callbacks = []
    if t.schedule == "plateau":
        if val is None:
            raise MentorError("train.schedule = \"plateau\" needs validation data: set data.val_fraction > 0.")
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=t.plateau_factor, patience=t.plateau_patience, verbose=1))
    if t.early_stopping:
        if val is None:
            raise MentorError("train.early_stopping needs validation data: set data.val_fraction > 0.")
        callbacks.append(keras.callbacks.EarlyStopping(
            "val_acc", patience=t.early_stopping, restore_best_weights=True, verbose=1))
    swa = SWA(classifier, max(1, int(t.swa_start * t.epochs))) if t.swa_start else None
    if swa:
        callbacks.append(swa)
    fit_resumable(
        trainer, lambda start: Batches(train, t.batch_size, steps=steps, seed=config.seed,
                                       start_step=start, workers=config.data.workers),
        epochs=t.epochs, per_epoch=per_epoch,
        checkpoints=(run.checkpoints / prefix.rstrip("_")) if run is not None else None,
        history=run.file(f"{prefix}history.csv") if run is not None else None,
        every=t.checkpoint_every, keep=t.keep_checkpoints,
        validation=(val.x, val.y) if val is not None else None, callbacks=callbacks)
    done = int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))
    if swa and swa.finish():
        recalibrate_batchnorm(classifier, train.x, t.batch_size)
    return trainer, done


def teacher_file(path) -> pathlib.Path:
    """A teacher named by a .keras path or by a mentor run directory."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return path
    for name in ("model.keras", "student.keras", "teacher.keras"):
        if (path / name).is_file():
            return path / name
    raise MentorError(f"{path} is a directory without model.keras (or student.keras): give "
                      "the .keras file itself, or the directory of a completed mentor run.")


def get_teacher(config, train, val, run: RunDir, *, unsafe: bool = False):
    """The teacher of `consistency` and `distill`: loaded from teacher.path, else trained here
    by `supervised` with the [teacher.*] sections and saved as teacher.keras at once (so a
    resumed run does not train it again). Returns (teacher, steps it trained here, its
    initial weights or None)."""
    t = config.teacher
    if t.path or (run is not None and run.file("teacher.keras").is_file()):
        path = teacher_file(t.path) if t.path else run.file("teacher.keras")
        teacher = load_model(path, safe_mode=not unsafe)
        check_model_matches(teacher, train)
        if not t.path:
            print(f"teacher: loaded {path}, trained earlier in this run", flush=True)
        return teacher, 0, None
    teacher = build_for(t.model, train)
    initial = teacher.get_weights()
    print(f"teacher: training {t.model.name} ({count_params(teacher, trainable_only=True):,} "
          "parameters) with labels", flush=True)
    teacher_config = SupervisedConfig(seed=config.seed, data=config.data, model=t.model,
                                      augment=t.augment, train=t.train)
    trainer, steps = fit_classifier(teacher_config, teacher, train, val, run=run,
                                       prefix="teacher_")
    if trainer.ema is not None:
        trainer.ema.copy_to_model()
    if run is not None:
        run.save_model(teacher, "teacher.keras")
    return teacher, steps, initial


@recorded
def run(config: SupervisedConfig, out, *, name: str = "supervised") -> dict:
    """Train, evaluate and write the run directory; return metrics.json's content."""
    start = time.time()
    run_dir, train, val, test = start_run(config, out, name)
    classifier = build_for(config.model, train)
    trainer, steps = fit_classifier(config, classifier, train, val, run=run_dir)

    metrics = {"recipe": "supervised", "backend": keras.backend.backend(), "steps": steps}
    if trainer.ema is not None:
        metrics["test_acc_raw"] = accuracy(classifier, test)
        trainer.ema.copy_to_model()
    metrics["test_acc"] = accuracy(classifier, test)
    if val is not None:
        metrics["val_acc"] = accuracy(classifier, val)
    metrics.update(params=count_params(classifier, trainable_only=True), train_images=len(train),
                   val_images=len(val) if val else 0, test_images=len(test))
    run_dir.save_model(classifier, "model.keras")

    figures = [("Training curves", plot_history(run_dir.file("history.csv"),
                                                run_dir.file("curves.png"), name).name)]
    if trainer.augmenter is not None:
        shown = train.x[np.random.default_rng(config.seed).choice(len(train), 8, replace=False)]
        views = {"clean": shown, config.augment.kind: keras.ops.convert_to_numpy(
            trainer.augmenter(shown, training=True))}
        figures.append(("Augmentation samples",
                        augment.sample_grid(views, run_dir.file("augment.png")).name))
    metrics["seconds"] = round(time.time() - start, 1)
    write_report(run_dir.file("report.html"), f"{name}: supervised", metrics, figures,
                 dumps(to_dict(config)))
    run_dir.write_metrics(metrics)
    return metrics
