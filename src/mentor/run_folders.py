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
    .mentor-run.json  the mark that this folder is mentor's, written before anything else:
                   what kind of folder it is, the data it started from, and the files that
                   mentor may delete again (its rotated checkpoints)

mentor writes only into a folder that is new, empty or marked as its own, and deletes only
files its mark lists: a user's folder given as --out by mistake is refused, not overwritten.
Temporary files get names no user file has (`.mentor-tmp-…`) and are removed on any failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
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

from mentor.atomic import TEMP_PREFIX, atomic_path, write_atomically
from mentor.config import dumps
from mentor.errors import MentorError, UsageError
from mentor.runtime import barrier, from_process_0, process_shard, writes


class NotOurs(MentorError):
    """The directory holds another run (live, or of another config): refused, and its
    status left as it is."""


def default_run_path(name: str, root: str = "runs", *, inputs=()) -> pathlib.Path:
    """runs/NAME-TIMESTAMP, made here: a second run started in the same second (another
    shell, a script's loop) gets NAME-TIMESTAMP-2, not the first one's folder. In a
    multi-process job every process must name the same folder, so there it is only named
    (give such jobs --out). Refused, before it is made, inside a data folder in `inputs`."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = pathlib.Path(root) / f"{name}-{stamp}"
    check_not_inside(base, inputs)
    if process_shard()[1] > 1:
        return base
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()  # atomic: of two processes, one gets each name
            return path
        except FileExistsError:
            continue
    return base


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage of a run ("model", "teacher", "student" or "baseline"): the run
    directory it belongs to, its checkpoint folder, its history file and its TensorBoard
    log folder. `RunDir.stage` makes them; `Stage()` trains in memory, with neither
    checkpoints nor logs."""

    name: str = "model"
    run: pathlib.Path | None = None
    checkpoints: pathlib.Path | None = None
    history: pathlib.Path | None = None
    tensorboard: pathlib.Path | None = None

    @property
    def train_key(self) -> str:
        """The config section its optimizer and schedule come from: a teacher trained in
        the run has its own [teacher.train]; the model, student and baseline use [train]."""
        return "teacher.train" if self.name == "teacher" else "train"


