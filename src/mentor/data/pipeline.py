"""One pipeline from any source to batches; this module is its last stage.

    ImageSet (any size, 1 or 3 channels)
      → prepare(): resize-and-pad to image_size keeping aspect, gray↔RGB to `channels`
        (mentor.data.prepare)
      → split_fraction() / labeled_split(): train/val/test, semi-supervised label budgets
        (mentor.data.splits)
      → Batches / PairedBatches: uint8 batches as a Keras PyDataset (here)

Images stay uint8 until the model: augmentation runs on the backend inside the train step
(mentor.augment), so the loader only gathers rows, which is why it is never the bottleneck
(benchmarks/pipeline.py).

Order is a pure function of (seed, global step) (mentor.data.order), so a run resumed at
step g sees exactly the batches it would have seen, whichever loader serves them:

- in-memory images (arrays: npz, embedded, downloads, small folders) are gathered by a Keras
  PyDataset in the main process: a gather of uint8 rows is far cheaper than a train step;
- file-backed images (`ImageFiles`: large folders and CSV lists) are decoded by Grain in
  worker processes (`feed`). Grain because Keras 3's `fit` takes its datasets on every
  backend, and it gives random access, worker processes with a bounded prefetch and a
  deterministic order whatever the worker count; a PyDataset with processes would copy
  batches through pickles and re-import Keras in every worker, and a torch DataLoader
  would tie the loader to one backend. Measured in benchmarks/loader.py.

Many processes (hosts): the batch is still the global one, its rows computed as above; each
process then keeps only its consecutive share (`shard`, from runtime.process_shard), before
anything is decoded, and Keras's JAX trainer lays the shares end to end in process order
(runtime.py).
"""

from __future__ import annotations

import keras
import numpy as np

from mentor.compat import release_shared_memory
from mentor.data.files import (
    BadImages,
    ImageFiles,
    available_cores,
    is_streamed,
    scored_rows,
    unscored,
)
from mentor.data.imageset import ImageSet
from mentor.data.order import Draw, PairedDraw, watch_parent
from mentor.errors import MentorError
from mentor.runtime import device_count, process_shard


def concat_images(a, b):
    """Two sets of images of one shape as one: arrays stay arrays, files stay files; a mix
    is decoded into memory (where it fits)."""
    if is_streamed(a) and is_streamed(b) and a.shape[1:] == b.shape[1:]:
        return a._like(np.concatenate([a.paths, b.paths]))
    return np.concatenate([np.asarray(a), np.asarray(b)])


def _check_batch(data: ImageSet, batch_size: int):
    if batch_size < 1:
        raise MentorError(f"batch size must be ≥ 1, got {batch_size}.")
    if len(data) == 0:
        raise MentorError(f"{data.name}: no images to draw batches from.")


def _check_shard(shard, batch_size: int) -> tuple[int, int]:
    index, count = shard or process_shard()
    if not 0 <= index < count or batch_size % count:
        raise MentorError(f"shard {index} of {count} processes: the global batch "
                          f"{batch_size} must split evenly into {count} shares.")
    return index, count


class Batches(keras.utils.PyDataset):
    """Shuffled uint8 batches (x, y) of one ImageSet for a whole run of `steps` steps.

    Index i is global step start_step + i; `draw(g)` makes batch g. Fit with
    `steps_per_epoch` and `shuffle=False`: Keras then draws one index after the other from
    a single iterator across epochs. Keras's own epoch bookkeeping cannot be the source of
    the order (measured with Keras 3.15: with one worker it calls on_epoch_end once more
    than there are epochs, with threads it prefetches the next epoch first), and
    `shuffle=True` would reorder indices with NumPy's global RNG. Every batch is full: the
    order wraps into the next permutation. A file-backed set is served through `feed`,
    which hands `draw` to Grain's worker processes; `workers` counts those processes, and
    an in-memory set is gathered in the main thread whatever it says (one thread is exact
    and enough: with more, Keras 3.15 serves its first-batch peek from the shared queue,
    so the first batch would be trained last).
    """

    def __init__(self, data: ImageSet, batch_size: int, *, steps: int, seed: int = 0,
                 shuffle: bool = True, start_step: int = 0, workers: int = 0, shard=None,
                 **kwargs):
        super().__init__(workers=1, use_multiprocessing=False, **kwargs)
        _check_batch(data, batch_size)
        self.shard = _check_shard(shard, batch_size)
        if not 0 <= start_step < steps:
            raise MentorError(f"start_step must lie in [0, {steps}), got {start_step}.")
        self.data, self.steps, self.start_step = data, steps, start_step
        self.processes = workers
        self.draw = Draw(data.x, data.y, batch_size, seed, shuffle, shard=self.shard)

    @property
    def order(self):
        return self.draw.order

    def __len__(self):
        return self.steps - self.start_step

    def __getitem__(self, index):
        return self.draw(self.start_step + index)


