"""RandAugment with its ops dealt in groups, against every op on the whole batch.

    python benchmarks/randaugment.py [--reps 20] [--precision mixed_bfloat16] [--write]

`augment.strong` draws each image's ops per image. Until 2026-11-26 every colour op ran on
the whole batch and a mask kept its result where chosen (`masked_strong` below, kept here as
the reference); now each op runs only on the group of images dealt it
(`augment.randaugment._Groups`: B/14 images). Timed: the train step of distill-cifar10-cpu's
teacher (small_cnn width 32, batch 64, weak + RandAugment views, AdamW, weight EMA) with
either RandAugment, and with the weak view alone, whose difference is what RandAugment
costs inside the step. Interleaved medians; --write replaces this backend's section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform

# isort: off
import mentor  # noqa: F401  (first: it chooses the backend, torch unless KERAS_BACKEND says)
import keras
# isort: on
import numpy as np
from _bench import interleaved, write_section  # noqa: E402
from keras import ops

from mentor import augment
from mentor.augment._common import (
    _clip,
    _coin,
    _identity,
    _per_image,
    _resample,
    _transforms,
)
from mentor.augment.randaugment import _geometry
from mentor.core.trainer import ClassifierTrainer
from mentor.models import build_model

BATCH = 64  # the teacher's batch in distill-cifar10-cpu


def masked_strong(images, seed, num_ops=2, magnitude=9):
    """The previous RandAugment: the same ops and geometry, every colour op on every image."""
    batch = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    geometry = _identity(batch)
    for _ in range(num_ops):
        op = keras.random.randint((batch,), 0, len(augment.OP_NAMES), seed=seed)
        fraction = ops.full((batch,), magnitude / augment.MAX_MAGNITUDE)
        level = ops.where(_coin(batch, seed), -fraction, fraction)
        for name, function in augment.COLOUR_OPS.items():
            chosen = _per_image(op == augment.OP_NAMES.index(name))
            images = ops.where(chosen, function(images, fraction, level), images)
        geometry = ops.matmul(geometry, _geometry(op, level, height, width))
    images = _resample(images, _transforms(geometry), fill_mode="constant",
                       fill_value=augment.GREY)
    return _clip(images)


class MaskedStrongAugment(augment.StrongAugment):
    def augment(self, images):
        images = augment.weak(images, self.seed_generator, flip=self.flip,
                              translate=self.translate)
        return masked_strong(images, self.seed_generator, self.num_ops, self.magnitude)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, 32, 32, 3)).astype("float32")
    y = np.arange(BATCH) % 10

    def step(augmenter):
        trainer = ClassifierTrainer(build_model("small_cnn", num_classes=10, image_size=32,
                                                channels=3, width=32), augmenter=augmenter, ema=0.998)
        trainer.compile(optimizer=keras.optimizers.AdamW(0.003, weight_decay=0.05))
        return lambda: trainer.train_on_batch(x, y)

    cases = {"weak": step(augment.WeakAugment(seed=0)),
             "grouped": step(augment.StrongAugment(seed=0)),
             "masked": step(MaskedStrongAugment(seed=0))}
    medians = interleaved(cases, args.reps)
    ms = {name: 1000 * t for name, t in medians.items()}
    cost = {name: ms[name] - ms["weak"] for name in ("grouped", "masked")}
    rows = ["| teacher train step, batch 64 | median ms | RandAugment's share, ms |",
            "|---|---|---|",
            f"| weak view only (flip, translate) | {ms['weak']:.1f} | — |",
            f"| + RandAugment, every colour op on the whole batch (before) | {ms['masked']:.1f} "
            f"| {cost['masked']:.1f} |",
            f"| + RandAugment, ops dealt in groups (now) | {ms['grouped']:.1f} "
            f"| {cost['grouped']:.1f} |"]
    backend = keras.backend.backend()
    flag = "" if args.precision == "float32" else f" --precision {args.precision}"
    section = "\n".join([
        f"## RandAugment: ops dealt in groups ({backend}, {args.precision})",
        "",
        f"`KERAS_BACKEND={backend} python benchmarks/randaugment.py --reps {args.reps}{flag}` · "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}) · "
        f"medians of {args.reps} interleaved repetitions after 2 warm-ups.",
        "",
        *rows,
        "",
        f"The whole step: {ms['masked'] / ms['grouped']:.2f}× faster; RandAugment inside it: "
        f"{cost['masked'] / max(cost['grouped'], 1e-9):.1f}× less time.",
    ])
    print(section)
    if args.write:
        write_section(f"randaugment-{backend}-{args.precision}", section)


if __name__ == "__main__":
    main()
