"""The whole training state of a trainer (models, optimizer, averages, recipe state, random
state) as one atomic .npz per checkpoint, and the callback that writes them."""

from __future__ import annotations

import os
import re
import sys

import keras
import numpy as np

from mentor.atomic import atomic_path
from mentor.errors import MentorError
from mentor.run_folders import forget_written, record_written, written_by_mentor
from mentor.runtime import writes


def _state_variables(trainer: keras.Model, exclude=()):
    """What a checkpoint holds: every variable of `trainer` (models, weight averages, recipe
    state, the augmenters' random-generator states) except metrics (reset every epoch) and
    the models in `exclude` (a frozen teacher: it is saved once, as teacher.keras)."""
    skip = {id(v) for m in exclude for v in m.variables}
    skip |= {id(v) for m in trainer.metrics for v in m.variables}
    return [v for v in trainer.variables if id(v) not in skip]


def save_state(trainer: keras.Model, path, *, epoch: int, exclude=()):
    """Write the trainer's and its optimizer's state to `path` (.npz) atomically: a reader
    sees the previous file or the whole new one, never a part."""
    arrays = {f"var{i}": np.asarray(keras.ops.convert_to_numpy(v))
              for i, v in enumerate(_state_variables(trainer, exclude))}
    arrays.update({f"opt{i}": np.asarray(keras.ops.convert_to_numpy(v))
                   for i, v in enumerate(trainer.optimizer.variables)})
    arrays["epoch"] = np.asarray(epoch)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    record_written(path)  # listed in the run's mark: the rotation may delete it later


def state_bytes(trainer: keras.Model, exclude=()) -> int:
    """The size of one checkpoint of `trainer` (before zip overhead)."""
    variables = [*_state_variables(trainer, exclude), *trainer.optimizer.variables]
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
               for v in variables)


def _read_state(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}  # reads every array: a truncated file fails here


def load_state(trainer: keras.Model, path, *, exclude=()) -> int:
    """Restore what `save_state` wrote; returns the number of epochs it had completed.
    The trainer must be compiled; its optimizer is built here so its slots exist."""
    state = _read_state(path)
    if not trainer.optimizer.built:
        trainer.optimizer.build(trainer.trainable_variables)
    variables = _state_variables(trainer, exclude)
    opt_vars = trainer.optimizer.variables
    n_var = sum(k.startswith("var") for k in state)
    n_opt = sum(k.startswith("opt") for k in state)
    shapes_ok = n_var == len(variables) and n_opt == len(opt_vars) and all(
        tuple(state[f"var{i}"].shape) == tuple(v.shape) for i, v in enumerate(variables)) and all(
        tuple(state[f"opt{i}"].shape) == tuple(v.shape) for i, v in enumerate(opt_vars))
    if not shapes_ok:
        raise MentorError(
            f"checkpoint {path} does not fit this run's models and optimizer ({n_var} "
            f"variables saved, {len(variables)} here): it was written with another config. "
            "Resume with the config the run started with, or choose another --out.")
    for i, v in enumerate(variables):
        v.assign(state[f"var{i}"])
    for i, v in enumerate(opt_vars):
        v.assign(state[f"opt{i}"])
    return int(state["epoch"])


_CHECKPOINT = re.compile(r"epoch-\d{4,}\.npz")  # exactly save_state's names, no look-alike


def checkpoint_files(directory) -> list:
    """Complete checkpoints in `directory`, oldest first."""
    if not os.path.isdir(str(directory)):
        return []
    names = sorted(f for f in os.listdir(str(directory)) if _CHECKPOINT.fullmatch(f))
    return [os.path.join(str(directory), f) for f in names]


def resume_from(trainer: keras.Model, directory, *, exclude=()) -> int:
    """Load the newest readable checkpoint in `directory`; return its epoch (0: none).
    A corrupt or truncated file is skipped, with a warning, for the one before it."""
    files = checkpoint_files(directory)
    for path in reversed(files):
        try:
            epoch = load_state(trainer, path, exclude=exclude)
        except MentorError:
            raise
        except Exception as error:  # zipfile, EOF, ValueError…: whatever a torn file gives
            print(f"mentor: warning: checkpoint {path} is unreadable ({type(error).__name__}: "
                  f"{error}); trying the one before it", file=sys.stderr, flush=True)
            continue
        print(f"resuming from {path}: {epoch} epochs done, optimizer step "
              f"{int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))}", flush=True)
        return epoch
    if files:
        print(f"mentor: warning: none of the {len(files)} checkpoint(s) in {directory} is "
              "readable: this stage starts over from its first step", file=sys.stderr,
              flush=True)
    return 0


class Checkpoints(keras.callbacks.Callback):
    """Every `every` epochs and after the last, the whole training state (save_state) to
    `<dir>/epoch-NNNN.npz`, written to a temporary name and renamed, keeping the newest
    `keep`."""

    def __init__(self, directory, every: int = 1, keep: int = 2, exclude=()):
        super().__init__()
        self.directory, self.every, self.keep = str(directory), max(1, every), max(1, keep)
        self.exclude = tuple(exclude)
        self.written = set()  # outside a run folder, what this callback wrote is all it deletes

    def on_epoch_end(self, epoch, logs=None):
        last = self.params is not None and epoch + 1 == self.params.get("epochs")
        if not writes() or ((epoch + 1) % self.every and not last):
            # Only process 0 of a multi-process job writes (the variables are replicated,
            # so its copy is every process's); reading them needs no other process.
            return
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"epoch-{epoch + 1:04d}.npz")
        save_state(self.model, path, epoch=epoch + 1, exclude=self.exclude)
        self.written.add(path)
        # Only checkpoints the run's mark lists (or this callback wrote) go: a file that
        # merely looks like one (a user's copy) is never deleted.
        for old in checkpoint_files(self.directory)[:-self.keep]:
            if old in self.written or written_by_mentor(old):
                os.remove(old)
                forget_written(old)