class PairedBatches(Batches):
    """Batches of two sets at a ratio: ({"source": x, "target": x_t}, y).

    The source set is labeled (UDA source, SSL labeled set); the target set draws
    `ratio` × batch_size images per step (AdaMatch §3.2: 3×) and is unlabeled for training.
    With `target_labels=True` the target labels come along as x["target_labels"] for
    monitoring only (pseudo-label accuracy); recipes must never train on them.
    """

    def __init__(self, source: ImageSet, target: ImageSet, batch_size: int, *, ratio: int = 3,
                 target_labels: bool = False, seed: int = 0, **kwargs):
        super().__init__(source, batch_size, seed=seed, **kwargs)
        _check_batch(target, batch_size * ratio)
        if ratio < 1:
            raise MentorError(f"the target-to-source batch ratio must be ≥ 1, got {ratio}.")
        if source.num_classes != target.num_classes:
            raise MentorError(
                f"{source.name} has {source.num_classes} classes but {target.name} has "
                f"{target.num_classes}; source and target must share one label space."
            )
        if source.image_shape != target.image_shape:
            raise MentorError(
                f"{source.name} images are {source.image_shape} but {target.name} images are "
                f"{target.image_shape}; prepare both to the same image_size and channels."
            )
        self.target = target
        self.draw = PairedDraw(source.x, source.y, target.x, target.y, batch_size, seed,
                               ratio=ratio, target_labels=target_labels, shard=self.shard)

    @property
    def target_order(self):
        return self.draw.target_order


# Batches each worker process decodes ahead of the step that needs them: 2 hides one slow
# batch (a large JPEG, a cold disk read) and bounds the memory to 2 × workers batches.
PREFETCH_PER_WORKER = 2


# Batches an iterator serves in the main process before it starts worker processes. Keras
# 3.15 makes iterators that it reads one or two batches from and drops (a peek at the batch
# shapes; on torch, one more for the symbolic build): served in-process, those start no
# workers. A training iterator pays two batches' decode in the main process, once.
INLINE_BATCHES = 2


def feed(batches: Batches):
    """What `fit` gets for `batches`: the PyDataset itself when every image is in memory;
    for file-backed images a Grain dataset that runs `batches.draw` over the same global
    steps, in worker processes after its first INLINE_BATCHES (decode and resize there;
    uint8 until the model). Call its `close()` after `fit` to stop the workers at once."""
    draw = batches.draw
    if not any(is_streamed(getattr(draw, k, None)) for k in ("x", "x_t")):
        return batches
    return _streamed(draw, batches.start_step, batches.steps, worker_count(batches.processes))


_said: set = set()  # notes already printed by this process


def worker_count(asked: int) -> int:
    """The loader's worker processes for data.workers = `asked` (0: one a core), at most
    one a core: decoding keeps a core busy, so more processes than cores decode no faster
    and each holds its own memory and prefetched batches. A cap is said once."""
    cores = available_cores()
    if asked <= cores:
        return asked or cores
    note = (f"data: data.workers = {asked} is more than the {cores} cores this process may "
            f"use; {cores} worker processes decode (more would only share those cores)")
    if note not in _said:
        _said.add(note)
        print(note, flush=True)
    return cores


