"""One pipeline from any source to batches.

    ImageSet (any size, 1 or 3 channels)
      → prepare(): resize-and-pad to image_size keeping aspect, gray↔RGB to `channels`
      → split_fraction() / labeled_split(): train/val/test, semi-supervised label budgets
      → Batches / PairedBatches: uint8 batches as a Keras PyDataset

Images stay uint8 until the model: augmentation runs on the backend inside the train step
(mentor.augment), so the loader only gathers rows, which is why it is never the bottleneck
(benchmarks/pipeline.py).

Order is a pure function of (seed, global step): batch g of a stream of n images takes
positions g·b … g·b+b−1 of an endless chain of permutations, permutation k drawn from
(seed, stream, k). So epochs need not divide the data, two streams of different sizes stay
independent, threads may fetch batches in any order, and a run resumed at step g sees exactly
the batches it would have seen.

Many processes (hosts): the batch is still the global one, its rows computed as above; each
process then keeps only its consecutive share (`shard`, from runtime.process_shard), and
Keras's JAX trainer lays the shares end to end in process order (runtime.py).
"""

from __future__ import annotations

import keras
import numpy as np

from mentor.data.imageset import ImageSet
from mentor.errors import MentorError


def prepare(data: ImageSet, image_size: int = 0, channels: int = 0) -> ImageSet:
    """Resize-and-pad to image_size×image_size and convert to `channels` (0 keeps as is)."""
    from mentor.data.resize import resize_and_pad, to_channels

    x = data.x
    if image_size and x.shape[1:3] != (image_size, image_size):
        x = resize_and_pad(x, image_size)
    if channels and x.shape[-1] != channels:
        x = to_channels(x, channels)
    if x is data.x:
        return data
    return ImageSet(x, data.y, data.class_names, data.name)


def _stratified_order(y: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]


def split_fraction(data: ImageSet, fraction: float, seed: int, names=("train", "val")):
    """Split off `fraction` of each class (stratified, seeded). Returns (rest, held_out)."""
    if not 0.0 < fraction < 1.0:
        raise MentorError(f"{data.name}: a split fraction must lie in (0, 1), got {fraction}.")
    rest, held = [], []
    for idx in _stratified_order(data.y, seed):
        k = int(round(fraction * len(idx)))
        held.append(idx[:k])
        rest.append(idx[k:])
    rest, held = np.sort(np.concatenate(rest)), np.sort(np.concatenate(held))
    if len(held) == 0 or len(rest) == 0:
        raise MentorError(
            f"{data.name}: splitting {len(data)} images at {fraction:.0%} leaves an empty part; "
            "use more data or another fraction."
        )
    return (data.subset(rest, f"{data.name}/{names[0]}"),
            data.subset(held, f"{data.name}/{names[1]}"))


def labeled_rows(data: ImageSet, labels_per_class: int, seed: int) -> np.ndarray:
    """The sorted rows of `labels_per_class` seeded images per class: those whose labels a
    semi-supervised run may use."""
    rows = []
    for c, idx in zip(np.unique(data.y), _stratified_order(data.y, seed)):
        if len(idx) < labels_per_class:
            raise MentorError(
                f"{data.name}: class {data.class_names[c]!r} has {len(idx)} images, fewer than "
                f"labels_per_class = {labels_per_class}. Lower labels_per_class or add data."
            )
        rows.append(idx[:labels_per_class])
    missing = sorted(set(range(data.num_classes)) - set(np.unique(data.y).tolist()))
    if missing:
        raise MentorError(
            f"{data.name}: no images at all for class(es) {missing[:10]}; labels_per_class "
            "needs every class present."
        )
    return np.sort(np.concatenate(rows))


def labeled_split(data: ImageSet, labels_per_class: int, seed: int):
    """Keep `labels_per_class` labeled images per class; the rest become unlabeled.

    Returns (labeled, unlabeled). The unlabeled set keeps its labels for monitoring only.
    """
    rows = labeled_rows(data, labels_per_class, seed)
    rest = np.setdiff1d(np.arange(len(data)), rows)
    return (data.subset(rows, f"{data.name}/labeled"),
            data.subset(rest, f"{data.name}/unlabeled"))


