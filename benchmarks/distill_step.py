"""The distillation step against its limit.

    python benchmarks/distill_step.py [--reps 15] [--write]

Limit: the work no implementation can skip, measured without mentor's recipe code: the
teacher's forward pass (inference mode) plus the student's forward + backward + AdamW
update with global clip-norm, on the same 64 images. The recipe's step adds the shared view
(per-image inception crop + flip, then MixUp with per-image λ), the KL term and its
trackers (KL, agreement, accuracy against the dominant label). Goal: ≤ 1.15×.
The models and view are those of the CPU preset distill-cifar10-cpu; its teacher is
flip-averaged, whose limit holds two teacher forwards (the images and their mirror).
"""

from __future__ import annotations

import argparse
import os

# isort: off
import mentor  # noqa: F401  (first: it chooses the backend, torch unless KERAS_BACKEND says)
import keras
# isort: on
import numpy as np
from _bench import interleaved, limit_table, write_section  # noqa: E402

from mentor.core.evaluation import flip_averaged
from mentor.core.trainer import ClassifierTrainer
from mentor.models import build_model
from mentor.recipes.distill import DistillLossConfig, DistillTrainer, SharedView

BATCH = 64  # the preset's batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--teacher-width", type=int, default=32)
    parser.add_argument("--student-width", type=int, default=14)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    def model(width):
        return build_model("small_cnn", num_classes=10, image_size=args.size, channels=3,
                           width=width)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, args.size, args.size, 3)).astype("uint8")
    y = np.arange(BATCH) % 10

    teacher = model(args.teacher_width)
    teacher.trainable = False
    plain = ClassifierTrainer(model(args.student_width))  # no augmentation: the bare step
    plain.compile(optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0))
    mirrored = x[:, :, ::-1].copy()

    def recipe(distill_teacher):
        trainer = DistillTrainer(model(args.student_width), teacher=distill_teacher,
                                 view=SharedView(area=(0.9, 1.0), seed=0),
                                 loss=DistillLossConfig())
        trainer.compile(optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0),
                        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
        return trainer

    plain_recipe, flip_recipe = recipe(teacher), recipe(flip_averaged(teacher))

    # predict_on_batch, not teacher(x): it runs the backend's compiled predict function
    # (a tf.function on TensorFlow, where an eager call costs more than the recipe's step)
    def limit():
        teacher.predict_on_batch(x)
        plain.train_on_batch(x, y)

    def flip_limit():
        teacher.predict_on_batch(x)
        teacher.predict_on_batch(mirrored)
        plain.train_on_batch(x, y)

    medians = interleaved({"limit": limit, "recipe": lambda: plain_recipe.train_on_batch(x, y),
                           "flip_limit": flip_limit,
                           "flip": lambda: flip_recipe.train_on_batch(x, y)}, args.reps)
    section = "\n".join([
        "## Distillation step vs its limit",
        "",
        f"`python benchmarks/distill_step.py --reps {args.reps}` · backend "
        f"{keras.backend.backend()} · {os.cpu_count()} CPU cores · teacher small_cnn width "
        f"{args.teacher_width}, student width {args.student_width} (the CPU preset's pair), "
        f"{args.size}×{args.size}×3, batch {BATCH} · medians of {args.reps} interleaved "
        "repetitions after 2 warm-ups.",
        "",
        *limit_table(medians, {
            "limit": "limit: teacher forward + student forward/backward/AdamW update",
            "recipe": "distill step: + inception crop, flip, MixUp, KL, trackers"}),
        "",
        *limit_table(medians, {
            "flip_limit": "limit: two teacher forwards (images, mirror) + student step",
            "flip": "distill step, flip-averaged teacher (the preset)"}, base="flip_limit"),
        "",
        "Goal: ≤ 1.15× the limit. The augmentation's cost is within the noise here: the "
        "limit's two calls (teacher, then student step) pay one more dispatch and host sync "
        "than the recipe's single step, which is why the ratio can fall below 1.",
    ])
    print(section)
    if args.write:  # one section per backend
        backend = keras.backend.backend()
        write_section("distill-step" + ("" if backend == "torch" else f"-{backend}"), section)


if __name__ == "__main__":
    main()
