"""The trainer base every recipe builds on, and the plain labelled step.

A recipe's trainer is a `keras.Model` around the classifier it delivers, so Keras's `fit`,
`evaluate` and callbacks work on torch, JAX and TensorFlow alike. The recipe writes two
things: `call` (its views and forward passes; what the loss needs beyond the prediction it
hands over with `keep`) and `objective` (the loss of one batch). The base owns the rest:
weight decay as an L2 term, the models' own regularisation losses (a `compute_loss`
override must add them itself, or they are dropped), the weight average (EMA), and
`finish`, which loads that average into the classifier.

`ClassifierTrainer` is the plain labelled step: `supervised` trains with it, and so do
teachers and baselines of the other recipes (`train_classifier`).
"""

from __future__ import annotations

import keras

from mentor import augment
from mentor.core.averaging import SWA, WeightEMA, recalibrate_batchnorm
from mentor.core.fit import train
from mentor.core.optim import l2_penalty, total_steps
from mentor.data.pipeline import Batches
from mentor.errors import MentorError
from mentor.run_folders import Stage


class _Kept:
    """A plain holder: Keras would wrap a dict attribute of a model in a tracked one."""

    values: dict = {}


class Trainer(keras.Model):
    """Trains `classifier`; holds what training needs besides it (views, a teacher, recipe
    state) so that checkpoints capture all of it."""

    def __init__(self, classifier: keras.Model, *, ema: float = 0.0, l2: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.l2 = float(l2)  # coupled weight decay: l2 · ½‖kernels‖² in the loss
        self.ema = WeightEMA(classifier, ema, name="ema") if ema else None
        self._kept = _Kept()

    def build(self, input_shape):
        pass  # the models arrive built; views and states create their variables up front

    def keep(self, **values):
        """Hand values from `call` to `objective`: Keras calls compute_loss right after
        call in the same step (and the same trace on JAX and TensorFlow)."""
        self._kept.values = values

    @property
    def kept(self) -> dict:
        return self._kept.values

    def objective(self, y, y_pred, training: bool):
        """The recipe's loss for one batch, a scalar."""
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.objective(y, y_pred, training)
        if self.l2:
            loss = loss + self.l2 * l2_penalty(self.classifier)
        if self.losses:  # layer regularizers; decoupled weight decay lives in the optimizer
            loss = loss + keras.ops.sum(self.losses)
        if training and self.ema is not None:
            # The average lags the weights by one step; at decay ≥ 0.99 that is noise.
            self.ema.update()
        return loss

    def finish(self) -> keras.Model:
        """The classifier to evaluate and save: the weight average when there is one."""
        if self.ema is not None:
            self.ema.copy_to_model()
        return self.classifier


class ClassifierTrainer(Trainer):
    """Augment (training only) → classifier → cross-entropy with optional label smoothing."""

    def __init__(self, classifier, *, augmenter=None, label_smoothing: float = 0.0,
                 ema: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(classifier, ema=ema, l2=l2, **kwargs)
        self.augmenter = augmenter
        self.label_smoothing = float(label_smoothing)

    def call(self, x, training=False):
        if training and self.augmenter is not None:
            x = self.augmenter(x, training=True)
        return self.classifier(x, training=training)

    def objective(self, y, y_pred, training):
        n = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.one_hot(keras.ops.cast(y, "int32"), n)
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / n
        return keras.ops.mean(keras.ops.categorical_crossentropy(labels, y_pred,
                                                                 from_logits=True))


def train_classifier(classifier: keras.Model, train_set, val, stage: Stage, *, augment_cfg,
                     train_cfg, seed: int, workers: int = 0, l2: float = 0.0,
                     per_epoch: int = 0, finish: bool = True,
                     callbacks=()) -> ClassifierTrainer:
    """Train `classifier` in place on labelled images, as the run's main model, a teacher or
    a baseline (`stage` says which). `per_epoch` overrides the schedule's steps per epoch
    (AdaMatch's baseline takes the recipe's). Plateau schedules and early stopping watch the
    validation set; SWA ends with batch-norm re-estimated on the training images."""
    t = train_cfg
    default_per_epoch, steps = total_steps(t, len(train_set))
    if per_epoch:
        steps = per_epoch * t.epochs
    per_epoch = per_epoch or default_per_epoch
    trainer = ClassifierTrainer(classifier, augmenter=augment.from_config(augment_cfg, seed),
                                label_smoothing=t.label_smoothing, ema=t.ema, l2=l2)
    callbacks = list(callbacks)
    if t.schedule == "plateau":
        if val is None:
            raise MentorError("train.schedule = \"plateau\" needs validation data: set "
                              "data.val_fraction > 0.")
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=t.plateau_factor, patience=t.plateau_patience, verbose=1))
    if t.early_stopping:
        if val is None:
            raise MentorError("train.early_stopping needs validation data: set "
                              "data.val_fraction > 0.")
        callbacks.append(keras.callbacks.EarlyStopping(
            "val_acc", patience=t.early_stopping, restore_best_weights=True, verbose=1))
    swa = SWA(classifier, max(1, int(t.swa_start * t.epochs))) if t.swa_start else None
    if swa:
        callbacks.append(swa)
    trainer.steps = train(
        trainer, lambda start: Batches(train_set, t.batch_size, steps=steps, seed=seed,
                                       start_step=start, workers=workers),
        stage, t, per_epoch=per_epoch, steps=steps,
        validation=(val.x, val.y) if val is not None else None, callbacks=callbacks,
        finish=False)
    if swa and swa.finish():
        recalibrate_batchnorm(classifier, train_set.x, t.batch_size)
    if finish:
        trainer.finish()
    return trainer
