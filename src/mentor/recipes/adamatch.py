"""Recipe `adamatch`: semi-supervised learning and (semi-supervised) domain adaptation in
one algorithm (Berthelot et al. 2021, "AdaMatch"), as the paper states it. Where keras-io's
AdaMatch example departs from it: its second pass runs batch norm in inference mode, its
weight decay is dropped, it uses Adam at lr 0.03, and μ never reaches 1.

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

import math
from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np

from mentor import augment
from mentor.compat import batch_norm_statistics_frozen
from mentor.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    Section,
    TrainConfig,
    at_least,
    seed_field,
    unit,
)
from mentor.core.baseline import train_baseline
from mentor.core.fit import train
from mentor.core.lifecycle import accuracy, build_for, history_figures
from mentor.core.monitor import HeldOutAccuracy
from mentor.core.recipe import Demo, Outcome, Recipe, Started
from mentor.core.trainer import Trainer
from mentor.data.imageset import ImageSet
from mentor.data.pipeline import PairedBatches, concat_images
from mentor.data.prepare import prepare
from mentor.data.splits import check_same_classes, labeled_split, run_image_size
from mentor.errors import MentorError, UsageError
from mentor.losses import (
    align_distribution,
    cross_entropy,
    interpolate_logits,
    masked_pseudo_label_loss,
    relative_threshold,
    unlabeled_weight,
)
from mentor.models import count_params
from mentor.report import bars, curves, sample_grid
from mentor.verdict import percent, points

# ----------------------------------------------------------------------------- config


@dataclass
class TargetConfig(Section):
    """The images AdaMatch must classify. Their labels, when a source has them, are used
    for monitoring only (pseudo-label accuracy), never for training, except the
    `labels_per_class` labeled ones of mode "ssda"."""
    train: str = ""  # unlabeled target images (uda, ssda); unused in ssl
    labels_per_class: int = at_least(0, 0)  # ssda: labeled target images per class


@dataclass
class AdaMatchLossConfig(Section):
    # relative confidence threshold: τ · mean max p of weak source views
    tau: float = unit(0.9, low_open=True, high_open=False)
    ratio: int = at_least(3, 1)  # target (unlabeled) batch = ratio × source batch (paper: 3)
    source_momentum: float = unit(0.999)  # running average of the source weak softmax
    target_window: int = at_least(128, 1)  # batches the target weak softmax is averaged over
    # The papers' weight decay: an L2 term wd·‖w‖²/2 on kernels in the loss (FixMatch and
    # AdaMatch code), so SGD's momentum carries it; keras-io's example silently dropped it.
    l2: float = at_least(0.0005, 0)


@dataclass
class SourceOnlyConfig(Section):
    """The same model, steps, optimizer and weak view on the labeled images alone."""
    enabled: bool = False  # also train it, so metrics.json has source_only_target_acc


@dataclass
class AdaMatchConfig(Section):
    recipe: str = "adamatch"
    description: str = ""
    seed: int = seed_field()
    mode: Literal["uda", "ssda", "ssl"] = "uda"
    # data.train: the labeled source (ssl: the one data set); data.test: target-domain test
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    labels_per_class: int = at_least(0, 0)  # ssl: labeled images per class of data.train
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="wrn28_2"))
    weak: AugmentConfig = field(default_factory=lambda: AugmentConfig(kind="weak"))
    strong: AugmentConfig = field(default_factory=lambda: AugmentConfig(kind="strong"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        optimizer="sgd", learning_rate=0.03, momentum=0.9, weight_decay=0.0, ema=0.999))
    loss: AdaMatchLossConfig = field(default_factory=AdaMatchLossConfig)
    baseline: SourceOnlyConfig = field(default_factory=SourceOnlyConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def check(self):
        if self.mode == "ssl" and self.labels_per_class < 1:
            raise UsageError("mode \"ssl\" needs labels_per_class ≥ 1: how many labeled images "
                             "per class to keep from data.train (the rest are unlabeled).")
        if self.mode in ("uda", "ssda") and not self.target.train:
            raise UsageError(f"mode {self.mode!r} needs target.train: the images of the "
                             "domain to adapt to (their labels, if any, are used for "
                             "monitoring only).")
        if self.mode == "ssda" and self.target.labels_per_class < 1:
            raise UsageError("mode \"ssda\" needs target.labels_per_class ≥ 1: how many "
                             "labeled target images per class join the source.")
        _check_mode_keys(self)  # what a mode lacks says more than what it ignores


# The keys each AdaMatch mode reads, of those that only some modes read: set in a mode that
# does not read it (to anything but its default), a key would be silently ignored.
ADAMATCH_MODE_KEYS = {"uda": {"target.train"},
                      "ssda": {"target.train", "target.labels_per_class"},
                      "ssl": {"labels_per_class"}}


def _get_dotted(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def _check_mode_keys(config: "AdaMatchConfig"):
    default = AdaMatchConfig()
    reads = ADAMATCH_MODE_KEYS[config.mode]
    for key in sorted(set().union(*ADAMATCH_MODE_KEYS.values()) - reads):
        if _get_dotted(config, key) != _get_dotted(default, key):
            modes = [m for m, keys in ADAMATCH_MODE_KEYS.items() if key in keys]
            raise UsageError(
                f"config key {key!r} is not read in mode {config.mode!r}, which reads "
                f"{', '.join(sorted(reads))}; remove it, or choose a mode that reads it "
                f"({', '.join(repr(m) for m in modes)}).")


# ----------------------------------------------------------------------------- data


def split_by_mode(config: AdaMatchConfig, train: ImageSet):
    """(labeled source, target) for the configured mode."""
    from mentor.data.sources import load_source

    mode = config.mode  # the config's load checked what each mode needs
    if mode == "ssl":
        return labeled_split(train, config.labels_per_class, config.seed)
    size, channels = run_image_size(config.data, train), train.image_shape[2]
    target = prepare(load_source(config.target.train, image_size=size, stream=config.data.stream,
                                 workers=config.data.workers), size, channels)
    if len(target) == 0:
        raise MentorError(f"target.train {config.target.train} holds no images.")
    check_same_classes(train, target)
    if mode == "ssda":
        labeled, target = labeled_split(target, config.target.labels_per_class, config.seed)
        train = ImageSet(concat_images(train.x, labeled.x),
                         np.concatenate([train.y, labeled.y]), list(train.class_names),
                         f"{train.name}+{labeled.name}")
    return train, target


def schedule(config: AdaMatchConfig, target: ImageSet) -> tuple[int, int]:
    """(steps per epoch, total steps): an epoch is one pass over the target images unless
    train.steps_per_epoch says otherwise; μ(t) is computed from the same total."""
    t = config.train
    per_epoch = t.steps_per_epoch or math.ceil(len(target) / (t.batch_size * config.loss.ratio))
    return per_epoch, per_epoch * t.epochs


# ----------------------------------------------------------------------------- loss


class AdaMatchTrainer(Trainer):
    """Weak and strong views of a source and a target batch, two passes, and the AdaMatch
    loss. Recipe state (step, the class averages of distribution alignment) lives in
    non-trainable variables, so checkpoints hold it."""

    def __init__(self, classifier, *, weak, strong, loss: AdaMatchLossConfig, num_classes: int,
                 total_steps: int, ema: float = 0.0, seed: int = 0, **kwargs):
        super().__init__(classifier, ema=ema, l2=loss.l2, **kwargs)
        self.weak, self.strong = weak, strong
        self.total_steps, self.tau = int(total_steps), float(loss.tau)
        self.source_momentum = float(loss.source_momentum)
        uniform = keras.initializers.Constant(1.0 / num_classes)
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step")
        self.source_mean = self.add_weight(shape=(num_classes,), initializer=uniform,
                                           trainable=False, name="source_mean")
        self.target_history = self.add_weight(shape=(loss.target_window, num_classes),
                                              initializer=uniform, trainable=False,
                                              name="target_history")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in
                         ("source_loss", "target_loss", "mu", "mask_rate", "pseudo_acc")}

    def view(self, layer, x):
        """`layer`'s training view of x (the images as floats when there is no layer)."""
        return layer(x, training=True) if layer is not None else keras.ops.cast(x, "float32")

    def call(self, x, training=False):
        if not isinstance(x, dict):  # validation and prediction: the plain classifier
            self.keep()
            return self.classifier(x, training=False)
        source, target = x["source"], x["target"]
        n, m = keras.ops.shape(source)[0], keras.ops.shape(target)[0]
        source_views = keras.ops.concatenate([self.view(self.weak, source),
                                              self.view(self.strong, source)])
        target_views = keras.ops.concatenate([self.view(self.weak, target),
                                              self.view(self.strong, target)])
        z = self.classifier(keras.ops.concatenate([source_views, target_views]), training=True)
        with batch_norm_statistics_frozen(self.classifier):
            z_source_only = self.classifier(source_views, training=True)
        lam = keras.random.uniform(keras.ops.shape(z_source_only), seed=self.seed_generator)
        z_source = interpolate_logits(z[:2 * n], z_source_only, lam)
        self.keep(z_source=z_source, z_target_weak=z[2 * n:2 * n + m],
                  z_target_strong=z[2 * n + m:], target_labels=x.get("target_labels"))
        return z_source[:n]  # the weak source view: the compiled accuracy metric's input

    def objective(self, y, y_pred, training):
        if not self.kept:  # validation: cross-entropy on labeled images
            return keras.ops.mean(cross_entropy(y, y_pred))
        k = self.kept
        z_source, target_labels = k["z_source"], k["target_labels"]
        n = keras.ops.shape(y)[0]
        source_loss = (keras.ops.mean(cross_entropy(y, z_source[:n]))
                       + keras.ops.mean(cross_entropy(y, z_source[n:])))

        p_source = keras.ops.softmax(keras.ops.stop_gradient(z_source[:n]))
        p_target = keras.ops.softmax(keras.ops.stop_gradient(k["z_target_weak"]))
        source_mean = (self.source_momentum * self.source_mean
                       + (1.0 - self.source_momentum) * keras.ops.mean(p_source, axis=0))
        history = keras.ops.concatenate(
            [self.target_history[1:], keras.ops.mean(p_target, axis=0)[None]])
        p_pseudo = align_distribution(p_target, source_mean, keras.ops.mean(history, axis=0))
        threshold = relative_threshold(p_source, self.tau)
        per_example, mask = masked_pseudo_label_loss(p_pseudo, k["z_target_strong"], threshold)
        target_loss = keras.ops.mean(per_example)
        mu = unlabeled_weight(self.step, self.total_steps)
        if training:
            self.source_mean.assign(source_mean)
            self.target_history.assign(history)
            self.step.assign(self.step + 1.0)
        t = self.trackers
        t["source_loss"].update_state(source_loss)
        t["target_loss"].update_state(target_loss)
        t["mu"].update_state(mu)
        t["mask_rate"].update_state(keras.ops.mean(mask))
        if target_labels is not None:  # monitoring only: it never touches the loss
            hits = keras.ops.argmax(p_pseudo, axis=-1) == keras.ops.cast(target_labels, "int32")
            t["pseudo_acc"].update_state(keras.ops.cast(hits, "float32"))
        return source_loss + mu * target_loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        result = super().compute_metrics(x, y, y_pred, sample_weight)
        if not self.kept:  # validation: μ, mask rate… describe training steps only
            result = {k: v for k, v in result.items() if k not in self.trackers}
        return result


