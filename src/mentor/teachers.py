"""Getting the teacher of `consistency` and `distill`: a `.keras` file, the directory of a
finished run, the teacher this run trained before it was interrupted, or one trained now
with the [teacher.*] sections and saved as teacher.keras at once."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import keras

from mentor.core.lifecycle import build_for, check_model_matches
from mentor.core.trainer import train_classifier
from mentor.errors import MentorError
from mentor.models import count_params, load_model
from mentor.models.loading import check_classifier
from mentor.models.scales import scaled
from mentor.objects import MODEL_PREFIX, lookup


@dataclasses.dataclass
class Teacher:
    model: keras.Model
    steps: int = 0  # optimizer steps it trained in this run (0: loaded from teacher.path)
    seconds: float = 0.0
    initial_weights: list | None = None  # before training, when trained in this process
    stage: object = None  # the run_folders.Stage it trained in, None when loaded


def teacher_file(path) -> pathlib.Path:
    """A teacher named by a .keras path or by a mentor run directory."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return path
    for name in ("model.keras", "student.keras", "teacher.keras"):
        if (path / name).is_file():
            return path / name
    raise MentorError(f"{path} is a directory without model.keras (or student.keras): give "
                      "the .keras file itself, or the directory of a completed mentor run.")


def teacher_beside(run_path: pathlib.Path, config) -> dict:
    """The teacher of a finished run, to score beside its student: the teacher.keras the run
    saved, or the file its teacher.path names while that still exists (a moved teacher
    leaves the student worth scoring alone)."""
    teacher = run_path / "teacher.keras"
    if not teacher.is_file() and config.teacher.path:
        try:
            teacher = teacher_file(config.teacher.path)
        except MentorError:
            return {}
    return {"teacher": teacher} if teacher.is_file() else {}


def is_saved_model(path) -> bool:
    return (pathlib.Path(path) / "saved_model.pb").is_file()


def load_saved_model(path, image_shape) -> keras.Model:
    """A TensorFlow SavedModel (the keras-io distillation example's teacher format) as a
    Keras model, through keras.layers.TFSMLayer: TensorFlow backend only."""
    if keras.backend.backend() != "tensorflow":
        raise MentorError(
            f"{path} is a TensorFlow SavedModel, which Keras runs on the TensorFlow backend "
            "only: run with KERAS_BACKEND=tensorflow, or convert it once there (load it with "
            "keras.layers.TFSMLayer in a keras.Model and save that as a .keras file).")
    images = keras.Input(image_shape, name="images")
    out = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(images)
    if isinstance(out, dict):
        if len(out) != 1:
            raise MentorError(f"{path} has {len(out)} outputs ({', '.join(out)}); a teacher "
                              "gives one vector of class scores.")
        out = next(iter(out.values()))
    return keras.Model(images, out, name="saved_model_teacher")


def get_teacher(config, train, val, run, *, unsafe: bool = False) -> Teacher:
    """The teacher: loaded from teacher.path, else the one this run trained before (its
    teacher.keras, after a resume), else trained here by the plain labelled step and saved as
    teacher.keras, so that a resumed run does not train it again."""
    t = config.teacher
    if t.path:
        if t.path.startswith(MODEL_PREFIX):  # a keras.Model given from Python (mentor.api)
            teacher, where = lookup(t.path), "the teacher given to mentor.api (teacher=)"
        elif is_saved_model(t.path):
            teacher, where = load_saved_model(t.path, train.image_shape), f"teacher.path {t.path}"
        else:
            file = teacher_file(t.path)
            teacher, where = load_model(file, safe_mode=not unsafe), f"teacher.path {file}"
        check_classifier(teacher, where)
        teacher = scaled(teacher, t.input_scale)
        check_model_matches(teacher, train)
        if t.path.startswith(MODEL_PREFIX) and not run.file("teacher.keras").is_file():
            # The Python object is gone once the process ends; its copy keeps the finished
            # run folder whole, for `mentor evaluate RUN` to set student beside teacher.
            run.save_model(teacher, "teacher.keras")
        return Teacher(teacher)
    stage = run.stage("teacher")
    if run.file("teacher.keras").is_file():
        teacher = load_model(run.file("teacher.keras"), safe_mode=not unsafe)
        check_model_matches(teacher, train)
        record = run.stages().get("teacher", {})
        print(f"teacher: loaded {run.file('teacher.keras')}, trained earlier in this run",
              flush=True)
        return Teacher(teacher, record.get("steps", 0), record.get("seconds", 0.0),
                       stage=stage)
    start = time.time()
    teacher = build_for(t.model, train, key="teacher.model")
    initial = teacher.get_weights()
    print(f"teacher: training {t.model.name} ({count_params(teacher, trainable_only=True):,} "
          "parameters) with labels", flush=True)
    trainer = train_classifier(teacher, train, val, stage, augment_cfg=t.augment,
                               train_cfg=t.train, seed=config.seed,
                               workers=config.data.workers)
    run.save_model(teacher, "teacher.keras")
    seconds = round(time.time() - start, 1)
    run.record_stage("teacher", steps=trainer.steps, seconds=seconds)
    return Teacher(teacher, trainer.steps, seconds, initial, stage)
