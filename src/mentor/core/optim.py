"""Optimizers, learning-rate schedules and the L2 penalty, from a [train] section."""

from __future__ import annotations

import math

import keras

from mentor.compat import TwoRateUpdate
from mentor.config import TrainConfig
from mentor.errors import MentorError


def total_steps(cfg: TrainConfig, train_size: int) -> tuple[int, int]:
    """(steps_per_epoch, total optimizer steps)."""
    per_epoch = cfg.steps_per_epoch or math.ceil(train_size / cfg.batch_size)
    return per_epoch, per_epoch * cfg.epochs


# A warm-up at least as long as the run (a short trial of a preset: `train.epochs=1`) leaves
# no steps for the cosine. It is clamped to 10 % of the steps, the usual warm-up of short
# runs (BERT's fine-tuning, the transformers library's warmup_ratio = 0.1): long enough that
# the first updates are small while the optimizer's moments settle, short enough that 90 %
# of the run is spent at useful rates. Rounded down: under 10 steps there is no warm-up,
# since a warm-up's first step has rate 0 and would waste a tenth or more of the run.
WARMUP_PERCENT = 10


def warmup_steps(cfg: TrainConfig, steps: int, key: str = "train") -> int:
    """cfg.warmup_steps, or WARMUP_PERCENT of `steps` (with a note naming `key`, the config
    section) where it would leave no steps for the cosine."""
    if cfg.warmup_steps < steps:
        return cfg.warmup_steps
    clamped = steps * WARMUP_PERCENT // 100
    print(f"mentor: note: {key}.warmup_steps = {cfg.warmup_steps} is not shorter than the "
          f"{steps} steps of this training, so the warm-up is {clamped} "
          f"step{'' if clamped == 1 else 's'} "
          f"({WARMUP_PERCENT} % of them). Set {key}.warmup_steps ≤ {steps - 1} (e.g. "
          f"{clamped}) to choose it yourself and silence this note.", flush=True)
    return clamped


def learning_rate(cfg: TrainConfig, steps: int, key: str = "train"):
    """Peak `learning_rate`: linear warm-up over warmup_steps (clamped by `warmup_steps`),
    then cosine to 0 at `steps` (Keras's CosineDecay does both); a float for "constant" and
    "plateau" (the plateau callback lowers it). `key` names cfg's section in the note."""
    if cfg.schedule in ("constant", "plateau"):
        return cfg.learning_rate
    warmup = warmup_steps(cfg, steps, key)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, steps - warmup, warmup_target=cfg.learning_rate, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)


# Decoupled weight decay shrinks kernels only: decaying biases and normalization scales
# hurts and is not what the papers do (AdaMatch/FixMatch decay conv and dense kernels).
NO_DECAY = ["bias", "gamma", "beta", "moving_mean", "moving_variance"]


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


def build_optimizer(cfg: TrainConfig, steps: int, model: keras.Model | None = None, *,
                    key: str = "train") -> keras.optimizers.Optimizer:
    """cfg's optimizer and schedule; with train.backbone_lr_scale ≠ 1, `model`'s pretrained
    part learns at that fraction of the rate. `key` is cfg's section, for notes."""
    lr = learning_rate(cfg, steps, key)
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
        cls = type(cls.__name__, (TwoRateUpdate, cls), {})  # decoupled decay stays at the full rate
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