# ----------------------------------------------------------------------------- run

_CURVE_IMAGES = 1000  # a point of the target curve to ±1.6 accuracy points (binomial
# standard error at 50 %), for about 0.5 s per epoch of a small CNN on a CPU


def target_curve(test: ImageSet, seed: int):
    """A factory of HeldOutAccuracy callbacks on a seeded subset of the target test images
    (`.images` says how many), one per training stage."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(test))[:_CURVE_IMAGES])

    def make():
        return HeldOutAccuracy(test.x[rows], test.y[rows], "target_acc")

    make.images = len(rows)
    return make



def train_model(run: Started) -> Outcome:
    config, run_dir, train_set, val, test = run.config, run.run_dir, run.train, run.val, run.test
    source, target = split_by_mode(config, train_set)
    t, c = config.train, config.loss
    if t.batch_size * c.ratio > len(target):
        raise MentorError(
            f"the target batch, train.batch_size × loss.ratio = {t.batch_size * c.ratio}, is "
            f"larger than the {len(target)} target images: each batch would repeat images. "
            "Lower train.batch_size or loss.ratio, or add target images.")
    print(f"adamatch ({config.mode}): {len(source)} labeled source images, {len(target)} "
          f"unlabeled target images, {len(test)} target test images", flush=True)
    per_epoch, steps = schedule(config, target)
    classifier = build_for(config.model, source)
    trainer = AdaMatchTrainer(
        classifier, weak=augment.from_config(config.weak, config.seed),
        strong=augment.from_config(config.strong, config.seed + 1), loss=c,
        num_classes=source.num_classes, total_steps=steps, ema=t.ema, seed=config.seed + 2)
    print(f"model: {config.model.name} ({count_params(classifier, trainable_only=True):,} "
          f"parameters), {steps} steps, source batch {t.batch_size}, target batch "
          f"{t.batch_size * c.ratio}", flush=True)
    curve = target_curve(test, config.seed)
    stage = run_dir.stage("model")
    taken = train(  # fewer than `steps` when a callback stopped the stage early
        trainer, lambda s: PairedBatches(source, target, t.batch_size, ratio=c.ratio,
                                         steps=steps, seed=config.seed, start_step=s,
                                         target_labels=True, workers=config.data.workers),
        stage, t, per_epoch=per_epoch, steps=steps,
        validation=(val.x, val.y) if val is not None else None,
        callbacks=[curve()])
    run_dir.save_model(classifier, "model.keras")

    metrics = {"mode": config.mode, "steps": taken, "target_acc": accuracy(classifier, test),
               "source_acc": accuracy(classifier, val if val is not None else source)}
    baseline_stage = None
    if config.baseline.enabled:
        baseline, baseline_stage = train_baseline(
            run_dir, config.model, source, val, augment_cfg=config.weak, train_cfg=t,
            seed=config.seed, workers=config.data.workers, l2=c.l2, per_epoch=per_epoch,
            callbacks=[curve()])
        metrics["source_only_target_acc"] = accuracy(baseline, test)
    metrics.update(params=count_params(classifier, trainable_only=True),
                   source_images=len(source), target_images=len(target),
                   test_images=len(test))

    alone = "labeled images" if config.mode == "ssl" else "labeled source"
    figures = []
    if "source_only_target_acc" in metrics:
        figures.append((f"Target test accuracy: AdaMatch against the same model trained on "
                        f"the {alone} alone", bars(
                            [("source only", metrics["source_only_target_acc"], ""),
                             ("AdaMatch", metrics["target_acc"], "")],
                            run_dir.file("accuracy.png"), ylabel="target test accuracy",
                            colors=("#aaa", "#1f77b4")).name))
    figures.append((f"Target test accuracy over training ({curve.images:,} seeded test "
                    "images, live weights; the final numbers above use the whole test set"
                    + (" and the EMA weights" if t.ema else "") + ")", curves(
                        {"AdaMatch": stage.history, "source only": getattr(
                            baseline_stage, "history", None)}, "target_acc",
                        run_dir.file("target_accuracy.png"),
                        ylabel="target test accuracy").name))
    source_names = {"val_acc": "source validation accuracy",
                    "acc": "source training accuracy (weak + strong views)"}
    figures += history_figures(run_dir, [
        ("Training: the objective (source CE + μ · target pseudo-label loss) and its parts, "
         "accuracies (target test accuracy in green), μ, mask rate", stage,
         {"objective": "training objective and its parts", "labels": source_names}),
        (f"Baseline: the same model on the {alone} alone", baseline_stage,
         {"labels": {"val_acc": "source validation accuracy"}})])
    pick = np.random.default_rng(config.seed)
    shown_s = source.x[pick.choice(len(source), 8, replace=False)]
    shown_t = target.x[pick.choice(len(target), 8, replace=False)]
    views = {}
    for label, images in (("source", shown_s), ("target", shown_t)):
        views[label] = images
        views[f"{label} weak"] = keras.ops.convert_to_numpy(trainer.view(trainer.weak, images))
        views[f"{label} strong"] = keras.ops.convert_to_numpy(
            trainer.view(trainer.strong, images))
    figures.append(("The weak view (pseudo-labels come from it) and the strong view (trained "
                    "to match them) of source and target images",
                    sample_grid(views, run_dir.file("views.png")).name))
    return Outcome(metrics, figures, title=f"AdaMatch ({config.mode})")


# ----------------------------------------------------------------------------- in words


def verdict(m: dict) -> str:
    where = {"ssl": "On the test images", "uda": "On the target domain",
             "ssda": "On the target domain"}.get(m.get("mode"), "On the test images")
    text = f"{where} AdaMatch classifies {percent(m['target_acc'])} correctly"
    if "source_only_target_acc" in m:
        gain = m["target_acc"] - m["source_only_target_acc"]
        alone = "labeled images" if m.get("mode") == "ssl" else "labeled source"
        text += (f", against {percent(m['source_only_target_acc'])} for the same model "
                 f"trained on the {alone} alone: "
                 f"{'+' if gain >= 0 else '−'}{points(gain)}")
    return text + "."


def headline(m: dict) -> str:
    before = (f"source-only {percent(m['source_only_target_acc'])} → "
              if "source_only_target_acc" in m else "")
    return f"target: {before}AdaMatch {percent(m['target_acc'])}"


GLOSSARY = {
    "target_acc": "top-1 accuracy on the target-domain test images (in UDA these are the "
                  "unlabeled target images themselves: their labels are never trained on)",
    "source_acc": "top-1 accuracy on held-out labeled source images",
    "source_only_target_acc": "the same model trained on the labeled images alone, measured "
                              "on the same target test images: what AdaMatch has to beat",
    "source_images": "labeled images the model trains on",
    "target_images": "unlabeled images it adapts to",
}

RECIPE = Recipe(
    name="adamatch", config=AdaMatchConfig, train=train_model, title="AdaMatch",
    delivers="model.keras", verdict=verdict, headline=headline, figure="target_accuracy.png",
    glossary=GLOSSARY,
    demo=Demo("demo-adamatch", "AdaMatch from UCI digit scans to MNIST, against source-only",
              73))
