"""Recipe `adamatch`: semi-supervised learning and (semi-supervised) domain adaptation in
one algorithm (Berthelot et al. 2021, "AdaMatch"), as the paper states it (DESIGN.md lists
where the keras-io example departs from it).

Each step sees a labeled source batch and a target batch `ratio` times larger, each in a
weak and a strong view:

1. pass 1: source and target, weak and strong, through the model in training mode;
   pass 2: the source alone, batch-norm on its own batch statistics, which are *not* kept;
   the source logits are z = λ·z₁ + (1 − λ)·z₂ with λ ~ U(0, 1) per element;
2. distribution alignment: p̃ = normalize(p_target_weak · p̄_source / p̄_target), with
   p̄_source a running average and p̄_target the mean over the last `target_window` batches,
   both held as variables (saved in checkpoints);
3. relative threshold c = τ · mean(max p_source_weak); hard pseudo-labels argmax p̃ where
   max p̃ ≥ c;
4. loss = CE(source weak) + CE(source strong) + μ(t)·mean(mask · CE(p̃, target strong))
   + L2, with μ(t) = ½ − ½cos(min(π, 2πt/T)) reaching 1 at half of training.

Modes: `uda` (labeled source, unlabeled target), `ssda` (plus target.labels_per_class
labeled target images, added to the source), `ssl` (one data set: labels_per_class labeled,
the rest unlabeled). SGD with Nesterov momentum, cosine decay, EMA weights for evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import keras
import numpy as np

from mentor.config import AdaMatchConfig, SupervisedConfig, dumps, to_dict
from mentor.data.imageset import ImageSet
from mentor.data.pipeline import PairedBatches, labeled_split, prepare
from mentor.errors import MentorError
from mentor.losses import (align_distribution, cross_entropy, interpolate_logits,
                           masked_pseudo_label_loss, relative_threshold, unlabeled_weight)
from mentor.models import count_params
from mentor.recipes.supervised import augment_layer, fit_classifier
from mentor.report import plot_history, write_report
from mentor.runs import recorded
from mentor.training import (WeightEMA, accuracy, build_for, build_optimizer,
                             check_same_classes, fit_resumable, l2_penalty, start_run)


@contextlib.contextmanager
def batch_norm_statistics_frozen(model: keras.Model):
    """Batch-norm layers normalize with their batch's statistics (training mode) but keep
    their moving averages: momentum 1 makes the update m·1 + x·0 = m exactly. (Restoring
    saved statistics in place after the pass breaks torch's autograd, DESIGN.md.) Python
    state, so it also holds inside a JAX or TensorFlow trace."""
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in norms]
    for l in norms:
        l.momentum = 1.0
    try:
        yield
    finally:
        for l, m in zip(norms, saved):
            l.momentum = m


class AdaMatchTrainer(keras.Model):
    """Wraps the classifier for training; only the classifier is the deliverable."""

    def __init__(self, classifier, weak, strong, *, num_classes: int, total_steps: int,
                 tau=0.9, source_momentum=0.999, target_window=128, l2=0.0,
                 ema_decay=0.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.classifier, self.weak, self.strong = classifier, weak, strong
        self.total_steps, self.tau, self.l2 = int(total_steps), float(tau), float(l2)
        self.source_momentum = float(source_momentum)
        uniform = keras.initializers.Constant(1.0 / num_classes)
        # Recipe state: non-trainable variables, so checkpoints hold them.
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step")
        self.source_mean = self.add_weight(shape=(num_classes,), initializer=uniform,
                                           trainable=False, name="source_mean")
        self.target_history = self.add_weight(shape=(target_window, num_classes),
                                              initializer=uniform, trainable=False,
                                              name="target_history")
        self.ema = WeightEMA(classifier, ema_decay, name="ema") if ema_decay else None
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in
                         ("source_loss", "target_loss", "mu", "mask_rate", "pseudo_acc")}
        self._stash = None

    def build(self, input_shape):
        pass  # the classifier arrives built

    def _view(self, layer, x):
        return layer(x, training=True) if layer is not None else keras.ops.cast(x, "float32")

    def call(self, x, training=False):
        if not isinstance(x, dict):  # validation and prediction: the plain classifier
            self._stash = None
            return self.classifier(x, training=False)
        source, target = x["source"], x["target"]
        n, m = keras.ops.shape(source)[0], keras.ops.shape(target)[0]
        source_views = keras.ops.concatenate([self._view(self.weak, source),
                                              self._view(self.strong, source)])
        target_views = keras.ops.concatenate([self._view(self.weak, target),
                                              self._view(self.strong, target)])
        z = self.classifier(keras.ops.concatenate([source_views, target_views]), training=True)
        with batch_norm_statistics_frozen(self.classifier):
            z_source_only = self.classifier(source_views, training=True)
        lam = keras.random.uniform(keras.ops.shape(z_source_only), seed=self.seed_generator)
        z_source = interpolate_logits(z[:2 * n], z_source_only, lam)
        self._stash = (z_source, z[2 * n:2 * n + m], z[2 * n + m:], x.get("target_labels"))
        return z_source[:n]  # the weak source view: the compiled accuracy metric's input

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._stash is None:  # validation: cross-entropy on labeled images
            return keras.ops.mean(cross_entropy(y, y_pred))
        z_source, z_target_weak, z_target_strong, target_labels = self._stash
        n = keras.ops.shape(y)[0]
        source_loss = (keras.ops.mean(cross_entropy(y, z_source[:n]))
                       + keras.ops.mean(cross_entropy(y, z_source[n:])))

        p_source = keras.ops.softmax(keras.ops.stop_gradient(z_source[:n]))
        p_target = keras.ops.softmax(keras.ops.stop_gradient(z_target_weak))
        source_mean = (self.source_momentum * self.source_mean
                       + (1.0 - self.source_momentum) * keras.ops.mean(p_source, axis=0))
        history = keras.ops.concatenate(
            [self.target_history[1:], keras.ops.mean(p_target, axis=0)[None]])
        p_pseudo = align_distribution(p_target, source_mean, keras.ops.mean(history, axis=0))
        threshold = relative_threshold(p_source, self.tau)
        per_example, mask = masked_pseudo_label_loss(p_pseudo, z_target_strong, threshold)
        target_loss = keras.ops.mean(per_example)
        mu = unlabeled_weight(self.step, self.total_steps)

        loss = source_loss + mu * target_loss
        if self.l2:
            loss = loss + self.l2 * l2_penalty(self.classifier)
        if self.losses:
            loss = loss + keras.ops.sum(self.losses)
        if training:
            self.source_mean.assign(source_mean)
            self.target_history.assign(history)
            self.step.assign(self.step + 1.0)
            if self.ema is not None:
                self.ema.update()
        t = self.trackers
        t["source_loss"].update_state(source_loss)
        t["target_loss"].update_state(target_loss)
        t["mu"].update_state(mu)
        t["mask_rate"].update_state(keras.ops.mean(mask))
        if target_labels is not None:  # monitoring only: it never touches the loss
            hits = keras.ops.argmax(p_pseudo, axis=-1) == keras.ops.cast(target_labels, "int32")
            t["pseudo_acc"].update_state(keras.ops.cast(hits, "float32"))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        result = super().compute_metrics(x, y, y_pred, sample_weight)
        if self._stash is None:  # validation: μ, mask rate… describe training steps only
            result = {k: v for k, v in result.items() if k not in self.trackers}
        return result


# ----------------------------------------------------------------------------- data


def split_by_mode(config: AdaMatchConfig, train: ImageSet):
    """(labeled source, target) for the configured mode."""
    from mentor.data.sources import load_source

    mode = config.mode
    if mode not in ("uda", "ssda", "ssl"):
        raise MentorError(f"mode must be \"uda\", \"ssda\" or \"ssl\", got {mode!r}.")
    if mode == "ssl":
        if config.labels_per_class < 1:
            raise MentorError("mode \"ssl\" needs labels_per_class ≥ 1: how many labeled images "
                              "per class to keep from data.train (the rest are unlabeled).")
        return labeled_split(train, config.labels_per_class, config.seed)
    if not config.target.train:
        raise MentorError(f"mode {mode!r} needs target.train: the images of the domain to "
                          "adapt to (their labels, if any, are used for monitoring only).")
    size, channels = train.image_shape[0], train.image_shape[2]
    target = prepare(load_source(config.target.train, image_size=size), size, channels)
    if len(target) == 0:
        raise MentorError(f"target.train {config.target.train} holds no images.")
    check_same_classes(train, target)
    if mode == "ssda":
        if config.target.labels_per_class < 1:
            raise MentorError("mode \"ssda\" needs target.labels_per_class ≥ 1.")
        labeled, target = labeled_split(target, config.target.labels_per_class, config.seed)
        train = ImageSet(np.concatenate([train.x, labeled.x]),
                         np.concatenate([train.y, labeled.y]), list(train.class_names),
                         f"{train.name}+{labeled.name}")
    return train, target


def schedule(config: AdaMatchConfig, target: ImageSet) -> tuple[int, int]:
    """(steps per epoch, total steps): an epoch is one pass over the target images unless
    train.steps_per_epoch says otherwise; μ(t) is computed from the same total."""
    t = config.train
    per_epoch = t.steps_per_epoch or math.ceil(len(target) / (t.batch_size * config.loss.ratio))
    return per_epoch, per_epoch * t.epochs


# ----------------------------------------------------------------------------- run


@recorded
def run(config: AdaMatchConfig, out, *, name: str = "adamatch") -> dict:
    start = time.time()
    run_dir, train, val, test = start_run(config, out, name)
    source, target = split_by_mode(config, train)
    print(f"adamatch ({config.mode}): {len(source)} labeled source images, {len(target)} "
          f"unlabeled target images, {len(test)} target test images", flush=True)
    per_epoch, steps = schedule(config, target)
    t, c = config.train, config.loss
    classifier = build_for(config.model, source)
    trainer = AdaMatchTrainer(
        classifier, augment_layer(config.weak, config.seed),
        augment_layer(config.strong, config.seed + 1), num_classes=source.num_classes,
        total_steps=steps, tau=c.tau, source_momentum=c.source_momentum,
        target_window=c.target_window, l2=c.l2, ema_decay=t.ema, seed=config.seed + 2)
    trainer.compile(optimizer=build_optimizer(t, steps),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    print(f"model: {config.model.name} ({count_params(classifier, trainable_only=True):,} "
          f"parameters), {steps} steps, source batch {t.batch_size}, target batch "
          f"{t.batch_size * c.ratio}", flush=True)
    fit_resumable(
        trainer, lambda s: PairedBatches(source, target, t.batch_size, ratio=c.ratio,
                                         steps=steps, seed=config.seed, start_step=s,
                                         target_labels=True, workers=config.data.workers),
        epochs=t.epochs, per_epoch=per_epoch, checkpoints=run_dir.checkpoints,
        history=run_dir.file("history.csv"), every=t.checkpoint_every,
        keep=t.keep_checkpoints, validation=(val.x, val.y) if val is not None else None)
    if trainer.ema is not None:
        trainer.ema.copy_to_model()
    run_dir.save_model(classifier, "model.keras")

    metrics = {"recipe": "adamatch", "mode": config.mode, "backend": keras.backend.backend(),
               "steps": steps, "target_acc": accuracy(classifier, test),
               "source_acc": accuracy(classifier, val if val is not None else source)}
    if config.baseline.enabled:
        baseline = build_for(config.model, source)
        print(f"baseline: the same model on the {len(source)} labeled images alone, {steps} "
              "steps", flush=True)
        base_train = SupervisedConfig(seed=config.seed, data=config.data, model=config.model,
                                      augment=config.weak,
                                      # the recipe's steps per epoch written out: the same steps
                                      train=dataclasses.replace(t, steps_per_epoch=per_epoch))
        trainer_b, _ = fit_classifier(base_train, baseline, source, val, run=run_dir,
                                      prefix="baseline_", l2=c.l2)
        if trainer_b.ema is not None:
            trainer_b.ema.copy_to_model()
        run_dir.save_model(baseline, "baseline.keras")
        metrics["source_only_target_acc"] = accuracy(baseline, test)
    metrics.update(params=count_params(classifier, trainable_only=True),
                   source_images=len(source), target_images=len(target),
                   test_images=len(test))

    figures = [("Training: source and target losses, μ, mask rate, pseudo-label accuracy",
                plot_history(run_dir.file("history.csv"), run_dir.file("curves.png"),
                             name).name)]
    if run_dir.file("baseline_history.csv").exists():
        figures.append(("Baseline (labeled images only)", plot_history(
            run_dir.file("baseline_history.csv"), run_dir.file("baseline_curves.png"),
            "baseline").name))
    metrics["seconds"] = round(time.time() - start, 1)
    write_report(run_dir.file("report.html"), f"{name}: AdaMatch ({config.mode})", metrics,
                 figures, dumps(to_dict(config)))
    run_dir.write_metrics(metrics)
    return metrics

