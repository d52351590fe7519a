"""Recipe `augmix`: a classifier that keeps its accuracy under corruptions it never saw
(Hendrycks et al. 2020, "AugMix: a simple data processing method to improve robustness and
uncertainty", ICLR).

Every training image x (after the usual flip and 4 px shift) gets two AugMix views. A view
mixes `width` = 3 chains of 1–3 random operations each:

    x_aug = m · x + (1 − m) · Σ_i w_i · chain_i(x),   w ~ Dirichlet(α, α, α), m ~ Beta(α, α)

with α = 1, the operations drawn from the paper's list (AutoContrast, Equalize, Posterize,
Solarize, Rotate, ShearX/Y, TranslateX/Y): it leaves out Contrast, Color, Brightness and
Sharpness, which overlap the test corruptions. The model sees the clean image and both
views in one batch (batch-norm statistics over all three, as the paper's code) and learns

    loss = CE(y, f(x)) + λ · JS(f(x), f(x_aug1), f(x_aug2)),   λ = 12

the Jensen–Shannon divergence making its predictions stable across the views. It is then
measured clean and on the 19 CIFAR-10-C corruptions × 5 severities (mentor.robustness),
the same yardstick as `consistency`.

    mentor train augmix-cifar10-cpu
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from mentor import augment, robustness
from mentor.config import (
    DataConfig,
    ModelConfig,
    RobustnessConfig,
    RuntimeConfig,
    Section,
    TrainConfig,
    at_least,
    checked,
    positive,
    seed_field,
)
from mentor.core.fit import train
from mentor.core.lifecycle import accuracy, build_for, history_figures
from mentor.core.optim import total_steps
from mentor.core.recipe import Outcome, Recipe, Started
from mentor.core.trainer import Trainer
from mentor.data.pipeline import Batches
from mentor.losses import augmix_loss, cross_entropy
from mentor.models import count_params
from mentor.report import sample_grid
from mentor.verdict import percent

# The paper's operations (its code's `augmentations`), by their RandAugment names here.
OPS = ("AutoContrast", "Equalize", "Posterize", "Rotate", "Solarize", "ShearX", "ShearY",
       "TranslateX", "TranslateY")


# ----------------------------------------------------------------------------- config


@dataclass
class AugMixViewConfig(Section):
    """The base view (flip + shift, as the paper's CIFAR code crops with 4 px padding) and
    the AugMix chains on top of it."""
    flip: bool = True
    translate: float = checked(0.125, lambda v: 0 <= v <= 0.5, "in [0, 0.5]")  # max shift / side
    width: int = checked(3, lambda v: 1 <= v <= 8, "in 1..8")  # chains mixed per view
    depth: int = checked(0, lambda v: 0 <= v <= 3, "in 0..3")  # ops per chain; 0 → 1..3 at random
    # 1..10: an op's strength is drawn up to severity/10 of RandAugment's largest (the paper's
    # CIFAR code: 3, a rotation of up to 9°)
    severity: int = checked(3, lambda v: 1 <= v <= 10, "in 1..10")
    alpha: float = positive(1.0)  # Dirichlet(α) chain weights and Beta(α, α) mix with x


@dataclass
class AugMixLossConfig(Section):
    jsd_weight: float = at_least(12.0, 0)  # λ; 0 → AugMix views as plain augmentation


@dataclass
class AugMixConfig(Section):
    recipe: str = "augmix"
    description: str = ""
    seed: int = seed_field()
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugMixViewConfig = field(default_factory=AugMixViewConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: AugMixLossConfig = field(default_factory=AugMixLossConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ----------------------------------------------------------------------------- views


@keras.saving.register_keras_serializable(package="mentor")
class AugMix(keras.layers.Layer):
    """Two AugMix views of each image (B×H×W×C in [0, 255]), random only when training.

    All chains of both views run as one batch of 2·width·B images: layer d applies one op,
    drawn per image from `OPS`, to the images whose chain is at least d + 1 ops deep."""

    def __init__(self, width=3, depth=0, severity=3, alpha=1.0, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.width, self.depth, self.severity, self.alpha = width, depth, severity, alpha
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        images = keras.ops.cast(images, "float32")
        if not training:
            return images, images
        ops, seed = keras.ops, self.seed_generator
        batch = ops.shape(images)[0]
        chains = 2 * self.width
        x = ops.tile(images, (chains, 1, 1, 1))  # chain c of image b at row c·B + b
        n = ops.shape(x)[0]
        depth = (ops.full((n,), self.depth, "int32") if self.depth else
                 keras.random.randint((n,), 1, 4, seed=seed, dtype="int32"))
        for layer in range(self.depth or 3):
            # one op per image, its strength uniform in [0, severity/10] of the largest
            changed = augment.strong(x, seed, num_ops=1, magnitude=self.severity,
                                     random_magnitude=True, op_names=OPS)
            x = ops.where((depth > layer)[:, None, None, None], changed, x)
        x = ops.reshape(x, (2, self.width, batch) + tuple(images.shape[1:]))
        weights = self._dirichlet((2, self.width, batch))
        mixed = ops.sum(weights[..., None, None, None] * x, axis=1)  # (2, B, H, W, C)
        m = self._beta((2, batch))[..., None, None, None]
        views = m * images[None] + (1.0 - m) * mixed
        return views[0], views[1]

    def _gamma(self, shape):
        return keras.random.gamma(shape, self.alpha, seed=self.seed_generator)

    def _dirichlet(self, shape):
        """Dirichlet(α, …, α) over axis 1: independent Gamma(α) draws, normalised."""
        g = self._gamma(shape)
        return g / keras.ops.sum(g, axis=1, keepdims=True)

    def _beta(self, shape):
        a, b = self._gamma(shape), self._gamma(shape)
        return a / (a + b)

    def compute_output_spec(self, images, training=False):
        spec = keras.KerasTensor(images.shape, dtype="float32")
        return spec, spec

    def get_config(self):
        return {**super().get_config(), "width": self.width, "depth": self.depth,
                "severity": self.severity, "alpha": self.alpha, "seed": self.seed}


def views(config: AugMixConfig):
    """(base, augmix): the flip + shift every image gets, and the two AugMix views of it."""
    a = config.augment
    base = augment.WeakAugment(flip=a.flip, translate=a.translate, seed=config.seed)
    return base, AugMix(width=a.width, depth=a.depth, severity=a.severity, alpha=a.alpha,
                        seed=config.seed + 1)


# ----------------------------------------------------------------------------- loss


class AugMixTrainer(Trainer):
    """The clean image and its two views through the model as one batch; the clean logits
    are the prediction, the views' go to the JS term."""

    def __init__(self, classifier, *, base, augmix, jsd_weight: float, ema: float = 0.0,
                 **kwargs):
        super().__init__(classifier, ema=ema, **kwargs)
        self.base, self.augmix = base, augmix
        self.jsd_weight = float(jsd_weight)

    def views(self, x):
        clean = self.base(x, training=True)
        return (clean, *self.augmix(clean, training=True))

    def call(self, x, training=False):
        if not training:
            return self.classifier(x, training=False)
        clean, view1, view2 = self.views(x)
        logits = self.classifier(keras.ops.concatenate([clean, view1, view2]), training=True)
        clean_logits, view1_logits, view2_logits = keras.ops.split(logits, 3)
        self.keep(view1=view1_logits, view2=view2_logits)
        return clean_logits

    def objective(self, y, y_pred, training):
        if not training:  # validation: the plain cross-entropy
            return keras.ops.mean(cross_entropy(y, y_pred))
        return keras.ops.mean(augmix_loss(y, y_pred, self.kept["view1"], self.kept["view2"],
                                          jsd_weight=self.jsd_weight))


# ----------------------------------------------------------------------------- run


def train_model(run: Started) -> Outcome:
    config, run_dir, train_set, val, test = run.config, run.run_dir, run.train, run.val, run.test
    model = build_for(config.model, train_set)
    base, mix = views(config)
    trainer = AugMixTrainer(model, base=base, augmix=mix, jsd_weight=config.loss.jsd_weight,
                            ema=config.train.ema)
    t = config.train
    per_epoch, steps = total_steps(t, len(train_set))
    print(f"model: training {config.model.name} ({count_params(model, trainable_only=True):,} "
          f"parameters) on clean images and two AugMix views, λ = {config.loss.jsd_weight:g}",
          flush=True)
    stage = run_dir.stage("model")
    taken = train(trainer, lambda start: Batches(train_set, t.batch_size, steps=steps,
                                                 seed=config.seed + 2, start_step=start,
                                                 workers=config.data.workers),
                  stage, t, per_epoch=per_epoch, steps=steps,
                  validation=(val.x, val.y) if val is not None else None)
    trainer.finish()
    run_dir.save_model(model, "model.keras")

    r = config.robustness
    subset = robustness.subset(test, r.max_images, config.seed)
    print(f"robustness: {len(subset)} test images × {len(r.corruptions) or 19} corruptions × "
          f"{len(r.severities)} severities", flush=True)
    results = robustness.sweep({"model": model}, subset, corruptions=r.corruptions or None,
                               severities=tuple(r.severities), seed=r.seed)
    result = results["model"]
    metrics = {"steps": taken, "clean_acc": result["clean_acc"] if subset is test else accuracy(model, test),
               "corrupt_acc": result.get("corrupt_acc", result["corrupt_acc_all"]),
               "corrupt_acc_all": result["corrupt_acc_all"]}
    if val is not None:
        metrics["val_acc"] = accuracy(model, val)
    metrics.update(params=count_params(model, trainable_only=True), train_images=len(train_set),
                   test_images=len(test), corruption_images=len(subset))
    metrics.update({k: v for k, v in result.items() if k.startswith("corrupt_acc/")})

    figures = history_figures(run_dir, [(
        "Training: its objective (CE + λ·JS over the clean image and two AugMix views) and, "
        "on its own axis, the plain cross-entropy on validation images", stage,
        {"objective": "training objective: CE + λ·JS"})])
    shown = train_set.x[np.random.default_rng(config.seed).choice(len(train_set), 8, replace=False)]
    clean, view1, view2 = (keras.ops.convert_to_numpy(v) for v in trainer.views(shown))
    figures.append(("What the model sees: each image (after flip and shift) and its two "
                    "AugMix views", sample_grid({"input": shown, "clean": clean,
                                                 "AugMix view 1": view1,
                                                 "AugMix view 2": view2},
                                                run_dir.file("views.png")).name))
    figures.append(("Accuracy per corruption and severity", robustness.heatmap(
        results, run_dir.file("robustness.png"), images=len(subset)).name))
    notes = [] if subset is test else [
        f"Clean accuracy is on all {len(test):,} test images; corrupted ones on a seeded "
        f"subset of {len(subset):,} of them (robustness.max_images)."]
    return Outcome(metrics, figures, notes)


# ----------------------------------------------------------------------------- in words


def verdict(m: dict) -> str:
    kept = m["corrupt_acc"] / m["clean_acc"] if m["clean_acc"] else 0.0
    return (f"Trained with AugMix, the model classifies {percent(m['clean_acc'])} of the "
            f"clean test images and {percent(m['corrupt_acc'])} of their corrupted versions: "
            f"under corruption it keeps {100 * kept:.0f} % of its clean accuracy.")


def headline(m: dict) -> str:
    return f"clean {percent(m['clean_acc'])}, corrupted {percent(m['corrupt_acc'])}"


RECIPE = Recipe(
    name="augmix", config=AugMixConfig, train=train_model, title="AugMix",
    delivers="model.keras", verdict=verdict, headline=headline, figure="robustness.png")
