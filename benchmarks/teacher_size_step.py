"""The cost of a teacher at its own resolution (teacher.image_size) in the distillation step.

    python benchmarks/teacher_size_step.py [--reps 5] [--write]

The same distill step (the CPU preset's pair: teacher small_cnn width 32, student width 14,
batch 64) with the teacher at the student's side (no resize) and at twice it, behind the
on-device resize of each view (augment.Resize, bilinear). Beside each, its limit: the
teacher's forward on images already at its side plus the student's bare step, so that
"step − limit" is what the view, the resize and the KL add.
"""

from __future__ import annotations

import argparse
import os

# isort: off
import mentor  # noqa: F401  (first: it chooses the backend, torch unless KERAS_BACKEND says)
import keras
# isort: on
import numpy as np
from _bench import interleaved, write_section

from mentor import augment
from mentor.core.trainer import ClassifierTrainer
from mentor.models import build_model
from mentor.recipes.distill import DistillLossConfig, DistillTrainer, SharedView
from mentor.teachers import resized_input

BATCH = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    size, big = args.size, 2 * args.size

    def model(width, side):
        return build_model("small_cnn", num_classes=10, image_size=side, channels=3,
                           width=width)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, size, size, 3)).astype("uint8")
    x_big = keras.ops.convert_to_numpy(augment.resize(x, big))
    y = np.arange(BATCH) % 10
    teachers = {"same": model(32, size), "big": model(32, big)}
    for teacher in teachers.values():
        teacher.trainable = False
    plain = ClassifierTrainer(model(14, size))
    plain.compile(optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0))

    def recipe(teacher):
        trainer = DistillTrainer(model(14, size), teacher=resized_input(
            teacher, size, teacher.input_shape[1]), view=SharedView(area=(0.9, 1.0), seed=0),
            loss=DistillLossConfig())
        trainer.compile(optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0),
                        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
        return trainer

    same, grown = recipe(teachers["same"]), recipe(teachers["big"])

    def limit(teacher, images):
        def run():
            teacher.predict_on_batch(images)
            plain.train_on_batch(x, y)
        return run

    medians = interleaved({
        "same_limit": limit(teachers["same"], x),
        "same": lambda: same.train_on_batch(x, y),
        "big_limit": limit(teachers["big"], x_big),
        "big": lambda: grown.train_on_batch(x, y)}, args.reps)
    ms = {k: 1000 * v for k, v in medians.items()}
    rows = [
        "| teacher side | limit ms | distill step ms | step − limit ms |",
        "|---|---|---|---|",
        f"| {size} (the student's; no resize) | {ms['same_limit']:.1f} | {ms['same']:.1f} | "
        f"{ms['same'] - ms['same_limit']:.1f} |",
        f"| {big} (2×; views resized in the step) | {ms['big_limit']:.1f} | {ms['big']:.1f} | "
        f"{ms['big'] - ms['big_limit']:.1f} |",
    ]
    section = "\n".join([
        "## A teacher at twice the student's side",
        "",
        f"`python benchmarks/teacher_size_step.py --reps {args.reps}` · backend "
        f"{keras.backend.backend()} · {os.cpu_count()} CPU cores · teacher small_cnn width "
        f"32, student width 14, student {size}×{size}×3, batch {BATCH} · medians of "
        f"{args.reps} interleaved repetitions after 2 warm-ups; load average "
        f"{os.getloadavg()[0]:.1f} at the end (other jobs on the cores). The limit is the "
        "teacher's forward on images already at its side plus the student's bare step.",
        "",
        *rows,
        "",
        f"The larger teacher's forward dominates; the resize of the {BATCH} views to "
        f"{big}×{big} is the difference between the two rows' last column.",
    ])
    print(section)
    if args.write:
        backend = keras.backend.backend()
        write_section("teacher-size-step" + ("" if backend == "torch" else f"-{backend}"),
                      section)


if __name__ == "__main__":
    main()
