"""Getting the teacher of `consistency` and `distill`: a `.keras` file, the directory of a
finished run, the teacher this run trained before it was interrupted, or one trained now
with the [teacher.*] sections and saved as teacher.keras at once; and the side of the
images it sees (`teacher.image_size`, its own fixed input, or the student's), every check
of it made before anything trains."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import keras

from mentor import augment
from mentor.core.lifecycle import build_for
from mentor.core.trainer import train_classifier
from mentor.data.imageset import ImageSet
from mentor.data.prepare import prepare
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
    size: int = 0  # the side of the images it sees (0: the student's)

    def seeing(self, size: int, model: keras.Model | None = None) -> keras.Model:
        """The teacher (or `model`, a function of it such as its flip average) taking the
        student's size×size images, resized to its own side on the way in."""
        return resized_input(self.model if model is None else model, size, self.size or size)


def resized_input(model: keras.Model, size: int, side: int) -> keras.Model:
    """`model` taking size×size images, which an `augment.Resize` brings to side×side in
    front of it (in the train step, on the device); `model` itself when the sides agree."""
    if side == size:
        return model
    images = keras.Input((size, size, model.input_shape[-1]), name="images")
    return keras.Model(images, model(augment.Resize(side, name="resize")(images)),
                       name=model.name)


def check_teacher(model: keras.Model, data: ImageSet, where: str):
    """A teacher predicts the data's classes (the student's: the loss matches their outputs
    class by class) from images of the data's channel count."""
    classes = model.output_shape[-1]
    if classes != data.num_classes or int(data.y.max()) >= classes:
        raise MentorError(f"the teacher predicts {classes} classes but the student "
                          f"{data.num_classes} ({where}); the student matches the teacher's "
                          "outputs class by class, so both need the data's classes.")
    channels, have = model.input_shape[-1], data.image_shape[-1]
    if channels is not None and channels != have:
        raise MentorError(f"{where} takes images of {channels} channels but {data.name} has "
                          f"{have}; give a teacher for {have}-channel images, or set "
                          f"data.channels = {channels}.")


def teacher_side(model: keras.Model, image_size: int, size: int, where: str, *,
                 say: bool = True) -> int:
    """The side of the images the teacher sees: `image_size` (teacher.image_size), else its
    own fixed input side, else the student's `size`. Refused when its input is fixed and
    cannot take a square view of that side."""
    height, width = model.input_shape[1:3]
    if height is None and width is None:  # a fully convolutional model: any side
        return image_size or size
    if height != width:
        raise MentorError(
            f"{where} takes images of {height}×{width} pixels, but it sees the student's "
            "square view resized: give a teacher with a square input, or one whose input "
            "side is free, shape (None, None, channels).")
    if image_size and image_size != height:
        raise MentorError(
            f"{where} takes {height}×{height} images but teacher.image_size = {image_size}; "
            f"set teacher.image_size = {height}, or 0 (the teacher's own input size).")
    if say and height != size:
        why = "teacher.image_size" if image_size else "its own input size; teacher.image_size = 0"
        print(f"teacher: takes {height}×{height} images ({why}): it sees each {size}×{size} "
              "view and test image resized to that", flush=True)
    return height


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


def get_teacher(config, train, val, run, *, size: int = 0, resized=None,
                unsafe: bool = False) -> Teacher:
    """The teacher: loaded from teacher.path, else the one this run trained before (its
    teacher.keras, after a resume), else trained here by the plain labelled step and saved as
    teacher.keras, so that a resumed run does not train it again.

    `train` and `val` are the data at the student's side `size` (0: train's own);
    `resized(side)` gives them at another side, for a teacher trained here at
    teacher.image_size (default: `prepare` of `train` and `val`). Every check of the teacher
    (classes, channels, input side) comes before it trains."""
    t = config.teacher
    size = size or train.image_shape[0]
    if t.path:
        side = t.image_size or size
        if t.path.startswith(MODEL_PREFIX):  # a keras.Model given from Python (mentor.api)
            teacher, where = lookup(t.path), "the teacher given to mentor.api (teacher=)"
        elif is_saved_model(t.path):
            teacher = load_saved_model(t.path, (side, side, train.image_shape[2]))
            where = f"teacher.path {t.path}"
        else:
            file = teacher_file(t.path)
            teacher, where = load_model(file, safe_mode=not unsafe), f"teacher.path {file}"
        check_classifier(teacher, where)
        check_teacher(teacher, train, where)
        side = teacher_side(teacher, t.image_size, size, where)
        teacher = scaled(teacher, t.input_scale)
        if t.path.startswith(MODEL_PREFIX) and not run.file("teacher.keras").is_file():
            # The Python object is gone once the process ends; its copy keeps the finished
            # run folder whole, for `mentor evaluate RUN` to set student beside teacher.
            run.save_model(teacher, "teacher.keras")
        return Teacher(teacher, size=side)
    side = t.image_size or size
    stage = run.stage("teacher")
    if run.file("teacher.keras").is_file():
        teacher = load_model(run.file("teacher.keras"), safe_mode=not unsafe)
        where = f"{run.file('teacher.keras')}, trained earlier in this run"
        check_teacher(teacher, train, where)
        teacher_side(teacher, t.image_size or size, size, where, say=False)
        record = run.stages().get("teacher", {})
        print(f"teacher: loaded {where}", flush=True)
        return Teacher(teacher, record.get("steps", 0), record.get("seconds", 0.0),
                       stage=stage, size=side)
    if side != size:
        resized = resized or (lambda s: (prepare(train, s),
                                         prepare(val, s) if val is not None else None))
        train, val = resized(side)
        print(f"teacher: trains on {side}×{side} images (teacher.image_size) and sees the "
              f"student's {size}×{size} views resized to that", flush=True)
    start = time.time()
    teacher = build_for(t.model, train, side, key="teacher.model")
    where = f"[teacher.model] {t.model.name}"
    check_teacher(teacher, train, where)
    teacher_side(teacher, side, side, where)
    initial = teacher.get_weights()
    print(f"teacher: training {t.model.name} ({count_params(teacher, trainable_only=True):,} "
          "parameters) with labels", flush=True)
    trainer = train_classifier(teacher, train, val, stage, augment_cfg=t.augment,
                               train_cfg=t.train, seed=config.seed,
                               workers=config.data.workers)
    run.save_model(teacher, "teacher.keras")
    seconds = round(time.time() - start, 1)
    run.record_stage("teacher", steps=trainer.steps, seconds=seconds)
    return Teacher(teacher, trainer.steps, seconds, initial, stage, size=side)
