"""The CPU distillation preset's three kinds of step on each Keras backend, side by side.

    python benchmarks/backends.py [--reps 10] [--write]

Which backend should a CPU user pick? Keras chooses its backend once per process, so each
backend (and precision) runs in a worker process of its own; the parent asks the workers
for one step in turn (repetition 1 of every worker, then repetition 2, …), so that a noisy
neighbour slows them all alike, and only one step runs at a time on the machine's cores.

The steps are those of `mentor train distill-cifar10-cpu`, batch 64 of 32×32×3 images:
the teacher's training step (small_cnn width 32, RandAugment), the distillation step
(flip-averaged teacher, width-14 student, shared crop + MixUp view) and the labels-only
baseline's step (width 14, flip + translate).
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import subprocess
import sys

from _bench import interleaved, write_section

HERE = pathlib.Path(__file__).resolve().parent
STEPS = {"teacher": "teacher training step (RandAugment)",
         "distill": "distillation step (flip-averaged teacher)",
         "baseline": "labels-only student step"}
VARIANTS = ("torch/float32", "jax/float32", "tensorflow/float32", "torch/mixed_bfloat16",
            "tensorflow/mixed_bfloat16")


def worker(precision: str):
    """Build the three steps, then run the one each line on stdin names."""
    import keras
    import numpy as np

    import mentor  # noqa: F401  (before keras: the backend)
    from mentor import augment
    from mentor.core.evaluation import flip_averaged
    from mentor.core.trainer import ClassifierTrainer
    from mentor.models import build_model
    from mentor.recipes.distill import DistillLossConfig, DistillTrainer, SharedView

    keras.mixed_precision.set_global_policy(precision)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3)).astype("uint8")
    y = np.arange(64) % 10

    def model(width):
        return build_model("small_cnn", num_classes=10, image_size=32, channels=3, width=width)

    def compiled(trainer):
        trainer.compile(optimizer=keras.optimizers.AdamW(1e-3, global_clipnorm=1.0),
                        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
        return trainer

    frozen = model(32)
    frozen.trainable = False
    trainers = {
        "teacher": compiled(ClassifierTrainer(model(32), augmenter=augment.StrongAugment(seed=0),
                                              ema=0.998)),
        "distill": compiled(DistillTrainer(model(14), teacher=flip_averaged(frozen),
                                           view=SharedView(area=(0.9, 1.0), seed=0),
                                           loss=DistillLossConfig())),
        "baseline": compiled(ClassifierTrainer(
            model(14), augmenter=augment.WeakAugment(flip=True, translate=0.125, seed=0))),
    }
    print("ready", flush=True)
    for line in sys.stdin:
        trainers[line.strip()].train_on_batch(x, y)
        print("done", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # backend/precision, internal
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker.split("/")[1])

    workers = {}
    for variant in VARIANTS:
        env = dict(os.environ, KERAS_BACKEND=variant.split("/")[0])
        proc = subprocess.Popen([sys.executable, str(HERE / "backends.py"), "--worker", variant],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        if proc.stdout.readline().strip() != "ready":  # one at a time: builds don't overlap
            sys.exit(f"worker {variant} failed to start (run it alone to see why: "
                     f"KERAS_BACKEND={variant.split('/')[0]} python benchmarks/backends.py "
                     f"--worker {variant})")
        workers[variant] = proc

    def request(proc, step):
        proc.stdin.write(step + "\n")
        proc.stdin.flush()
        proc.stdout.readline()  # the pipe's round trip: 0.06 ms against 50-400 ms a step

    med = interleaved({(v, s): functools.partial(request, workers[v], s)
                       for s in STEPS for v in VARIANTS}, args.reps)  # 2 warm-ups each
    for proc in workers.values():
        proc.stdin.close()
        proc.wait()
    base = "torch/float32"
    rows = ["| step | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for step, label in STEPS.items():
        cells = [f"{1000 * med[v, step]:.1f} ms ({med[v, step] / med[base, step]:.2f}×)"
                 for v in VARIANTS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    section = "\n".join([
        "## The CPU distillation preset's steps on each backend",
        "",
        f"`python benchmarks/backends.py --reps {args.reps}` · {os.cpu_count()} CPU cores · "
        "batch 64 of 32×32×3 · each backend in its own process, steps interleaved across "
        f"them · medians of {args.reps} after 2 warm-ups; in brackets, the ratio to torch "
        "float32 (the default).",
        "",
        *rows,
    ])
    print(section)
    if args.write:
        write_section("backends", section)


if __name__ == "__main__":
    main()
