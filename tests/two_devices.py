"""One training step of each recipe's trainer on one device and on two, same global batch.

Run by tests/test_runtime.py in a fresh process (the device count is fixed when JAX starts):

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax python tests/two_devices.py

Prints one JSON object: recipe → {loss_1, loss_2, max_weight_diff, variables, devices,
...}, and "resume": a checkpoint written on two devices, read on one.
"""

import json
import os
import sys
import tempfile

import keras
import numpy as np

from mentor import augment
from mentor.core.checkpoints import load_state, save_state
from mentor.core.trainer import ClassifierTrainer
from mentor.models import build_model
from mentor.recipes.adamatch import AdaMatchLossConfig, AdaMatchTrainer
from mentor.recipes.augmix import AugMix, AugMixTrainer
from mentor.recipes.consistency import ConsistencyLossConfig, ConsistencyTrainer
from mentor.recipes.distill import DistillLossConfig, DistillTrainer, SharedView
from mentor.runtime import runtime

BATCH, SIZE, CLASSES = 8, 8, 4


def cnn(seed):
    keras.utils.set_random_seed(seed)
    return build_model("small_cnn", num_classes=CLASSES, image_size=SIZE, channels=1, width=4)


def supervised():
    return ClassifierTrainer(cnn(1), augmenter=augment.WeakAugment(flip=False, seed=2), ema=0.9,
                             l2=1e-3)


def consistency():
    return ConsistencyTrainer(cnn(1), teacher=cnn(3),
                              clean_view=augment.WeakAugment(flip=False, seed=2),
                              noisy_view=augment.StrongAugment(flip=False, seed=4),
                              loss=ConsistencyLossConfig(), ema=0.9)


def distill():
    return DistillTrainer(cnn(1), teacher=cnn(3), view=SharedView(size=SIZE, flip=False, seed=2),
                          loss=DistillLossConfig(temperature=2.0), ema=0.9)


def adamatch():
    return AdaMatchTrainer(cnn(1), weak=augment.WeakAugment(flip=False, seed=2),
                           strong=augment.StrongAugment(flip=False, seed=4),
                           loss=AdaMatchLossConfig(target_window=4, l2=1e-3),
                           num_classes=CLASSES, total_steps=10, ema=0.9, seed=5)


def augmix():
    return AugMixTrainer(cnn(1), base=augment.WeakAugment(flip=False, seed=2),
                         augmix=AugMix(seed=4), jsd_weight=12.0, ema=0.9)


# recipe → its trainer, built small (tests/test_registry.py checks every recipe is here)
TRAINERS = {"supervised": supervised, "consistency": consistency, "distill": distill,
            "adamatch": adamatch, "augmix": augmix}


def batch(recipe):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, SIZE, SIZE, 1)).astype("uint8")
    y = np.arange(BATCH) % CLASSES
    if recipe == "adamatch":
        x = {"source": x, "target": rng.integers(0, 256, (3 * BATCH, SIZE, SIZE, 1))
             .astype("uint8")}
    return x, y


def state_of(trainer):
    """Every variable of the trainer but its metrics', as host arrays."""
    skip = {id(v) for m in trainer.metrics for v in m.variables}
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in trainer.variables
            if id(v) not in skip]


def one_step(make, recipe, devices, checkpoint=None):
    with runtime(devices=devices, global_batches=(BATCH,)) as chosen:
        trainer = make()
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        x, y = batch(recipe)
        before = [np.asarray(keras.ops.convert_to_numpy(v)) for v in trainer.trainable_variables]
        logs = trainer.train_on_batch(x, y, return_dict=True)
        moved = max(float(np.max(np.abs(a - keras.ops.convert_to_numpy(v))))
                    for a, v in zip(before, trainer.trainable_variables))
        state = state_of(trainer)
        # every variable replicated on every device of the run
        layouts = min(len(v.value.sharding.device_set) for v in trainer.variables)
        if checkpoint:
            save_state(trainer, checkpoint, epoch=1)
        return float(logs["loss"]), state, chosen["devices"], layouts, moved


def main():
    assert keras.backend.backend() == "jax", "run with KERAS_BACKEND=jax"
    assert len(keras.distribution.list_devices()) >= 2, os.environ.get("XLA_FLAGS")
    out = {}
    for recipe, make in TRAINERS.items():
        loss_1, state_1, _, _, moved = one_step(make, recipe, 1)
        loss_2, state_2, devices, layouts, _ = one_step(make, recipe, 2)
        out[recipe] = {
            "loss_1": loss_1, "loss_2": loss_2, "devices": devices, "variables": len(state_1),
            "max_weight_diff": max(float(np.max(np.abs(a - b))) if a.size else 0.0
                                   for a, b in zip(state_1, state_2, strict=True)),
            "moved": moved,
            "variable_devices": layouts}
    # A run started on two devices resumes on one: the checkpoint holds host arrays.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "epoch-0001.npz")
        _, state_2, _, _, _ = one_step(adamatch, "adamatch", 2, checkpoint=path)
        with runtime(devices=1):
            trainer = adamatch()
            trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
            epoch = load_state(trainer, path)
            state_1 = state_of(trainer)
            devices = max(len(v.value.sharding.device_set) for v in trainer.variables)
        out["resume"] = {"epoch": epoch, "devices": devices, "variables": len(state_1),
                         "max_diff": max(float(np.max(np.abs(a - b))) if a.size else 0.0
                                         for a, b in zip(state_1, state_2, strict=True))}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
