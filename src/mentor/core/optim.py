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


class _ScaledBackbone:
    """Optimizer mixin: the update of the variables in `_scaled` uses learning_rate × scale.

    Keras has one learning rate per optimizer. Every backend's update funnels through
    `_backend_update_step(grads, variables, learning_rate)` (torch's fused optimizers
    override it, and handle any subset of the variables), so calling it once for the scaled
    variables and once for the rest gives each its rate, for SGD and Adam alike. Decoupled
    weight decay (AdamW) is applied apart, at the full rate.
    """

    def _backend_update_step(self, grads, variables, learning_rate):
        pairs = list(zip(grads, variables))
        scaled = [(g, v) for g, v in pairs if id(v) in self._scaled]
        rest = [(g, v) for g, v in pairs if id(v) not in self._scaled]
        for group, rate in ((scaled, learning_rate * self._scale), (rest, learning_rate)):
            if group:
                super()._backend_update_step([g for g, _ in group], [v for _, v in group],
                                             rate)


def pretrained_variables(model: keras.Model) -> list:
    """The trainable variables of all but the head (mentor's "logits" layer)."""
    try:
        head = model.get_layer("logits")
    except ValueError:
        raise MentorError(
            f"train.backbone_lr_scale needs to tell the head from the rest, but {model.name} "
            "has no layer named 'logits' (mentor's models, keras.applications and .keras "
            "starting points whose head mentor replaced have one).") from None
    ids = {id(v) for v in head.trainable_variables}
    return [v for v in model.trainable_variables if id(v) not in ids]


def build_optimizer(cfg: TrainConfig, steps: int,
                    model: keras.Model | None = None) -> keras.optimizers.Optimizer:
    """cfg's optimizer and schedule; with train.backbone_lr_scale ≠ 1, `model`'s pretrained
    part learns at that fraction of the rate."""
    lr = learning_rate(cfg, steps)
    clip = {"global_clipnorm": cfg.clipnorm} if cfg.clipnorm else {}
    wd = cfg.weight_decay or None
    if cfg.optimizer == "adamw":
        cls, kwargs = keras.optimizers.AdamW, {"weight_decay": cfg.weight_decay}
    elif cfg.optimizer == "adam":
        cls, kwargs = keras.optimizers.Adam, {"weight_decay": wd}
    else:  # "sgd": the config admits no other value
        cls, kwargs = keras.optimizers.SGD, {"momentum": cfg.momentum, "nesterov": True,
                                             "weight_decay": wd}
    scaled = cfg.backbone_lr_scale != 1.0 and model is not None
    if scaled:
        cls = type(cls.__name__, (_ScaledBackbone, cls), {})
    opt = cls(lr, **kwargs, **clip)
    if scaled:
        opt._scale = float(cfg.backbone_lr_scale)
        opt._scaled = {id(v) for v in pretrained_variables(model)}
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def l2_penalty(model: keras.Model):
    """½‖w‖² over conv and dense kernels (not biases or normalization parameters): the
    coupled weight decay of the FixMatch/AdaMatch code, added to a loss."""
    kernels = [w for w in model.trainable_weights if "kernel" in w.path]
    return 0.5 * sum(keras.ops.sum(keras.ops.square(k)) for k in kernels)