class _Stream:
    """Endless shuffled stream over n rows; rows for batch g are a pure function of g."""

    def __init__(self, n: int, batch_size: int, seed: int, salt: int, shuffle: bool = True):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.salt = seed, salt
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, k: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        if k not in self._perms:
            if len(self._perms) > 4:  # batches are fetched near each other in time
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, self.salt, k])
            self._perms[k] = rng.permutation(self.n)
        return self._perms[k]

    def rows(self, g: int) -> np.ndarray:
        pos = np.arange(g * self.batch_size, (g + 1) * self.batch_size)
        chain, within = np.divmod(pos, self.n)
        return np.concatenate([self._perm(int(k))[within[chain == k]] for k in np.unique(chain)])


def _check_batch(data: ImageSet, batch_size: int):
    if batch_size < 1:
        raise MentorError(f"batch size must be ≥ 1, got {batch_size}.")
    if len(data) == 0:
        raise MentorError(f"{data.name}: no images to draw batches from.")


def _check_shard(shard, batch_size: int) -> tuple[int, int]:
    from mentor.runtime import process_shard

    index, count = shard or process_shard()
    if not 0 <= index < count or batch_size % count:
        raise MentorError(f"shard {index} of {count} processes: the global batch "
                          f"{batch_size} must split evenly into {count} shares.")
    return index, count


class Batches(keras.utils.PyDataset):
    """Shuffled uint8 batches (x, y) of one ImageSet for a whole run of `steps` steps.

    Index i is global step start_step + i. Fit with `steps_per_epoch` and `shuffle=False`:
    Keras then draws one index after the other from a single iterator across epochs. Keras's
    own epoch bookkeeping cannot be the source of the order (measured with Keras 3.15: with
    one worker it calls on_epoch_end once more than there are epochs, with threads it
    prefetches the next epoch first), and `shuffle=True` would reorder indices with NumPy's
    global RNG. Every batch is full: the stream wraps into the next permutation.
    """

    def __init__(self, data: ImageSet, batch_size: int, *, steps: int, seed: int = 0,
                 shuffle: bool = True, start_step: int = 0, workers: int = 1, shard=None,
                 **kwargs):
        super().__init__(workers=workers, use_multiprocessing=False, **kwargs)
        _check_batch(data, batch_size)
        self.shard = _check_shard(shard, batch_size)
        if not 0 <= start_step < steps:
            raise MentorError(f"start_step must lie in [0, {steps}), got {start_step}.")
        self.data, self.steps, self.start_step = data, steps, start_step
        self.stream = _Stream(len(data), batch_size, seed, salt=0, shuffle=shuffle)

    def __len__(self):
        return self.steps - self.start_step

    def share(self, rows: np.ndarray) -> np.ndarray:
        """This process's part of a global batch's rows (all of them on one process)."""
        index, count = self.shard
        size = len(rows) // count
        return rows[index * size:(index + 1) * size]

    def __getitem__(self, index):
        rows = self.share(self.stream.rows(self.start_step + index))
        return self.data.x[rows], self.data.y[rows]


class PairedBatches(Batches):
    """Batches of two streams at a ratio: ({"source": x, "target": x_t}, y).

    The source stream is labeled (UDA source, SSL labeled set); the target stream draws
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
        self.target_stream = _Stream(len(target), batch_size * ratio, seed, salt=1)
        self.target_labels = target_labels

    def __getitem__(self, index):
        g = self.start_step + index
        rows, rows_t = self.share(self.stream.rows(g)), self.share(self.target_stream.rows(g))
        x = {"source": self.data.x[rows], "target": self.target.x[rows_t]}
        if self.target_labels:
            x["target_labels"] = self.target.y[rows_t]
        return x, self.data.y[rows]
