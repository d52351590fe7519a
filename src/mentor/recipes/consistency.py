"""Recipe `consistency`: a student that keeps its accuracy when images get noisy, blurred,
foggy or compressed (Noisy Student, Xie et al. 2020; keras-io "consistency training with
supervision").

A teacher is trained on the clean view (flip + crop) with labels, or loaded. Then the
teacher is frozen and, for every batch, sees the clean view (resized to teacher.image_size
when set) while the student sees a RandAugment-noisy version of the *same* clean images, in
the same order:

    loss = ce_weight · CE(labels, student(noisy)) + kd_weight · KL(teacher(clean)/T ‖ student(noisy)/T) · T²

Both are evaluated clean and on the CIFAR-10-C corruptions (mentor.robustness).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from mentor import augment, robustness
from mentor.config import (
    DataConfig,
    ModelConfig,
    RobustnessConfig,
    RuntimeConfig,
    Section,
    TeacherConfig,
    TrainConfig,
    at_least,
    checked,
    positive,
    seed_field,
)
from mentor.core.fit import train
from mentor.core.lifecycle import accuracy, build_for, history_figures
from mentor.core.optim import total_steps
from mentor.core.recipe import Demo, Outcome, Recipe, Started
from mentor.core.trainer import Trainer
from mentor.data.pipeline import Batches
from mentor.errors import MentorError, UsageError
from mentor.losses import consistency_loss, cross_entropy
from mentor.models import count_params
from mentor.report import sample_grid
from mentor.teachers import get_teacher, teacher_beside
from mentor.verdict import compare, percent, points

# ----------------------------------------------------------------------------- config


@dataclass
class NoiseConfig(Section):
    """The student's noise in `consistency`: RandAugment on top of the teacher's clean view
    (no extra flip or shift: the clean view has them already)."""
    num_ops: int = checked(2, lambda v: 0 <= v <= 14, "in 0..14 (the RandAugment ops)")
    magnitude: int = checked(9, lambda v: 0 <= v <= 10, "in 0..10")  # Xie et al. 2020's noise


@dataclass
class ConsistencyLossConfig(Section):
    temperature: float = positive(10.0)  # keras-io's consistency-training example
    ce_weight: float = at_least(0.5, 0)  # ½·CE(labels, student) …
    kd_weight: float = at_least(0.5, 0)  # … + ½·KL(teacher/T ‖ student/T)
    t_squared: bool = True  # × T² (Hinton et al. 2015): else at T = 10 the KL gradient is 1/100


@dataclass
class ConsistencyConfig(Section):
    recipe: str = "consistency"
    description: str = ""
    seed: int = seed_field()
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)  # its augment: the clean view
    model: ModelConfig = field(default_factory=ModelConfig)  # the student
    augment: NoiseConfig = field(default_factory=NoiseConfig)  # the student's noise
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: ConsistencyLossConfig = field(default_factory=ConsistencyLossConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    # Start the student from the teacher's initial weights (as keras-io's consistency
    # example does), when the teacher is trained in this run with the same model.
    student_from_teacher_init: bool = False
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def check(self):
        if self.student_from_teacher_init and (self.teacher.path or
                                               self.model != self.teacher.model):
            raise UsageError(
                "student_from_teacher_init needs a teacher trained in this run (teacher.path "
                "empty) with the same [model] as the student; set it to false or make the "
                "two models equal.")


# ----------------------------------------------------------------------------- views


def views(config: ConsistencyConfig):
    """(clean, noisy): the teacher's training view, and RandAugment on top of it. No second
    flip or shift: the clean view already has them."""
    clean = augment.from_config(config.teacher.augment, config.seed)
    noisy = augment.StrongAugment(num_ops=config.augment.num_ops,
                                  magnitude=config.augment.magnitude, flip=False,
                                  translate=0.0, seed=config.seed + 1)
    return clean, noisy


# ----------------------------------------------------------------------------- loss


class ConsistencyTrainer(Trainer):
    """Frozen teacher on the clean view, student on the noisy view of the same images."""

    def __init__(self, classifier, *, teacher, clean_view, noisy_view,
                 loss: ConsistencyLossConfig, ema: float = 0.0, **kwargs):
        super().__init__(classifier, ema=ema, **kwargs)
        self.teacher = teacher
        self.teacher.trainable = False  # its weights leave the optimizer's list
        self.clean_view, self.noisy_view = clean_view, noisy_view
        self.loss_config = loss

    def views(self, x):
        clean = self.clean_view(x, training=True) if self.clean_view else keras.ops.cast(x, "float32")
        return clean, self.noisy_view(clean, training=True)

    def call(self, x, training=False):
        if not training:
            return self.classifier(x, training=False)
        clean, noisy = self.views(x)
        # Inference mode: the teacher's batch-norm statistics must not move.
        self.keep(teacher_logits=keras.ops.stop_gradient(self.teacher(clean, training=False)))
        return self.classifier(noisy, training=True)

    def objective(self, y, y_pred, training):
        if not training:  # validation: the student's plain cross-entropy
            return keras.ops.mean(cross_entropy(y, y_pred))
        c = self.loss_config
        return keras.ops.mean(consistency_loss(
            y, y_pred, self.kept["teacher_logits"], temperature=c.temperature,
            ce_weight=c.ce_weight, kd_weight=c.kd_weight, t_squared=c.t_squared))


# ----------------------------------------------------------------------------- run


def train_student(run: Started) -> Outcome:
    config, run_dir, train_set, val, test = run.config, run.run_dir, run.train, run.val, run.test
    size = run.image_size or train_set.image_shape[0]
    if config.student_from_teacher_init and config.teacher.image_size not in (0, size):
        raise MentorError(
            f"student_from_teacher_init needs the teacher at the student's size ({size}), "
            f"not teacher.image_size = {config.teacher.image_size}; set one of them aside.")
    teacher = get_teacher(config, train_set, val, run_dir, size=size)
    teacher_params = count_params(teacher.model, trainable_only=True)  # before it is frozen
    run_dir.save_model(teacher.model, "teacher.keras")  # at its own size
    # Teacher.model is the teacher at its own side; from here on it sees the student's
    # images (the clean view, the test and corrupted images) resized to that side.
    teacher_model = teacher.seeing(size)

    student = build_for(config.model, train_set)
    if config.student_from_teacher_init:
        if teacher.initial_weights is None or config.model != config.teacher.model:
            raise MentorError(
                "student_from_teacher_init needs a teacher trained in this run with the same "
                "[model] as the student; set it to false or make the two models equal.")
        student.set_weights(teacher.initial_weights)
    clean_view, noisy_view = views(config)
    trainer = ConsistencyTrainer(student, teacher=teacher_model, clean_view=clean_view,
                                 noisy_view=noisy_view, loss=config.loss, ema=config.train.ema)
    t = config.train
    per_epoch, steps = total_steps(t, len(train_set))
    print(f"student: training {config.model.name} "
          f"({count_params(student, trainable_only=True):,} parameters) on the noisy view, "
          f"T = {config.loss.temperature:g}", flush=True)
    stage = run_dir.stage("student")
    taken = train(  # fewer than `steps` when a callback stopped the stage early
        trainer, lambda start: Batches(train_set, t.batch_size, steps=steps,
                                       seed=config.seed + 2, start_step=start,
                                       workers=config.data.workers),
        stage, t, per_epoch=per_epoch, steps=steps,
        validation=(val.x, val.y) if val is not None else None)
    run_dir.save_model(student, "student.keras")

    r = config.robustness
    subset = robustness.subset(test, r.max_images, config.seed)
    print(f"robustness: {len(subset)} test images × {len(r.corruptions) or 19} corruptions × "
          f"{len(r.severities)} severities, teacher and student", flush=True)
    results = robustness.sweep({"teacher": teacher_model, "student": student}, subset,
                               corruptions=r.corruptions or None,
                               severities=tuple(r.severities), seed=r.seed)
    metrics = {"steps": taken, "teacher_steps": teacher.steps}
    for who, model in (("teacher", teacher_model), ("student", student)):
        # the sweep's clean pass covered the whole test set unless it ran on a subset
        metrics[f"{who}_clean_acc"] = (results[who]["clean_acc"] if subset is test
                                       else accuracy(model, test))
    for who in ("teacher", "student"):
        m = results[who]
        metrics[f"{who}_corrupt_acc"] = m.get("corrupt_acc", m["corrupt_acc_all"])
    for who in ("teacher", "student"):
        metrics[f"{who}_corrupt_acc_all"] = results[who]["corrupt_acc_all"]
    metrics.update(teacher_params=teacher_params,
                   student_params=count_params(student, trainable_only=True),
                   train_images=len(train_set), test_images=len(test),
                   corruption_images=len(subset))
    for who in ("teacher", "student"):
        metrics.update({f"{who}_{k}": v for k, v in results[who].items()
                        if k.startswith("corrupt_acc/")})

    figures = history_figures(run_dir, [
        ("Teacher training (labels)", teacher.stage),
        ("Student training: its objective (½ CE + ½ KL·T² on the noisy view) and, on its "
         "own axis, the plain cross-entropy on validation images", stage,
         {"objective": "training objective: ½ CE + ½ KL·T² (noisy view)"})])
    shown = train_set.x[np.random.default_rng(config.seed).choice(len(train_set), 8, replace=False)]
    clean, noisy = trainer.views(shown)
    figures.append(("What each model sees: the teacher the clean view, the student the noisy "
                    "view of the same images", sample_grid(
                        {"input": shown, "clean (teacher)": keras.ops.convert_to_numpy(clean),
                         "noisy (student)": keras.ops.convert_to_numpy(noisy)},
                        run_dir.file("views.png")).name))
    figures.append(("Student − teacher in every corruption × severity cell: where the noisy "
                    "student gained (blue) and lost (red)", robustness.difference_heatmap(
                        results, run_dir.file("difference.png"), base="teacher",
                        other="student").name))
    figures.append(("Teacher vs student per corruption", robustness.compare_bars(
        results, run_dir.file("per_corruption.png")).name))
    figures.append(("Accuracy per corruption and severity", robustness.heatmap(
        results, run_dir.file("robustness.png"), images=len(subset)).name))
    notes = [] if subset is test else [
        f"Clean accuracies are on all {len(test):,} test images; corrupted ones on a seeded "
        f"subset of {len(subset):,} of them (robustness.max_images), the same images for "
        "both models."]
    return Outcome(metrics, figures, notes)


# ----------------------------------------------------------------------------- in words


def verdict(m: dict) -> str:
    corrupt = m["student_corrupt_acc"] - m["teacher_corrupt_acc"]
    clean = m["student_clean_acc"] - m["teacher_clean_acc"]
    clean_part = ("and matches it on clean images" if abs(100 * clean) < 0.05 else
                  f"and {'gains' if clean > 0 else 'loses'} {points(clean)} on clean images")
    return (f"Under corruption the student "
            f"{compare(corrupt, 'beats its teacher', 'trails its teacher', 'matches its teacher')} "
            f"({percent(m['teacher_corrupt_acc'])} → {percent(m['student_corrupt_acc'])}) "
            f"{clean_part} ({percent(m['teacher_clean_acc'])} → "
            f"{percent(m['student_clean_acc'])}).")


def headline(m: dict) -> str:
    return (f"corrupted: teacher {percent(m['teacher_corrupt_acc'])} → student "
            f"{percent(m['student_corrupt_acc'])}; clean {percent(m['teacher_clean_acc'])}"
            f" → {percent(m['student_clean_acc'])}")


GLOSSARY = {
    "teacher_clean_acc": "the teacher's top-1 accuracy on the uncorrupted test images",
    "student_clean_acc": "the student's top-1 accuracy on the uncorrupted test images",
    "teacher_corrupt_acc": "the teacher's mean accuracy over the 15 CIFAR-10-C benchmark "
                           "corruptions × 5 severities (the number RobustBench reports)",
    "student_corrupt_acc": "the student's mean accuracy over the 15 benchmark corruptions "
                           "× 5 severities",
    "teacher_corrupt_acc_all": "the same mean over all 19 corruptions (the 15 plus "
                               "gaussian_blur, spatter, speckle_noise and saturate)",
    "student_corrupt_acc_all": "the same mean over all 19 corruptions",
}

RECIPE = Recipe(
    name="consistency", config=ConsistencyConfig, train=train_student,
    title="consistency training", delivers="student.keras", verdict=verdict,
    headline=headline, figure="per_corruption.png", glossary=GLOSSARY,
    companions=teacher_beside,
    demo=Demo("demo-consistency", "a noisy student of that model, under 19 corruptions", 66,
                teacher_from="supervised"))
