"""Is the input pipeline ever the bottleneck? Loader + augmentation vs the WRN-28-2 step.

    python benchmarks/pipeline.py [--reps 7] [--write]

All candidates run interleaved in one process (rep 1 of each, rep 2 of each, …) and the
table reports medians, so a noisy neighbour slows every row alike; the verdict is a ratio.
Data: ../shared/data/cifar10_train5k.npz when present, else embedded MNIST-5k at 32×32×3.
--write replaces this benchmark's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform

# isort: off
import mentor  # noqa: F401  (first: it chooses the backend, torch unless KERAS_BACKEND says)
import keras
# isort: on
from _bench import interleaved, photos_32, write_section  # noqa: E402

from mentor import augment
from mentor.core.trainer import ClassifierTrainer
from mentor.data.pipeline import Batches
from mentor.models import build_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10_train5k.npz"
BATCH = 64  # the batch of the WRN-28-2 AdaMatch step (benchmarks/adamatch_step.py)
STRONG_BATCH = 192  # AdaMatch's target batch (3 × 64) gets the strong view


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    data, data_name = photos_32()
    batches = Batches(data, BATCH, seed=0, steps=10**6)
    big = Batches(data, STRONG_BATCH, seed=1, steps=10**6)
    weak_seed, strong_seed = keras.random.SeedGenerator(0), keras.random.SeedGenerator(1)
    keras_randaugment = keras.layers.RandAugment(value_range=(0, 255), seed=2)

    model = build_model("wrn28_2", num_classes=10, image_size=32, channels=3)
    trainer = ClassifierTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True))
    x0, y0 = batches[0]

    step = iter(range(10**9))

    def loader():
        batches[next(step)]

    def loader_weak():
        x, _ = batches[next(step)]
        keras.ops.convert_to_numpy(augment.weak(keras.ops.convert_to_tensor(x), weak_seed))

    def loader_strong():  # per image RandAugment on AdaMatch's 192-image target batch
        x, _ = big[next(step)]
        t = augment.weak(keras.ops.convert_to_tensor(x), strong_seed)
        keras.ops.convert_to_numpy(augment.strong(t, strong_seed))

    def keras_strong():  # Keras's RandAugment layer (ops drawn once per batch), for reference
        x, _ = big[next(step)]
        keras.ops.convert_to_numpy(keras_randaugment(keras.ops.cast(x, "float32"),
                                                     training=True))

    def train_step():
        trainer.train_on_batch(x0, y0)

    cases = [("loader: uint8 batch gather", loader, BATCH),
             ("loader + weak (flip, translate)", loader_weak, BATCH),
             ("loader + weak + strong (per-image RandAugment)", loader_strong, STRONG_BATCH),
             ("reference: keras.layers.RandAugment", keras_strong, STRONG_BATCH),
             ("WRN-28-2 train step (fwd + bwd + SGD)", train_step, BATCH)]
    medians = interleaved({name: fn for name, fn, _ in cases}, args.reps)
    step_rate = BATCH / medians[cases[-1][0]]
    rows = ["| stage | images per batch | median ms per batch | images/s | × the train step |",
            "|---|---|---|---|---|"]
    for name, _, n in cases:
        ms = 1000 * medians[name]
        rate = n / (ms / 1000)
        rows.append(f"| {name} | {n} | {ms:.1f} | {rate:,.0f} | {rate / step_rate:.1f}× |")
    command = f"python benchmarks/pipeline.py --reps {args.reps}"
    section = "\n".join([
        "## Input pipeline vs the WRN-28-2 train step",
        "",
        f"`{command}` · backend {keras.backend.backend()} · {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}) · data {data_name} · medians of "
        f"{args.reps} interleaved repetitions after 2 warm-ups.",
        "",
        *rows,
        "",
        "The goal: the pipeline delivers ≥ 5× the images per second that the step consumes. "
        "Strong augmentation is timed on 192 images, the AdaMatch target batch that gets it.",
    ])
    print(section)
    if args.write:
        write_section("pipeline", section)


if __name__ == "__main__":
    main()
