"""The baseline a recipe is measured against: its own model trained on the labels alone,
with the same steps and optimizer (distillation's labels-only student, AdaMatch's
source-only model)."""

from __future__ import annotations

from mentor.core.lifecycle import build_for
from mentor.core.optim import total_steps
from mentor.core.trainer import train_classifier


def train_baseline(run_dir, model_config, train_set, val, *, augment_cfg, train_cfg,
                   seed: int, workers: int = 0, l2: float = 0.0, per_epoch: int = 0,
                   callbacks=()):
    """The run's own model trained on the labels alone, with the same steps and optimizer:
    what `distill` (labels-only) and `adamatch` (source-only) are measured against. Saved as
    baseline.keras; returns (model, its Stage)."""

    model = build_for(model_config, train_set)
    steps = (per_epoch * train_cfg.epochs) if per_epoch else total_steps(train_cfg,
                                                                          len(train_set))[1]
    print(f"baseline: {model_config.name} on the {len(train_set)} labeled images alone, "
          f"{steps} steps", flush=True)
    stage = run_dir.stage("baseline")
    train_classifier(model, train_set, val, stage, augment_cfg=augment_cfg,
                     train_cfg=train_cfg, seed=seed, workers=workers, l2=l2,
                     per_epoch=per_epoch, callbacks=callbacks)
    run_dir.save_model(model, "baseline.keras")
    return model, stage
