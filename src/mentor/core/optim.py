"""Optimizers, learning-rate schedules and the L2 penalty, from a [train] section."""

from __future__ import annotations

import math

import keras

from mentor.config import TrainConfig
from mentor.errors import MentorError


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
    if cfg.warmup_steps >= steps:
        raise MentorError(
            f"train.warmup_steps = {cfg.warmup_steps} leaves no steps for the cosine decay "
            f"(training has {steps} steps); lower it.")
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
    else:  # "sgd": the config admits no other value
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=wd,
                                   **clip)
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def l2_penalty(model: keras.Model):
    """½‖w‖² over conv and dense kernels (not biases or normalization parameters): the
    coupled weight decay of the FixMatch/AdaMatch code, added to a loss."""
    kernels = [w for w in model.trainable_weights if "kernel" in w.path]
    return 0.5 * sum(keras.ops.sum(keras.ops.square(k)) for k in kernels)