class RunDir:
    def __init__(self, path, *, kind: str = "run", resume_anyway: bool = False, inputs=()):
        self.path = pathlib.Path(path)
        self.resume_anyway = resume_anyway
        check_not_inside(self.path, inputs)
        claim(self.path, kind)
        if (self.path / "metrics.json").exists():
            raise MentorError(
                f"{self.path} already holds a completed run (metrics.json). Choose another "
                "--out, or delete that directory to run again."
            )
        try:
            if writes():  # the others of a multi-process job only read it
                probe = self.path / f"{TEMP_PREFIX}{os.getpid()}-write-test"
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
        # a newline inside an argument would end the comment and break the TOML
        header = (f"# resolved from {_one_line(source)}\n# command: {_one_line(command)}\n\n")
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
                recorded = _what_it_is(existing.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                # A config.toml cut short (a full disk, a copy interrupted) must not strand
                # intact checkpoints: loading them checks them against the models' shapes,
                # so a config that does not fit them still stops there, with a message.
                print(f"mentor: warning: config.toml of {self.path} is damaged ({e}); "
                      "rewritten with this run's config", file=sys.stderr, flush=True)
                write_atomically(existing, header + body)
                recorded = _what_it_is(body)
            if recorded != _what_it_is(body):
                raise NotOurs(
                    f"{self.path} holds an unfinished run with another config "
                    "(config.toml): resume it with the same config and overrides, or choose "
                    "another --out.")
            self._check_same_data(tomllib.loads(body))
            self.resumed = True
            print(f"mentor: {self.path} holds an unfinished run with this config: resuming it",
                  flush=True)
            self.mark("running")
            return
        write_atomically(self.file("config.toml"), header + body)
        update_mark(self.path, data=data_fingerprints(tomllib.loads(body)))
        self.mark("running")

    def _check_same_data(self, values: dict):
        """A resume trains on with what the run started from: a data file or folder that
        changed since (replaced in place, images added or removed) would leave a model
        trained on two data sets, reported as one."""
        recorded = read_mark(self.path).get("data", {})
        now = data_fingerprints(values)
        changed = [key for key in recorded if recorded[key] != now.get(key)]
        if not changed:
            return
        key = changed[0]
        what = f"{key} = {recorded[key].get('path')!r}"
        if self.resume_anyway:
            print(f"mentor: warning: {what} changed since this run started; resuming anyway "
                  "(--resume-anyway): its model has seen both versions", file=sys.stderr,
                  flush=True)
            # metrics.json says so too: its numbers come from a model of two data sets
            update_mark(self.path, data_changed=sorted(set(
                read_mark(self.path).get("data_changed", [])) | set(changed)))
            return
        raise NotOurs(
            f"{what} changed since the unfinished run in {self.path} started (its size, "
            "contents or listing differ): resuming would train one model on two data sets. "
            "Choose another --out to start afresh, restore the data, or pass "
            "--resume-anyway (Python: resume_anyway=True) to resume all the same.")

    def mark(self, state: str, **info):
        mark(self.path, state, **info)

    # A stage's checkpoint folder and history file: the main model's at the top (history.csv,
    # checkpoints/), the student's in checkpoints/student with history.csv, the others
    # prefixed by their name. TensorBoard logs go to tensorboard/<stage name> for every
    # stage: TensorBoard lists runs by folder, so each stage is a curve of its own.
    _STAGES = {"model": ("", "history.csv"), "student": ("student", "history.csv")}

    def stage(self, name: str):
        """The Stage `name` of this run trains in."""
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
        write_atomically(self.file("stages.json"), json.dumps(stages, indent=2) + "\n")

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
        with atomic_path(final) as tmp:
            model.save(tmp)

    def write_metrics(self, metrics: dict) -> pathlib.Path:
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise MentorError(f"metric {key} is {value}; refusing to record a broken run.")
        metrics.update(self.runtime)
        changed = read_mark(self.path).get("data_changed")
        if changed:
            metrics["warning_data_changed_on_resume"] = ", ".join(changed)
        if writes():
            write_atomically(self.file("metrics.json"), json.dumps(metrics, indent=2) + "\n")
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


def read_status(path) -> dict:
    """The run directory's status.json, with "interrupted" for a run recorded as running
    whose process is gone from this machine (killed, pre-empted, powered off). A completed
    run (metrics.json) is "completed" whatever status.json says."""
    path = pathlib.Path(path)
    if read_mark(path).get("kind") not in ("run", "robustness"):
        return {}  # not a run of mentor's (a demo's folder of runs, or someone else's)
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
            and not _alive(status.get("pid", -1), status.get("pid_started")):
        status["state"] = "interrupted"
    return status


def _alive(pid: int, started=None) -> bool:
    """Whether process `pid` is the one that wrote the status: alive, and (where the status
    recorded it) started when that one did; a pid the system gave to another process since
    (after a reboot, or many processes later) is not the run."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError, TypeError):
        return isinstance(pid, int) and pid > 0
    if started is not None:
        now = _started(int(pid))
        return now is None or now == started
    # A status without the start time: at least the process must be a Python one
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            command = f.read()
    except OSError:
        return True  # no /proc (macOS): the pid is all there is
    return b"python" in command or b"mentor" in command


def _started(pid: int):
    """When process `pid` started, in clock ticks since boot (Linux), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of proc(5): starttime; fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def status_kept(run_dir: RunDir):
    """status.json says how a run ended: failed (with the message) on an error, interrupted
    on Ctrl-C or SIGTERM. "running" and "completed" are written by write_config and
    write_metrics; a folder that holds another run (NotOurs) keeps its status."""
    try:
        yield run_dir
    except NotOurs:
        raise
    except KeyboardInterrupt:
        run_dir.mark("interrupted")
        raise
    except BaseException as e:
        run_dir.mark("failed", message=str(e) or type(e).__name__)
        raise


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
                  pid_started=_started(os.getpid()), **info)
    if state != "failed":
        status.pop("message", None)
    write_atomically(path, json.dumps(status, indent=2) + "\n")


MARK = ".mentor-run.json"
KINDS = {"run": "a training run", "robustness": "a robustness evaluation",
         "demo": "a demo (a folder of runs)"}


def claim(path, kind: str = "run") -> pathlib.Path:
    """Make `path` a folder of mentor's, or refuse it: a new folder is created and an empty
    one taken, each marked (MARK) before anything is written in it; a marked one of the same
    kind is mentor's already. Anything else holds someone's files, which a run would
    overwrite: refused, naming the folder and what to do."""
    path = pathlib.Path(path)
    mark_file = path / MARK
    if mark_file.is_file():
        found = read_mark(path).get("kind", "run")
        if found != kind:
            raise UsageError(
                f"{path} holds {KINDS.get(found, found)} of mentor's, not "
                f"{KINDS.get(kind, kind)}; give --out a new folder.")
        return path
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder; give --out a new or empty folder.")
    try:
        entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror or e}); give --out a new folder "
                          "in a place you can write.") from None
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3
                                          else "")
        raise UsageError(
            f"{path} holds files that are not a mentor run ({shown}): mentor writes only into "
            f"a new folder, an empty one, or one it has marked as its own ({MARK}), so that "
            "nothing of yours is overwritten. Give --out a new folder name (it is created).")
    if writes():
        try:
            path.mkdir(parents=True, exist_ok=True)
            # Exclusive create, and first: a second process sees an empty folder or a
            # marked one, never one with a stray file in it.
            with open(mark_file, "x") as f:
                json.dump({"mentor": 1, "kind": kind, "created": _now(), "files": []}, f)
        except FileExistsError:
            pass  # another process of the same job marked it a moment ago
        except OSError as e:  # a run-time failure of the file system, not a usage error
            raise MentorError(
                f"cannot write the run directory {path} ({e.strerror or e}). "
                "Pass --out with a writable directory.") from None
    return path


