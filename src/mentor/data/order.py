"""Which rows each step draws: the batches of a run as a pure function of the global step.

Batch g of an order over n images takes positions g·b … g·b+b−1 of an endless chain of
permutations, permutation k drawn from (seed, salt, k). So epochs need not divide the
data, two orders over sets of different sizes stay independent, workers may compute batches
in any order, and a run resumed at step g sees exactly the batches it would have seen.

A `Draw` is that function: `draw(g)` is batch g. The same object serves the in-memory loader
(a Keras PyDataset calling it in the main process) and the streaming one (Grain worker
processes calling it on file-backed images), so it holds only arrays and `ImageFiles` and
imports neither Keras nor a backend; for the same reason `watch_parent`, which every such
worker runs first, lives here.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np


class Order:
    """Endless shuffled order over n rows; rows for batch g are a pure function of g."""

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


class Draw:
    """Batch g of one image set: (x, y), uint8 images and int64 labels. With `shard` =
    (index, count) of many processes, this process's consecutive share of the global batch
    g: its rows are chosen before anything is read, so each process decodes only its own."""

    def __init__(self, x, y, batch_size: int, seed: int, shuffle: bool = True, *,
                 shard=(0, 1)):
        self.x, self.y, self.shard = x, y, tuple(shard)
        self.order = Order(len(y), batch_size, seed, salt=0, shuffle=shuffle)

    def share(self, rows: np.ndarray) -> np.ndarray:
        index, count = self.shard
        size = len(rows) // count
        return rows[index * size:(index + 1) * size]

    def __call__(self, g: int):
        rows = self.share(self.order.rows(int(g)))
        return self.x[rows], self.y[rows]


class PairedDraw(Draw):
    """Batch g of a labeled source and an unlabeled target drawn `ratio`× as many a step:
    ({"source": x, "target": x_t[, "target_labels": y_t]}, y). Target labels ride along for
    monitoring only (pseudo-label accuracy)."""

    def __init__(self, x, y, x_t, y_t, batch_size: int, seed: int, *, ratio: int,
                 target_labels: bool, shuffle: bool = True, shard=(0, 1)):
        super().__init__(x, y, batch_size, seed, shuffle, shard=shard)
        self.x_t, self.y_t, self.target_labels = x_t, y_t, target_labels
        self.target_order = Order(len(y_t), batch_size * ratio, seed, salt=1)

    def __call__(self, g: int):
        rows = self.share(self.order.rows(int(g)))
        rows_t = self.share(self.target_order.rows(int(g)))
        x = {"source": self.x[rows], "target": self.x_t[rows_t]}
        if self.target_labels:
            x["target_labels"] = self.y_t[rows_t]
        return x, self.y[rows]


class LabeledDraw(Draw):
    """Batch g with the flags of which labels a loss may use: ({"images", "labeled"}, y)."""

    def __init__(self, x, y, mask, batch_size: int, seed: int, shuffle: bool = True, *,
                 shard=(0, 1)):
        super().__init__(x, y, batch_size, seed, shuffle, shard=shard)
        self.mask = np.asarray(mask, bool)

    def __call__(self, g: int):
        rows = self.share(self.order.rows(int(g)))
        return {"images": self.x[rows], "labeled": self.mask[rows]}, self.y[rows]


# How often a loader worker checks that the process it serves is alive, in seconds: a worker
# outliving a killed run (SIGKILL, a pre-empted machine) would hold its memory and cores.
_PARENT_CHECK_SECONDS = 1.0


def watch_parent(worker_index: int = 0, worker_count: int = 1):
    """Run in each loader worker as it starts: exit once the training process is gone. A
    killed parent cannot stop its workers, and multiprocessing's spawned children are
    re-parented and live on; polling the parent's pid works on every POSIX system, where
    Linux's parent-death signal would follow the thread that started the worker."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="mentor-watch-parent", daemon=True).start()
