"""What a recipe is to the rest of mentor: one `Recipe`, declared at the end of its module,
which the registry (mentor.recipes) hands to the CLI, `evaluate`, the report, the demo,
the Python API and the tests.

`Recipe.run` is the skeleton every run shares, written once: the run folder, the random
seed and the data (`start_run`), every model and view built before the first step
(`preflight`), the recipe's own part (`train`: its models, its numbers, its figures), then
the report and metrics.json (`finish_run`); around it the runtime (devices, precision) and
status.json.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import keras

from mentor.config import record_reads
from mentor.core.lifecycle import finish_run, preflight, start_run
from mentor.data.files import BadImages
from mentor.data.imageset import ImageSet
from mentor.run_folders import RunDir, status_kept
from mentor.runtime import runtime
from mentor.verdict import with_caveats


@dataclass(frozen=True)
class Started:
    """What the skeleton hands a recipe's `train`: the resolved config, the run folder,
    the data split three ways, the run's name, and the image side the models are built at
    (`Recipe.image_size`; 0 → the data's own)."""
    config: object
    run_dir: RunDir
    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    name: str
    image_size: int = 0


@dataclass
class Outcome:
    """What a recipe's `train` gives back: its metrics (after `recipe` and `backend`), the
    report's figures as (caption, file name), notes under them, and a title that says more
    than the recipe's own (AdaMatch names its mode)."""
    metrics: dict
    figures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    title: str = ""


@dataclass(frozen=True)
class Demo:
    """A recipe's part of `mentor demo`: its preset, what it shows, the seconds it took on a
    2-core CPU (the yardstick of the demo's time-left estimate), and the part whose model
    it takes as its teacher when that part ran first."""
    preset: str
    shows: str
    seconds: float
    teacher_from: str = ""


def _no_companions(run_path: pathlib.Path, config) -> dict:
    return {}


@dataclass(frozen=True)
class Recipe:
    name: str
    config: type  # its config dataclass: `recipe = "<name>"` in TOML picks it
    train: Callable[[Started], Outcome]
    title: str  # the report's title after the run's name
    delivers: str  # the file of the model it trains, which `mentor evaluate RUN` scores first
    verdict: Callable[[dict], str]  # one sentence from metrics.json
    headline: Callable[[dict], str]  # the comparison that matters, in one short line
    figure: str  # the report figure that carries that comparison
    glossary: Mapping[str, str] = field(default_factory=dict)  # its metric names
    # Other models of a finished run worth scoring beside it (a teacher): name → file.
    companions: Callable[[pathlib.Path, object], dict] = _no_companions
    # A finished run scored on other data, when a model alone is not the run's measure
    # (distillation's test view and teacher): (run path, config, source, batch_size,
    # unsafe) → metrics.
    evaluate: Callable | None = None
    # The side of the images its models take, when not the data's (distillation's crop).
    image_size: Callable[[object, ImageSet], int] | None = None
    demo: Demo | None = None

    def run(self, config, out, *, name: str | None = None) -> dict:
        """Train, evaluate and write the run folder; returns metrics.json's content. Around
        it: the devices and precision of its [runtime] section (recorded in metrics.json),
        its policy for images that do not decode, which config keys it reads, and its
        status.json."""
        if not isinstance(config, self.config):
            raise TypeError(f"recipe {self.name!r} runs a {self.config.__name__}, got "
                            f"{type(config).__name__}")
        run_dir = out if isinstance(out, RunDir) else RunDir(out)
        batches = [config.train.batch_size]
        teacher = getattr(config, "teacher", None)
        if teacher is not None and not teacher.path:
            batches.append(teacher.train.batch_size)
        with status_kept(run_dir), \
                runtime(config.runtime.devices, config.runtime.precision, batches) as chosen, \
                BadImages.scope(config.data.strict), record_reads(config):
            run_dir.runtime = chosen
            return self._run(config, run_dir, name=name or self.name)

    def _run(self, config, run_dir: RunDir, *, name: str) -> dict:
        train, val, test = start_run(config, run_dir, name)
        size = self.image_size(config, train) if self.image_size else 0
        preflight(config, train, size)
        outcome = self.train(Started(config, run_dir, train, val, test, name, size))
        metrics = {"recipe": self.name, "backend": keras.backend.backend(),
                   **outcome.metrics}
        return finish_run(run_dir, config, f"{name}: {outcome.title or self.title}", metrics,
                          outcome.figures, outcome.notes, verdict=self.say,
                          glossary=self.glossary)

    def say(self, metrics: dict) -> str:
        """The verdict sentence, led by what makes the numbers doubtful where something
        does."""
        return with_caveats(metrics, self.verdict(metrics))

    def models(self, run_path: pathlib.Path, config) -> dict:
        """A finished run's models to score, the one it trains first: name → file."""
        return {("student" if self.delivers == "student.keras" else "model"):
                run_path / self.delivers, **self.companions(run_path, config)}

