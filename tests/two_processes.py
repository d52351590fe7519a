"""One process of a two-process JAX job: one training step of each recipe's trainer, each
process fed only its share of the global batch by mentor's loaders, then predictions
gathered from both. Run twice by tests/test_multiprocess.py, which compares what process 0
saves with one process stepping on the whole batch:

    KERAS_BACKEND=jax python tests/two_processes.py PORT PROCESS_ID OUT_DIR

Process 0 writes OUT_DIR/steps.npz: per recipe its loss, every variable after the step,
how many devices each variable lives on and whether this process can see all of them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Importing Keras does not start JAX: the job is joined in main(), before any computation.
import keras  # noqa: E402
import numpy as np  # noqa: E402
import two_devices  # noqa: E402  (beside this file; imports Keras, so after the setup above)

from mentor.data.imageset import ImageSet  # noqa: E402
from mentor.data.pipeline import Batches, PairedBatches  # noqa: E402
from mentor.inference import predict, trim_to_devices  # noqa: E402
from mentor.runtime import process_shard, runtime, start_processes  # noqa: E402

RECIPES = tuple(two_devices.TRAINERS)
EVAL_IMAGES = 7  # odd: the padding to the device count and its removal are exercised


def images(recipe):
    """The recipe's global batch as ImageSets: the loaders' whole batch of step 0."""
    from two_devices import CLASSES, batch

    x, y = batch(recipe)
    names = [str(c) for c in range(CLASSES)]
    if recipe != "adamatch":
        return ImageSet(x, y, names, "source"), None
    target = ImageSet(x["target"], np.arange(len(x["target"])) % CLASSES, names, "target")
    return ImageSet(x["source"], y, names, "source"), target


def loader(recipe, shard):
    """Step 0 of the recipe's loader: all of the global batch with shard (0, 1), this
    process's share of it otherwise."""
    from two_devices import BATCH

    source, target = images(recipe)
    if target is None:
        return Batches(source, BATCH, steps=1, seed=7, shard=shard)[0]
    return PairedBatches(source, target, BATCH, ratio=3, steps=1, seed=7, shard=shard)[0]


def step(recipe, shard):
    """One step of `recipe` on `shard` of the global batch (None: this process's), and the
    classifier's logits of EVAL_IMAGES images. Returns a dict of arrays."""
    import two_devices
    from two_devices import BATCH, state_of

    with runtime(devices=1, global_batches=(BATCH,)) as chosen:
        trainer = getattr(two_devices, recipe)()
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        x, y = loader(recipe, shard)
        before = state_of(trainer)
        logs = trainer.train_on_batch(x, y, return_dict=True)
        state = state_of(trainer)
        source, _ = images(recipe)
        logits = predict(trainer.classifier, source.x[:EVAL_IMAGES], batch_size=4)
        values = [v.value for v in trainer.variables]
        out = {"loss": np.asarray(float(logs["loss"])), "logits": logits,
               "moved": np.asarray(max(float(np.max(np.abs(a - b), initial=0.0))
                                       for a, b in zip(before, state))),
               "devices": np.asarray(chosen["devices"]),
               "local_rows": np.asarray(len(y)),
               "variable_devices": np.asarray(min(len(v.sharding.device_set) for v in values)),
               "all_addressable": np.asarray(all(v.is_fully_addressable for v in values)),
               "validation": trim_to_devices((source.x[:EVAL_IMAGES], source.y[:EVAL_IMAGES]))[1]}
        out.update({f"weight{i}": a for i, a in enumerate(state)})
        return out


def main():
    port, process_id, out_dir = sys.argv[1:4]
    start_processes(f"localhost:{port}", 2, int(process_id))
    index, count = process_shard()
    assert count == 2, (index, count)
    results = {f"{recipe}/{k}": v for recipe in RECIPES for k, v in step(recipe, None).items()}
    np.savez(os.path.join(out_dir, f"process{index}.npz"), **results)


if __name__ == "__main__":
    main()
