"""The AugMix step against its limit, beside the consistency student step.

    python benchmarks/augmix_step.py [--reps 15] [--model small_cnn] [--write]

Limit: the work no implementation can skip, measured without mentor's recipe code: the
model's forward + backward + update on the 3 × 64 images AugMix trains on (the clean batch
and its two views). The recipe's step adds the views themselves (flip + translate, then 2 ×
3 chains of 1-3 operations each, mixed) and the Jensen–Shannon term. The consistency
student's step on the same model and batch is timed beside it: the two recipes compete for
the same job (accuracy under corruption), so what each costs a step is part of the choice.
Goal: AugMix step ≤ 1.5 × its limit (the chains are 18 augmented images per training image).
"""

from __future__ import annotations

import argparse
import os

# isort: off
import mentor  # noqa: F401  (first: it chooses the backend, torch unless KERAS_BACKEND says)
import keras
# isort: on
import numpy as np
from _bench import interleaved, limit_table, photos_32, write_section

from mentor import augment
from mentor.core.trainer import ClassifierTrainer
from mentor.models import build_model
from mentor.recipes.augmix import AugMix, AugMixTrainer
from mentor.recipes.consistency import ConsistencyLossConfig, ConsistencyTrainer

BATCH = 64  # the CIFAR-10 presets' batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    def model():
        return build_model(args.model, num_classes=10, image_size=32, channels=3)

    data, what = photos_32()  # real photos: the chains' Equalize and AutoContrast see real pixels
    x, y = data.x[:BATCH], data.y[:BATCH]
    x3, y3 = np.concatenate([x, x, x]), np.concatenate([y, y, y])

    plain = ClassifierTrainer(model())  # no augmentation: the bare step on 3 × 64 images
    plain.compile(optimizer=keras.optimizers.AdamW(1e-3))
    recipe = AugMixTrainer(model(), base=augment.WeakAugment(seed=0), augmix=AugMix(seed=1),
                           jsd_weight=12.0)
    recipe.compile(optimizer=keras.optimizers.AdamW(1e-3))
    teacher = model()
    teacher.trainable = False
    consistency = ConsistencyTrainer(model(), teacher=teacher,
                                     clean_view=augment.WeakAugment(seed=0),
                                     noisy_view=augment.StrongAugment(flip=False, translate=0.0,
                                                                      seed=1),
                                     loss=ConsistencyLossConfig())
    consistency.compile(optimizer=keras.optimizers.AdamW(1e-3))
    views = AugMix(seed=2)

    medians = interleaved({
        "limit": lambda: plain.train_on_batch(x3, y3),
        "views": lambda: keras.ops.convert_to_numpy(views(x, training=True)[1]),
        "recipe": lambda: recipe.train_on_batch(x, y),
        "consistency": lambda: consistency.train_on_batch(x, y)}, args.reps)
    section = "\n".join([
        "## AugMix step vs its limit, and the consistency student step",
        "",
        f"`python benchmarks/augmix_step.py --reps {args.reps} --model {args.model}` · "
        f"backend {keras.backend.backend()} · {os.cpu_count()} CPU cores · {args.model} at "
        f"32×32×3 on {what}, batch {BATCH} · medians of {args.reps} interleaved repetitions "
        "after 2 warm-ups.",
        "",
        *limit_table(medians, {
            "limit": "limit: forward/backward/update on 3 × 64 images",
            "views": "the two AugMix views alone (2 × 3 chains, mixed)",
            "recipe": "AugMix step: + flip/translate, the views, JS term",
            "consistency": "consistency student step (teacher forward + RandAugment view)"}),
        "",
        "Goal: AugMix step ≤ 1.5× its limit.",
    ])
    print(section)
    if args.write:
        write_section("augmix-step", section)


if __name__ == "__main__":
    main()
