"""The consistency student step against its limit.

    python benchmarks/consistency_step.py [--reps 15] [--model small_cnn] [--write]

Limit: the work no implementation can skip, measured without mentor's recipe code: the
teacher's forward pass (inference mode) plus the student's forward + backward + update, on
the same 64 images. The recipe's step adds the two views (flip + translate, then per-image
RandAugment) and the KL term. Goal: recipe step ≤ 1.3 × limit.
"""

from __future__ import annotations

import argparse
import os

# isort: off
import mentor  # noqa: F401  (first: it chooses the backend, torch unless KERAS_BACKEND says)
import keras
# isort: on
import numpy as np
from _bench import interleaved, limit_table, write_section

from mentor import augment
from mentor.core.trainer import ClassifierTrainer
from mentor.models import build_model
from mentor.recipes.consistency import ConsistencyLossConfig, ConsistencyTrainer

BATCH = 64  # the consistency preset's batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    def model():
        return build_model(args.model, num_classes=10, image_size=args.size, channels=3)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, args.size, args.size, 3)).astype("uint8")
    y = np.arange(BATCH) % 10

    teacher, student_plain, student = model(), model(), model()
    plain = ClassifierTrainer(student_plain)  # no augmentation: the bare student step
    plain.compile(optimizer=keras.optimizers.AdamW(1e-3))
    teacher.trainable = False

    recipe = ConsistencyTrainer(student, teacher=teacher, clean_view=augment.WeakAugment(seed=0),
                                noisy_view=augment.StrongAugment(flip=False, translate=0.0,
                                                                 seed=1),
                                loss=ConsistencyLossConfig())
    recipe.compile(optimizer=keras.optimizers.AdamW(1e-3))

    def limit():
        keras.ops.convert_to_numpy(teacher(x, training=False))
        plain.train_on_batch(x, y)

    medians = interleaved({"limit": limit, "recipe": lambda: recipe.train_on_batch(x, y)},
                          args.reps)
    section = "\n".join([
        "## Consistency student step vs its limit",
        "",
        f"`python benchmarks/consistency_step.py --reps {args.reps} --model {args.model}` · "
        f"backend {keras.backend.backend()} · {os.cpu_count()} CPU cores · {args.model} teacher "
        f"and student at {args.size}×{args.size}×3, batch {BATCH} · medians of {args.reps} "
        "interleaved repetitions after 2 warm-ups.",
        "",
        *limit_table(medians, {
            "limit": "limit: teacher forward + student forward/backward/update",
            "recipe": "consistency step: + clean view, per-image RandAugment, KL"}),
        "",
        "Goal: ≤ 1.3× the limit.",
    ])
    print(section)
    if args.write:
        write_section("consistency-step", section)


if __name__ == "__main__":
    main()
