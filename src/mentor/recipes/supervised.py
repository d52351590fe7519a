"""Recipe `supervised`: a classifier trained on labeled images.

Its step (core.trainer.ClassifierTrainer) also trains the teachers of `consistency` and
`distill` and the baselines of `distill` and `adamatch`. Augmentation runs on the backend
inside the train step (per image); evaluation can use an exponential moving average (EMA)
of the weights or stochastic weight averaging (SWA).

    from mentor import recipes
    config, name = recipes.load_config("demo")
    metrics = recipes.get("supervised").run(config, "runs/demo")
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from mentor.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    Section,
    TrainConfig,
    seed_field,
)
from mentor.core.lifecycle import accuracy, build_for, history_figures
from mentor.core.recipe import Demo, Outcome, Recipe, Started
from mentor.core.trainer import train_classifier
from mentor.models import count_params
from mentor.report import sample_grid
from mentor.verdict import percent

# ----------------------------------------------------------------------------- config


@dataclass
class SupervisedConfig(Section):
    recipe: str = "supervised"
    description: str = ""
    seed: int = seed_field()
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ----------------------------------------------------------------------------- run


def train(run: Started) -> Outcome:
    config, train_set, val, test = run.config, run.train, run.val, run.test
    classifier = build_for(config.model, train_set)
    stage = run.run_dir.stage("model")
    trainer = train_classifier(classifier, train_set, val, stage, augment_cfg=config.augment,
                               train_cfg=config.train, seed=config.seed,
                               workers=config.data.workers, finish=False)

    metrics = {"steps": trainer.steps}
    if trainer.ema is not None:
        metrics["test_acc_raw"] = accuracy(classifier, test)
    trainer.finish()
    metrics["test_acc"] = accuracy(classifier, test)
    if val is not None:
        metrics["val_acc"] = accuracy(classifier, val)
    metrics.update(params=count_params(classifier, trainable_only=True),
                   train_images=len(train_set), val_images=len(val) if val else 0,
                   test_images=len(test))
    run.run_dir.save_model(classifier, "model.keras")

    figures = history_figures(run.run_dir, [("Training curves", stage)])
    if trainer.augmenter is not None:
        shown = train_set.x[np.random.default_rng(config.seed).choice(len(train_set), 8,
                                                                      replace=False)]
        views = {"clean": shown, config.augment.kind: keras.ops.convert_to_numpy(
            trainer.augmenter(shown, training=True))}
        figures.append(("Augmentation samples",
                        sample_grid(views, run.run_dir.file("augment.png")).name))
    return Outcome(metrics, figures)


# ----------------------------------------------------------------------------- in words


def verdict(m: dict) -> str:
    held = "" if m.get("warning_test_in_train") else "held-back "  # not when it trained on them
    return (f"The model classifies {percent(m['test_acc'])} of the {m['test_images']:,} "
            f"{held}test images correctly ({m['params']:,} parameters, "
            f"{m['steps']:,} steps).")


def headline(m: dict) -> str:
    return f"test {percent(m['test_acc'])} ({m['params']:,} parameters)"


RECIPE = Recipe(
    name="supervised", config=SupervisedConfig, train=train, title="supervised",
    delivers="model.keras", verdict=verdict, headline=headline, figure="curves.png",
    glossary={"test_acc_raw": "test accuracy of the last weights, before the weight "
                              "average (train.ema) replaced them",
              "val_images": "training images held out for validation"},
    demo=Demo("demo", "small CNN on embedded MNIST-5k", 43))
