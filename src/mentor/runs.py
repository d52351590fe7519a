"""The run directory: what every run leaves behind, the output contract scripts read.

    config.toml    the resolved config, with the command that made it
    status.json    what the run is doing: running (stage, epoch, process id), completed,
                   failed (with the message) or interrupted; `mentor status DIR` reads it
    history.csv    one row per epoch (teacher_history.csv, baseline_history.csv: theirs)
    stages.json    the steps and seconds of stages finished before a resume
    checkpoints/   the whole training state every few epochs (written atomically); running
                   the same config into the same directory resumes from the newest
    tensorboard/   one folder per stage (model, teacher, student, baseline), each with
                   train/ and validation/ event files: `tensorboard --logdir runs/`
    *.keras        the final model(s)
    report.html    metrics and figures
    metrics.json   one flat object of named numbers; written last, so it exists only for
                   completed runs
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import json
import math
import os
import pathlib
import shlex
import shutil
import socket
import sys
import tempfile
import time

import keras

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mentor.config import dumps
from mentor.errors import MentorError
from mentor.runtime import barrier, from_process_0, writes


class NotOurs(MentorError):
    """The directory holds another run (live, or of another config): refused, and its
    status left as it is."""


def default_run_path(name: str, root: str = "runs") -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path(root) / f"{name}-{stamp}"


class RunDir:
    def __init__(self, path):
        self.path = pathlib.Path(path)
        if (self.path / "metrics.json").exists():
            raise MentorError(
                f"{self.path} already holds a completed run (metrics.json). Choose another "
                "--out, or delete that directory to run again."
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if writes():  # the others of a multi-process job only read it
                probe = self.path / ".write-test"
                probe.write_text("ok")
                probe.unlink()
        except OSError as e:
            raise MentorError(
                f"cannot write the run directory {self.path} ({e.strerror or e}). "
                "Pass --out with a writable directory."
            ) from None
        self.checkpoints = self.path / "checkpoints"
        self.resumed = False
        self.runtime = {}  # devices and precision, once a recipe has chosen them
        self.started = time.time()  # metrics.json's seconds count from here
        check_free_space(self.path, MIN_FREE_BYTES, "a run's checkpoints, models and report")

    def file(self, name: str) -> pathlib.Path:
        return self.path / name

    def write_config(self, values: dict, source: str):
        """Record the resolved config. A directory that already holds one is an unfinished
        run: the same config resumes it (from its checkpoints), another is refused."""
        body = dumps(values)
        command = " ".join(shlex.quote(a) for a in ["mentor", *sys.argv[1:]]) \
            if os.path.basename(sys.argv[0]) == "mentor" else "(Python API)"
        header = f"# resolved from {source}\n# command: {command}\n\n"
        # In a multi-process job process 0 alone decides (runtime.writes) and the others
        # follow: whether the run resumes, or that it is refused (then every process stops
        # here, none waits for the others in a training step).
        refused = None
        if writes():
            try:
                self._write_config(body, header)
            except MentorError as error:
                refused = error
        resumed, ok = from_process_0(int(self.resumed), int(refused is None))
        self.resumed = bool(resumed)
        if refused is not None:
            raise refused
        if not ok:
            raise NotOurs(f"{self.path}: process 0 of this job refused the run directory "
                          "(its log says why).")

    def _write_config(self, body: str, header: str):
        existing = self.file("config.toml")
        status = read_status(self.path)
        if status.get("state") == "running" and status.get("pid") != os.getpid() \
                and status.get("host") == socket.gethostname():
            raise NotOurs(
                f"{self.path} is being written by another mentor process right now (pid "
                f"{status['pid']}); wait for it, stop it, or choose another --out.")
        # A run that ended before it saved anything (a bad setting found at the start) holds
        # nothing to resume: the corrected command starts it afresh in the same directory.
        saved = any(self.checkpoints.rglob("*.npz")) or any(self.path.glob("*.keras"))
        if existing.is_file() and saved:
            try:
                recorded = _what_it_is(existing.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                # A config.toml cut short (a full disk, a copy interrupted) must not strand
                # intact checkpoints: loading them checks them against the models' shapes,
                # so a config that does not fit them still stops there, with a message.
                print(f"mentor: warning: config.toml of {self.path} is damaged ({e}); "
                      "rewritten with this run's config", file=sys.stderr, flush=True)
                _atomic_write(existing, header + body)
                recorded = _what_it_is(body)
            if recorded != _what_it_is(body):
                raise NotOurs(
                    f"{self.path} holds an unfinished run with another config "
                    "(config.toml): resume it with the same config and overrides, or choose "
                    "another --out.")
            self.resumed = True
            print(f"mentor: {self.path} holds an unfinished run with this config: resuming it",
                  flush=True)
            self.mark("running")
            return
        _atomic_write(self.file("config.toml"), header + body)
        self.mark("running")

    def mark(self, state: str, **info):
        mark(self.path, state, **info)

    # A stage's checkpoint folder and history file: the main model's at the top (history.csv,
    # checkpoints/), the student's in checkpoints/student with history.csv, the others
    # prefixed by their name. TensorBoard logs go to tensorboard/<stage name> for every
    # stage: TensorBoard lists runs by folder, so each stage is a curve of its own.
    _STAGES = {"model": ("", "history.csv"), "student": ("student", "history.csv")}

    def stage(self, name: str):
        """The Stage (core.fit) `name` of this run trains in."""
        from mentor.core.fit import Stage

        folder, history = self._STAGES.get(name, (name, f"{name}_history.csv"))
        return Stage(name, self.path, self.checkpoints / folder if folder else self.checkpoints,
                     self.file(history), self.path / "tensorboard" / name)

    def record_stage(self, name: str, **facts):
        """Remember what a finished stage did (steps, seconds) in stages.json, for a run
        resumed after it: the stage is not trained again, but its numbers still count."""
        if not writes():
            return
        stages = self.stages()
        stages[name] = facts
        _atomic_write(self.file("stages.json"), json.dumps(stages, indent=2) + "\n")

    def stages(self) -> dict:
        try:
            return json.loads(self.file("stages.json").read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            print(f"mentor: warning: {self.file('stages.json')} is damaged; the steps of "
                  "stages finished before this resume are not counted", file=sys.stderr)
            return {}

    def save_model(self, model: keras.Model, name: str) -> pathlib.Path:
        final = self.file(name)
        try:
            self._save_model(model, name, final)
        finally:
            barrier(f"saved {name}")  # the others may read it next (a demo's teacher)
        return final

    def _save_model(self, model: keras.Model, name: str, final: pathlib.Path):
        if not writes():
            # Keras's saving creates variables, and under a multi-process distribution each
            # creation is a collective (JAX checks the value is the same everywhere): every
            # process saves, the others into a folder of their own that they delete.
            with tempfile.TemporaryDirectory() as scratch:
                model.save(os.path.join(scratch, name))
            return
        tmp = self.file(name.replace(".keras", ".partial.keras"))
        with disk_errors(tmp):
            model.save(tmp)
        os.replace(tmp, final)

    def write_metrics(self, metrics: dict) -> pathlib.Path:
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise MentorError(f"metric {key} is {value}; refusing to record a broken run.")
        metrics.update(self.runtime)
        if writes():
            _atomic_write(self.file("metrics.json"), json.dumps(metrics, indent=2) + "\n")
        self.mark("completed")
        return self.file("metrics.json")


# Below this a run cannot finish: a small model's checkpoints, models and report alone take
# a few MiB, and a disk this full fails other writers too. Checked at the start; the exact
# need is checked again before training (fit_resumable), when the models' size is known.
MIN_FREE_BYTES = 64 * 2**20


def check_free_space(directory, need: int, what: str):
    """Refuse to start what will need `need` bytes under `directory` when the disk lacks them."""
    os.makedirs(str(directory), exist_ok=True)
    free = shutil.disk_usage(str(directory)).free
    if free < need:
        raise MentorError(
            f"the disk holding {directory} has only {free / 2**20:.0f} MiB free but {what} "
            f"need about {need / 2**20:.0f} MiB. Free some space, lower "
            "train.keep_checkpoints, or pass --out on another disk.")


@contextlib.contextmanager
def disk_errors(partial):
    """Turn a full disk (or a quota) while writing `partial` into one plain message, and
    remove the part written: nothing half-written stays under a name that looks complete."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        with contextlib.suppress(OSError):
            os.remove(str(partial))
        raise MentorError(
            f"the disk is full: writing {partial} failed ({e.strerror}). Free some space and "
            "run the same command again: it resumes from the newest complete checkpoint."
        ) from None


