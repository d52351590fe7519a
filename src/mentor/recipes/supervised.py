"""Recipe `supervised`: a classifier trained on labeled images.

Its step (core.trainer.ClassifierTrainer) also trains the teachers of `consistency` and
`distill` and the baselines of `distill` and `adamatch`. Augmentation runs on the backend
inside the train step (per image); evaluation can use an exponential moving average (EMA)
of the weights or stochastic weight averaging (SWA).

    from mentor.config import load_config
    from mentor.recipes import supervised
    config, name = load_config("demo")
    metrics = supervised.run(config, "runs/demo")
"""

from __future__ import annotations

import keras
import numpy as np

from mentor.config import SupervisedConfig
from mentor.core.run import (
    accuracy,
    build_for,
    finish_run,
    history_figures,
    preflight,
    start_run,
)
from mentor.core.trainer import train_classifier
from mentor.models import count_params
from mentor.report import sample_grid
from mentor.runs import recorded


@recorded
def run(config: SupervisedConfig, out, *, name: str = "supervised") -> dict:
    """Train, evaluate and write the run directory; return metrics.json's content."""
    run_dir, train, val, test = start_run(config, out, name)
    preflight(config, train)
    classifier = build_for(config.model, train)
    stage = run_dir.stage("model")
    trainer = train_classifier(classifier, train, val, stage, augment_cfg=config.augment,
                               train_cfg=config.train, seed=config.seed,
                               workers=config.data.workers, finish=False)

    metrics = {"recipe": "supervised", "backend": keras.backend.backend(),
               "steps": trainer.steps}
    if trainer.ema is not None:
        metrics["test_acc_raw"] = accuracy(classifier, test)
    trainer.finish()
    metrics["test_acc"] = accuracy(classifier, test)
    if val is not None:
        metrics["val_acc"] = accuracy(classifier, val)
    metrics.update(params=count_params(classifier, trainable_only=True), train_images=len(train),
                   val_images=len(val) if val else 0, test_images=len(test))
    run_dir.save_model(classifier, "model.keras")

    figures = history_figures(run_dir, [("Training curves", stage)])
    if trainer.augmenter is not None:
        shown = train.x[np.random.default_rng(config.seed).choice(len(train), 8, replace=False)]
        views = {"clean": shown, config.augment.kind: keras.ops.convert_to_numpy(
            trainer.augmenter(shown, training=True))}
        figures.append(("Augmentation samples", sample_grid(views, run_dir.file("augment.png")).name))
    return finish_run(run_dir, config, f"{name}: supervised", metrics, figures)
