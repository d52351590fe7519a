"""The run directory: what every run leaves behind (DESIGN.md, output contract).

    config.toml    the resolved config, with the command that made it
    history.csv    one row per epoch
    checkpoints/   the whole training state every few epochs (written atomically); running
                   the same config into the same directory resumes from the newest
    *.keras        the final model(s)
    report.html    metrics and figures
    metrics.json   one flat object of named numbers; written last, so it exists only for
                   completed runs
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import shlex
import sys

import keras

from mentor.config import dumps
from mentor.errors import MentorError


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

    def file(self, name: str) -> pathlib.Path:
        return self.path / name

    def write_config(self, values: dict, source: str):
        """Record the resolved config. A directory that already holds one is an unfinished
        run: the same config resumes it (from its checkpoints), another is refused."""
        body = dumps(values)
        existing = self.file("config.toml")
        if existing.is_file():
            if existing.read_text().split("\n\n", 1)[-1] != body:
                raise MentorError(
                    f"{self.path} holds an unfinished run with another config "
                    "(config.toml): resume it with the same config and overrides, or choose "
                    "another --out.")
            self.resumed = True
            print(f"mentor: {self.path} holds an unfinished run with this config: resuming it",
                  flush=True)
            return
        command = " ".join(shlex.quote(a) for a in ["mentor", *sys.argv[1:]]) \
            if os.path.basename(sys.argv[0]) == "mentor" else "(Python API)"
        header = f"# resolved from {source}\n# command: {command}\n\n"
        _atomic_write(self.file("config.toml"), header + body)

    def save_model(self, model: keras.Model, name: str) -> pathlib.Path:
        final = self.file(name)
        tmp = self.file(name.replace(".keras", ".partial.keras"))
        model.save(tmp)
        os.replace(tmp, final)
        return final

    def write_metrics(self, metrics: dict) -> pathlib.Path:
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise MentorError(f"metric {key} is {value}; refusing to record a broken run.")
        _atomic_write(self.file("metrics.json"), json.dumps(metrics, indent=2) + "\n")
        return self.file("metrics.json")


def _atomic_write(path: pathlib.Path, text: str):
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)