def read_status(path) -> dict:
    """The run directory's status.json, with "interrupted" for a run recorded as running
    whose process is gone from this machine (killed, pre-empted, powered off). A completed
    run (metrics.json) is "completed" whatever status.json says."""
    path = pathlib.Path(path)
    try:
        status = json.loads((path / "status.json").read_text())
        if not isinstance(status, dict):
            raise TypeError(f"a JSON {type(status).__name__}, not an object")
    except FileNotFoundError:
        status = {"state": "unknown"} if (path / "config.toml").is_file() else {}
    except (ValueError, TypeError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError too
        # A damaged status.json (cut short by a full disk or a copy) must not hide intact
        # checkpoints: the run's files say what it can. metrics.json means completed (below);
        # saved checkpoints or models, a run that stopped part-way and can be resumed.
        print(f"mentor: warning: status.json of {path} is damaged ({e}); rebuilt from the "
              "run's files", file=sys.stderr, flush=True)
        saved = any((path / "checkpoints").rglob("*.npz")) or any(path.glob("*.keras"))
        status = {"state": "interrupted" if saved else "unknown", "rebuilt": True}
    if (path / "metrics.json").is_file():
        status["state"] = "completed"
    elif status.get("state") == "running" and status.get("host") == socket.gethostname() \
            and not _alive(status.get("pid", -1)):
        status["state"] = "interrupted"
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return pid > 0
    return True


def recorded(run):
    """Wrap a recipe's run(config, out, **kw): the devices and precision of its [runtime]
    section around it (recorded in metrics.json), and a status.json that says how it ended:
    failed (with the message) on an error, interrupted on Ctrl-C. "running" and "completed"
    are written by write_config and write_metrics."""
    from mentor.data.files import BadImages
    from mentor.runtime import runtime

    @functools.wraps(run)
    def wrapper(config, out, **kwargs):
        run_dir = out if isinstance(out, RunDir) else RunDir(out)
        batches = [config.train.batch_size]
        teacher = getattr(config, "teacher", None)
        if teacher is not None and not teacher.path:
            batches.append(teacher.train.batch_size)
        try:
            with runtime(config.runtime.devices, config.runtime.precision, batches) as chosen, \
                    BadImages.scope(config.data.strict):
                run_dir.runtime = chosen
                return run(config, run_dir, **kwargs)
        except NotOurs:
            raise
        except KeyboardInterrupt:
            run_dir.mark("interrupted")
            raise
        except BaseException as e:
            run_dir.mark("failed", message=str(e) or type(e).__name__)
            raise
    return wrapper


def _what_it_is(config_text: str) -> dict:
    """A config minus its [runtime] section (devices, precision): a run may resume on
    another machine."""
    values = tomllib.loads(config_text)
    values.pop("runtime", None)
    return values


def mark(run_path, state: str, **info):
    """Record a run's state in its status.json (atomically), keeping what earlier calls
    recorded: "running" (with stage and epoch as training goes), then "completed", "failed"
    (with the message) or "interrupted"."""
    if not writes():  # process 0 keeps the status of a multi-process job
        return
    path = pathlib.Path(run_path) / "status.json"
    try:
        status = json.loads(path.read_text())
    except (ValueError, OSError):  # none yet, or damaged (read_status warns of it): afresh
        status = {}
    if not isinstance(status, dict):
        status = {}
    now = datetime.datetime.now().isoformat(timespec="seconds")
    if state == "running" and status.get("state") != "running":
        status = {"started": now}
    status.update(state=state, updated=now, pid=os.getpid(), host=socket.gethostname(),
                  **info)
    if state != "failed":
        status.pop("message", None)
    _atomic_write(path, json.dumps(status, indent=2) + "\n")


def _atomic_write(path: pathlib.Path, text: str):
    tmp = path.with_name(path.name + ".partial")
    with disk_errors(tmp):
        tmp.write_text(text)
    os.replace(tmp, path)