def _own(batch):
    """A worker's batch copied out of the shared memory it arrived in (a batch is a few MB
    at most): the copy lives as long as its user holds it, and the shared block goes back
    at once instead of when the garbage collector finds it."""
    if isinstance(batch, dict):
        return {k: _own(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_own(v) for v in batch)
    out = np.array(batch, copy=True)
    release_shared_memory(batch)
    return out


def _streamed(draw, start: int, stop: int, workers: int):
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain reads absl flags; mentor's CLI has its own
        flags.FLAGS.mark_as_parsed()

    def in_workers(first: int):
        steps = grain.MapDataset.range(first, stop).map(draw)
        # In each worker one thread: a worker decodes a whole batch, and two PIL threads
        # per worker would only contend for the same cores.
        return steps.to_iter_dataset(
            grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)).mp_prefetch(
                grain.MultiprocessingOptions(num_workers=workers,
                                             per_worker_buffer_size=PREFETCH_PER_WORKER),
                worker_init_fn=watch_parent)

    class Steps(grain.DatasetIterator):
        """Global steps start … stop−1: the first INLINE_BATCHES drawn here, the rest by
        workers started on first need."""

        def __init__(self):
            super().__init__()
            self.g, self.workers = start, None

        def __next__(self):
            if self.g >= stop:
                self.close()
                raise StopIteration
            if self.g < start + INLINE_BATCHES:
                batch = draw(self.g)
            else:
                if self.workers is None:
                    self.workers = iter(in_workers(self.g))
                batch = _own(next(self.workers))
            self.g += 1
            return batch

        def get_state(self):
            return {"step": self.g}

        def set_state(self, state):
            self.close()
            self.g, self.workers = state["step"], None

        def close(self):
            if self.workers is not None:
                self.workers.close()
                self.workers = None

    class Streamed(grain.IterDataset):
        """Each iterator stops the ones made before it: Keras drops the iterators it
        peeks with, whose workers would otherwise hold their prefetched batches."""

        def __init__(self):
            super().__init__()
            self.iterators = []

        def __iter__(self):
            self.close()
            self.iterators.append(Steps())
            return self.iterators[-1]

        def close(self):
            while self.iterators:
                self.iterators.pop().close()

    return Streamed()


class EvalBatches(keras.utils.PyDataset):
    """A file-backed set in order, `batch_size` images at a time: (x, y) for validation,
    x alone for prediction. Keras gets one batch at a time from one thread, so the order
    cannot change (with threads, Keras 3.15 serves its first-batch peek out of turn); each
    batch is decoded by `threads` threads (0: one per core; PIL lets go of the interpreter
    while it decodes and resizes)."""

    def __init__(self, x: ImageFiles, y=None, batch_size: int = 256, *, threads: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.threads = threads or available_cores()

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = np.arange(index * self.batch_size, min(len(self.x), (index + 1) * self.batch_size))
        x = self.x.decode_rows(rows, threads=self.threads)
        return (x,) if self.y is None else self._scored(x, self.y[rows], rows)

    def _scored(self, x, y, rows):
        """The batch without the images that could not be read: a stand-in (the decode's
        neighbour) would be scored against the label of the image it replaces. The batch
        is cut to a multiple of the device count, as `trim_to_devices` cuts the set."""
        part = self.x.take(rows)  # shares what the decode found unreadable
        keep = scored_rows(part)
        if keep.all():
            return x, y
        lost = unscored(part)
        BadImages.note_unscored(self.x.name, lost)
        if process_shard()[1] > 1:
            raise MentorError(
                f"{self.x.name}: the validation image {lost[0][0]} cannot be read "
                f"({lost[0][1]}); a run of many processes cannot leave it out (every process's "
                "batch keeps one size). Restore or remove the file, and run again.")
        keep = np.flatnonzero(keep)
        keep = keep[:len(keep) // device_count() * device_count()]
        if not len(keep):
            raise MentorError(
                f"{self.x.name}: none of validation images {rows[0]}..{rows[-1]} can be read "
                f"(e.g. {lost[0][0]}: {lost[0][1]}); restore the files, or remove them and "
                "list the data again.")
        return x[keep], y[keep]