def check_not_inside(out, inputs):
    """A run folder inside a data folder it reads (or one holding it) would be read as data
    next time (a class folder named after the run) or write among the user's images."""
    out = pathlib.Path(os.path.abspath(out))
    for given in inputs:
        folder = pathlib.Path(os.path.abspath(given))
        if not folder.is_dir():
            continue
        if folder == out or folder in out.parents or out in folder.parents:
            raise UsageError(
                f"--out {out} lies in (or holds) the data folder {given} that this run reads: "
                "its files would mix with the data. Give --out a folder outside it.")


def input_paths(values: dict) -> list[str]:
    """The files and folders on disk that a config reads (data, a teacher, a model file)."""
    return [f["path"] for f in data_fingerprints(values, hashed=False).values()]


def read_mark(path) -> dict:
    """The folder's mark ({} where there is none, or none that reads as one)."""
    try:
        mark_ = json.loads((pathlib.Path(path) / MARK).read_text())
    except (OSError, ValueError):
        return {}
    return mark_ if isinstance(mark_, dict) else {"kind": "run"}


def update_mark(path, **values):
    """Add to the mark of a folder of mentor's (process 0 of a job writes it)."""
    if not writes():
        return
    mark_ = read_mark(path)
    mark_.update(values)
    write_atomically(pathlib.Path(path) / MARK, json.dumps(mark_, indent=1) + "\n")


def owner_of(file) -> pathlib.Path | None:
    """The marked folder of mentor's that `file` lies in (the nearest), or None."""
    for folder in pathlib.Path(os.path.abspath(file)).parents:
        if (folder / MARK).is_file():
            return folder
    return None


def record_written(file):
    """List `file` in its run folder's mark: a file mentor may delete again later."""
    root = owner_of(file)
    if root is None:
        return
    name = os.path.relpath(os.path.abspath(file), root)
    files = read_mark(root).get("files", [])
    if name not in files:
        update_mark(root, files=[*files, name])


def forget_written(file):
    root = owner_of(file)
    if root is None:
        return
    name = os.path.relpath(os.path.abspath(file), root)
    update_mark(root, files=[f for f in read_mark(root).get("files", []) if f != name])


def written_by_mentor(file) -> bool:
    root = owner_of(file)
    return root is not None and os.path.relpath(os.path.abspath(file), root) in \
        read_mark(root).get("files", [])


def data_fingerprints(values: dict, hashed: bool = True) -> dict:
    """Each data source of a config that is a file or folder on disk (data.train, a
    target's, a teacher's file…), as {key: fingerprint}: what a resume compares (with
    `hashed` false, only {"path": …})."""
    found = {}

    def walk(section, prefix):
        for key, value in section.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, dotted + ".")
            elif isinstance(value, str) and prefix.split(".")[0] in _DATA_SECTIONS:
                target = _source_path(value)
                if target is not None:
                    found[dotted] = fingerprint(target) if hashed else {"path": target}

    walk(values, "")
    return found


_DATA_SECTIONS = {"data", "target", "teacher", "model", "source"}


def _source_path(spec: str) -> str | None:
    """The file or folder a source spec reads (`folder:X`, `list:X.csv`, `X.npz?k=v`, a
    model file), or None for what is not on disk (downloads, embedded data, names)."""
    path = spec.split("?", 1)[0]
    head, _, rest = path.partition(":")
    if rest and head in ("folder", "list", "npz", "file"):
        path = rest
    if not path or len(path) > 4096:
        return None
    try:
        return path if os.path.exists(path) else None
    except (OSError, ValueError):
        return None


_HEAD = 1 << 20  # bytes hashed at each end of a file: cheap at any size


def fingerprint(path: str) -> dict:
    """What identifies a data source's contents without reading it whole: a file's size and
    a hash of its first and last MiB (a file replaced in place by other images differs
    there); a folder's hash of every file's relative name, size and modification time."""
    import hashlib

    digest = hashlib.sha256()
    if os.path.isdir(path):
        count = 0
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    st = os.stat(full)
                    digest.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0"
                                  f"{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
                    count += 1
        return {"path": path, "files": count, "sha256": digest.hexdigest()}
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        digest.update(f.read(_HEAD))
        if size > _HEAD:
            f.seek(max(_HEAD, size - _HEAD))
            digest.update(f.read(_HEAD))
    found = {"path": path, "bytes": size, "sha256": digest.hexdigest()}
    if path.lower().endswith(".csv"):  # a list: the images it names count too
        found["listed"] = _listed_fingerprint(path)
    return found


def _listed_fingerprint(csv_path: str) -> str:
    """The SHA-256 of every listed file's name, size and modification time: images replaced
    under the same names change it while the list stays the same."""
    import csv
    import hashlib

    digest = hashlib.sha256()
    folder = os.path.dirname(os.path.abspath(csv_path))
    with contextlib.suppress(OSError, UnicodeDecodeError, csv.Error, ValueError):
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            for row in csv.reader(f):
                if not row:
                    continue
                file = os.path.join(folder, row[0].strip())
                with contextlib.suppress(OSError, ValueError):
                    st = os.stat(file)
                    digest.update(f"{row[0]}\0{st.st_size}\0{st.st_mtime_ns}\n"
                                  .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _one_line(text) -> str:
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")
