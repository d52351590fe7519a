"""Recipe `distill`: shrink a big classifier into a small one by function matching (Beyer et
al. 2022, "Knowledge distillation: a good teacher is patient and consistent").

At every step the frozen teacher (inference mode) and the student see *exactly the same*
image: one inception crop + flip of each training image, then MixUp of the batch with
λ ~ U(0, 1) and a partner from the same batch. The student matches the teacher's function on
those images; by default labels are never used for training, only tracked:

    loss = KL(softmax(teacher / T) ‖ softmax(student / T)) · T²

or, with `loss.label_weight = a > 0`, Hinton et al. (2015)'s weighting of the same term
against the student's cross-entropy on the labels, mixed as the images are:

    loss = (1 − a) · KL(…) · T² + a · [λ · CE(y) + (1 − λ) · CE(y_partner)]

AdamW with decoupled weight decay on kernels only, linear warm-up then cosine to zero,
global clip-norm 1.0. The paper's students need long schedules (thousands of epochs), so a
run resumes exactly from its last checkpoint (mentor.core.checkpoints).

Why not `keras.distillation.Distiller` (Keras 3.15): its compute_loss runs the teacher on
the step's raw input `x`, while the student's prediction comes from `call`; the shared
crop + MixUp view is drawn inside the step, so the teacher would see another image than
the student unless augmentation moved out of the step into the input pipeline. It also
drops the models' own `self.losses`, and its KL works on probabilities clipped at 1e-7
where `mentor.losses.kl_divergence` uses log-softmaxes.

    mentor train distill-cifar10-cpu     # teacher, student and labels-only baseline
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from mentor import augment
from mentor.config import (
    IMAGE_SIZES,
    AugmentConfig,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    Section,
    TeacherConfig,
    TrainConfig,
    at_least,
    checked,
    pair,
    positive,
    seed_field,
    unit,
)
from mentor.core.baseline import train_baseline
from mentor.core.evaluation import (
    compare,
    eval_view,
    flip_averaged,
    gives_probabilities,
    logits,
)
from mentor.core.fit import train
from mentor.core.lifecycle import (
    accuracy,
    build_for,
    check_model_matches,
    history_figures,
)
from mentor.core.optim import total_steps
from mentor.core.recipe import Demo, Outcome, Recipe, Started
from mentor.core.trainer import Trainer
from mentor.data.files import scored_mask
from mentor.data.imageset import ImageSet
from mentor.data.order import LabeledDraw
from mentor.data.pipeline import Batches
from mentor.data.prepare import prepare
from mentor.data.sources import load_source
from mentor.data.splits import labeled_rows, run_image_size
from mentor.errors import MentorError
from mentor.losses import (
    cross_entropy,
    kl_divergence,
    mixed_cross_entropy,
    soft_target_kl,
)
from mentor.models import count_params, load_model
from mentor.models.scales import scaled
from mentor.objects import MODEL_PREFIX
from mentor.overlap import record_overlap
from mentor.report import sample_grid, teacher_student_bars
from mentor.teachers import (
    check_teacher,
    get_teacher,
    resized_input,
    teacher_beside,
    teacher_side,
)
from mentor.verdict import percent, relation

# ----------------------------------------------------------------------------- config


@dataclass
class DistillAugmentConfig(Section):
    """The one view teacher and student share (Beyer et al. 2022, function matching)."""
    # side of the crop both models see; 0 → the data's image size
    crop_size: int = checked(0, lambda v: v == 0 or IMAGE_SIZES[0] <= v <= IMAGE_SIZES[1],
                             f"0 (the data's size) or {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]}")
    # inception crop: area fraction and aspect-ratio range, [low, high] each
    crop_area: list = checked(lambda: [0.05, 1.0], pair(True, 1.0),
                              "[low, high] with 0 < low ≤ high ≤ 1")
    crop_ratio: list = checked(lambda: [0.75, 4 / 3], pair(True, None),
                               "[low, high] with 0 < low ≤ high")
    flip: bool = True  # horizontal; off for digits and text
    mixup: bool = True  # MixUp with λ ~ U(0, 1) and a partner from the same batch
    mixup_per_image: bool = True  # one λ per image; false → one λ per batch (big_vision)
    # test view: central crop of this fraction, resized (keras-io's distillation: 0.875)
    eval_crop: float = unit(1.0, low_open=True, high_open=False)


@dataclass
class DistillTeacherConfig(TeacherConfig):
    # The teacher's function is the mean of its outputs on the view and on the view's mirror
    # image: a two-member test-time ensemble, one more teacher forward per step. Its accuracy
    # (teacher_acc) is measured the same way, since that is the function the student matches.
    flip_average: bool = False


@dataclass
class DistillLossConfig(Section):
    temperature: float = positive(1.0)  # the paper matches plain softmaxes (T = 1)
    t_squared: bool = True  # × T² as big_vision and Hinton et al.: gradients independent of T
    # Hinton et al. 2015's second term: the student's cross-entropy on the true labels
    # (mixed as the images are) beside the teacher's, weighted label_weight against
    # 1 − label_weight. 0 is pure function matching (Beyer et al. 2022). A short schedule
    # gains from it: the teacher's soft targets say how classes resemble each other, the
    # labels say what each training image is (docs/results.md: the demo's student).
    label_weight: float = unit(0.0)


@dataclass
class BaselineConfig(Section):
    """The same student trained on the labels alone, with the same steps and optimizer."""
    enabled: bool = False  # also train it, so metrics.json has student_labels_only_acc
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # its label-training view


@dataclass
class DistillConfig(Section):
    recipe: str = "distill"
    description: str = ""
    seed: int = seed_field()
    # 0: the student may use every training label. N: only N seeded images a class keep
    # their labels for the student's loss.label_weight term and its labels-only twin; the
    # student still matches the teacher on every image, which a teacher trained here learns
    # with all labels: the setting where distillation pays, a teacher that knows more.
    labels_per_class: int = at_least(0, 0)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: DistillTeacherConfig = field(default_factory=DistillTeacherConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the student
    augment: DistillAugmentConfig = field(default_factory=DistillAugmentConfig)
    # Function matching wants patience: AdamW, warm-up then cosine to 0, clip-norm 1.0.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(clipnorm=1.0, warmup_steps=100))
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ----------------------------------------------------------------------------- views


class SharedView(keras.layers.Layer):
    """The one training view both models see: inception crop + flip, then MixUp."""

    def __init__(self, size=None, area=(0.05, 1.0), ratio=(3 / 4, 4 / 3), flip=True,
                 mixup=True, mixup_per_image=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.size = size  # the side of the view; None → the input's
        self.crop = augment.InceptionCrop(size=size, area=area, ratio=ratio, flip=flip,
                                          seed=seed, name="crop")
        self.mixup, self.mixup_per_image = mixup, mixup_per_image
        self.seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

    def call(self, images):
        """(view, λ per image, partner index); λ = 1 and partner = self without MixUp."""
        view = self.crop(images, training=True)
        batch = keras.ops.shape(view)[0]
        if not self.mixup:
            return view, keras.ops.ones((batch,)), keras.ops.arange(batch, dtype="int32")
        return augment.mixup(view, self.seed_generator, per_image=self.mixup_per_image)


def shared_view(config: DistillConfig, size: int) -> SharedView:
    a = config.augment
    return SharedView(size=size, area=tuple(a.crop_area), ratio=tuple(a.crop_ratio),
                      flip=a.flip, mixup=a.mixup, mixup_per_image=a.mixup_per_image,
                      seed=config.seed, name="view")


def crop_size(config: DistillConfig, data: ImageSet) -> int:
    return config.augment.crop_size or run_image_size(config.data, data)


class LabeledBatches(Batches):
    """Batches whose images come with the flags of which labels the label term may use
    ({"images", "labeled"}, y); plain Batches when every label may be used (`mask` None).
    The labels of unlabeled images ride along for the accuracy curve only."""

    def __init__(self, data: ImageSet, mask, batch_size: int, *, seed: int = 0, **kwargs):
        super().__init__(data, batch_size, seed=seed, **kwargs)
        if mask is not None:
            self.draw = LabeledDraw(data.x, data.y, mask, batch_size, seed,
                                    shard=self.shard)


# ----------------------------------------------------------------------------- loss


class DistillTrainer(Trainer):
    """Frozen teacher and trainable student on one shared view; the loss is theirs alone."""

    def __init__(self, classifier, *, teacher, view: SharedView, loss: DistillLossConfig,
                 teacher_probabilities: bool = False, ema: float = 0.0, **kwargs):
        super().__init__(classifier, ema=ema, **kwargs)
        self.teacher, self.view = teacher, view
        self.teacher.trainable = False  # out of the optimizer's list; BN stays in inference
        self.teacher_probabilities = teacher_probabilities  # a softmax head: take its log
        self.temperature, self.t_squared = float(loss.temperature), bool(loss.t_squared)
        self.label_weight = float(loss.label_weight)
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.agreement_tracker = keras.metrics.Mean(name="agreement")

    def call(self, x, training=False):
        labeled = None
        if isinstance(x, dict):  # LabeledBatches: which images' labels the label term may use
            x, labeled = x["images"], x["labeled"]
        if training:
            images, weights, partner = self.view(x)
        else:  # validation: plain images, and the teacher too, for val_kl and val_agreement
            # (Keras's first probe of the model passes a training batch, at the data's size:
            # brought to the view's, as the crop would; validation images have it already.)
            images = augment.resize(x, self.view.size) if self.view.size else \
                keras.ops.cast(x, "float32")
            batch = keras.ops.shape(images)[0]
            weights, partner = keras.ops.ones((batch,)), keras.ops.arange(batch, dtype="int32")
        # The identical tensor goes to both models. The teacher runs in inference mode (its
        # batch-norm statistics must not move).
        teacher_logits = keras.ops.stop_gradient(self.teacher(images, training=False))
        if self.teacher_probabilities:
            teacher_logits = keras.ops.log(keras.ops.maximum(teacher_logits, 1e-12))
        self.keep(teacher_logits=teacher_logits, weights=weights, partner=partner,
                  labeled=labeled)
        return self.classifier(images, training=training)

    def objective(self, y, y_pred, training):
        teacher_logits = self.kept["teacher_logits"]
        if training:
            loss = keras.ops.mean(soft_target_kl(teacher_logits, y_pred, self.temperature,
                                                 self.t_squared))
            if self.label_weight:  # Hinton et al.'s weighting; the labels mixed as the images
                a = self.label_weight
                loss = (1.0 - a) * loss + a * self.label_term(y, y_pred)
        else:  # validation: the student's cross-entropy on labelled images
            loss = keras.ops.mean(cross_entropy(y, y_pred))
        self.kl_tracker.update_state(kl_divergence(teacher_logits, y_pred))
        agree = keras.ops.argmax(teacher_logits, -1) == keras.ops.argmax(y_pred, -1)
        self.agreement_tracker.update_state(keras.ops.cast(agree, "float32"))
        return loss

    def label_term(self, y, y_pred):
        """The mixed cross-entropy averaged over the labels it may use: with every image
        labeled, its plain mean over the batch; with some unlabeled (labels_per_class),
        their shares of the mixes drop out of both the sum and the count."""
        k = self.kept
        per_example = mixed_cross_entropy(y, y_pred, k["weights"], k["partner"], k["labeled"])
        if k["labeled"] is None:
            return keras.ops.mean(per_example)
        m, w = keras.ops.cast(k["labeled"], "float32"), k["weights"]
        mass = w * m + (1.0 - w) * keras.ops.take(m, k["partner"], axis=0)
        return keras.ops.sum(per_example) / keras.ops.maximum(keras.ops.sum(mass), 1e-6)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Accuracy on a mixed image counts the label of the image with the larger weight
        # (λ = 1 in validation).
        weights, partner = self.kept["weights"], self.kept["partner"]
        y = keras.ops.where(weights >= 0.5, y, keras.ops.take(y, partner, axis=0))
        return super().compute_metrics(x, y, y_pred, sample_weight)


# ----------------------------------------------------------------------------- run


def train_student(run: Started) -> Outcome:
    config, run_dir, train_set, val, test = run.config, run.run_dir, run.train, run.val, run.test
    size = run.image_size
    val_view, test_view = (eval_view(d, config.augment.eval_crop, size) for d in (val, test))

    labeled, mask = train_set, None
    if config.labels_per_class:  # the rest of the images only the teacher can label
        rows = labeled_rows(train_set, config.labels_per_class, config.seed)
        labeled = train_set.subset(rows, f"{train_set.name}/labeled")
        mask = np.zeros(len(train_set), np.float32)
        mask[rows] = 1.0
        print(f"labels: {len(labeled)} of the {len(train_set)} training images keep theirs "
              f"(labels_per_class = {config.labels_per_class}); the student matches the "
              "teacher on all of them", flush=True)
    # A teacher trained here sees every label: it is the teacher that knows more than the
    # student's labels teach. It trains at teacher.image_size (default: the student's), on
    # the data brought to that side as the student's is to its own.
    teacher = get_teacher(
        config, prepare(train_set, size), val_view, run_dir, size=size,
        resized=lambda side: (prepare(train_set, side),
                              eval_view(val, config.augment.eval_crop, side)))
    teacher_params = count_params(teacher.model, trainable_only=True)  # before it is frozen
    teacher_model = teacher.model
    if config.teacher.flip_average:
        teacher_model = flip_averaged(teacher_model)
        print("teacher: averaging its outputs on each view and its mirror image", flush=True)
    # The student's view (and test image) resized to the teacher's side inside the step;
    # the teacher itself when both sides agree.
    teacher_model = teacher.seeing(size, teacher_model)
    probabilities = gives_probabilities(teacher_model, test_view)
    if probabilities:
        print("teacher: its outputs are probabilities (a softmax head); distilling from their "
              "logarithms", flush=True)

    student = build_for(config.model, train_set, size)
    t = config.train
    per_epoch, steps = total_steps(t, len(train_set))
    trainer = DistillTrainer(student, teacher=teacher_model, view=shared_view(config, size),
                             loss=config.loss, teacher_probabilities=probabilities, ema=t.ema)
    print(f"student: {config.model.name} ({count_params(student, trainable_only=True):,} "
          f"parameters) matches the teacher on shared crop"
          f"{' + MixUp' if config.augment.mixup else ''} views for {steps} steps, "
          f"T = {config.loss.temperature:g}"
          + (f", labels weighted {config.loss.label_weight:g}" if config.loss.label_weight
             else ""), flush=True)
    stage, started = run_dir.stage("student"), time.time()
    taken = train(  # fewer than `steps` when a callback stopped the stage early
        trainer, lambda start: LabeledBatches(train_set, mask, t.batch_size, steps=steps,
                                              seed=config.seed + 2, start_step=start,
                                              workers=config.data.workers),
        stage, t, per_epoch=per_epoch, steps=steps,
        validation=(val_view.x, val_view.y) if val_view is not None else None)
    seconds = {"student_seconds": time.time() - started}
    if teacher.steps:
        seconds["teacher_seconds"] = teacher.seconds
    run_dir.save_model(student, "student.keras")

    metrics = {"steps": taken, "teacher_steps": teacher.steps}
    metrics.update(compare(logits(teacher_model, test_view, probabilities=probabilities),
                           logits(student, test_view), test_view.y,
                           scored_mask(test_view.x, test_view.name)))
    baseline_stage = None
    if config.baseline.enabled:
        started = time.time()
        baseline, baseline_stage = train_baseline(
            run_dir, config.model, prepare(labeled, size),
            prepare(val, size) if val is not None else None,
            augment_cfg=config.baseline.augment, train_cfg=t, seed=config.seed,
            workers=config.data.workers, per_epoch=per_epoch if mask is not None else 0)
        seconds["baseline_seconds"] = time.time() - started
        metrics["student_labels_only_acc"] = accuracy(baseline, test_view)
    metrics.update(teacher_params=teacher_params,
                   student_params=count_params(student, trainable_only=True),
                   train_images=len(train_set), labeled_images=len(labeled),
                   test_images=len(test))

    objective = ("training objective: KL·T² on shared views"
                 + (f", labels weighted {config.loss.label_weight:g}"
                    if config.loss.label_weight else ""))
    figures = [("Test accuracy side by side: what distillation has to beat is the same "
                "student trained on the labels alone", teacher_student_bars(
                    metrics, run_dir.file("accuracy.png")).name)]
    figures += history_figures(run_dir, [
        ("Student training: its objective, the validation cross-entropy, accuracy, and "
         "agreement and KL with the teacher, each on its own axis", stage,
         {"objective": objective}),
        ("Teacher training (labels)", teacher.stage),
        ("Baseline training: the same student on the labels alone", baseline_stage)])
    shown = train_set.x[np.random.default_rng(config.seed).choice(len(train_set), 8, replace=False)]
    view, _, _ = trainer.view(shown)
    figures.append(("The shared view: teacher and student see exactly these images",
                    sample_grid({"input": shown,
                                 "shared view": keras.ops.convert_to_numpy(view)},
                                run_dir.file("views.png")).name))
    metrics.update({key: round(value, 1) for key, value in seconds.items()})
    return Outcome(metrics, figures)


# ----------------------------------------------------------------------------- evaluation


def evaluate_run(path: pathlib.Path, config: DistillConfig, source: str, *,
                 batch_size: int = 256, unsafe: bool = False) -> dict:
    """A finished run's teacher (flip-averaged when the run's was), student and labels-only
    student on another data source, under metrics.json's keys and the run's own test view
    (resized to the teacher's side on its way to the teacher, as in the run).
    Why: 2000 test images leave ±0.01 of sampling noise on each accuracy, as much as the
    effects the recipe is judged by; a larger test set tells them apart."""
    if not (path / "student.keras").is_file():
        raise MentorError(f"{path} has no student.keras: the run has not finished its student; "
                          "resume it with `mentor train` on the same --out first.")
    teacher_path = teacher_beside(path, config).get("teacher")
    if teacher_path is None and config.teacher.path.startswith(MODEL_PREFIX):
        raise MentorError(f"the teacher of {path} was a keras.Model given from Python, which "
                          "the run does not save: evaluate the student alone (`mentor "
                          f"evaluate {path / 'student.keras'} --data ...`).")
    if teacher_path is None:
        raise MentorError(f"the teacher of {path} is gone: neither {path}/teacher.keras nor "
                          f"its teacher.path {config.teacher.path!r} exists.")
    student = load_model(path / "student.keras", safe_mode=not unsafe)
    size = student.input_shape[1]
    base = config.data.image_size or size
    data = prepare(load_source(source, image_size=base), base, student.input_shape[-1])
    view = eval_view(data, config.augment.eval_crop, size)
    check_model_matches(student, view)
    teacher = load_model(teacher_path, safe_mode=not unsafe)
    where = f"the teacher {teacher_path}"
    check_teacher(teacher, view, where)
    side = teacher_side(teacher, config.teacher.image_size, size, where, say=False)
    if teacher_path != path / "teacher.keras":  # its file, taking the pixels the run scaled
        teacher = scaled(teacher, config.teacher.input_scale)
    if config.teacher.flip_average:
        teacher = flip_averaged(teacher)
    teacher = resized_input(teacher, size, side)  # the test view at the teacher's side
    metrics = {"recipe": "distill", "backend": keras.backend.backend(), "run": str(path),
               "data": source, "images": len(view)}
    record_overlap(metrics, path, data.x)
    metrics.update(compare(logits(teacher, view, batch_size, gives_probabilities(teacher, view)),
                           logits(student, view, batch_size), view.y,
                           scored_mask(view.x, view.name)))
    if (path / "baseline.keras").is_file():
        metrics["student_labels_only_acc"] = accuracy(
            load_model(path / "baseline.keras", safe_mode=not unsafe), view, batch_size)
    return metrics


# ----------------------------------------------------------------------------- in words


def verdict(m: dict) -> str:
    ratio = m["teacher_params"] / max(m["student_params"], 1)
    size = (f"{ratio:.1f}× fewer than its teacher" if ratio >= 1.05 else
            f"{1 / ratio:.1f}× more than its teacher" if ratio <= 1 / 1.05 else
            "as many as its teacher")
    text = (f"The distilled student ({m['student_params']:,} parameters, {size}) classifies "
            f"{percent(m['student_acc'])} correctly: "
            + relation(m["student_acc"] - m["teacher_acc"],
                       f"its teacher ({percent(m['teacher_acc'])})"))
    partial = m.get("labeled_images", m.get("train_images")) != m.get("train_images")
    if "student_labels_only_acc" in m:
        text += " and " + relation(
            m["student_acc"] - m["student_labels_only_acc"],
            f"the same student trained on the labels alone "
            f"({percent(m['student_labels_only_acc'])})")
    if partial:
        text += (f", with labels for {m['labeled_images']:,} of its {m['train_images']:,} "
                 "training images: the teacher labels the rest")
    return text + "."


def headline(m: dict) -> str:
    text = f"student {percent(m['student_acc'])} ({m['student_params']:,} params)"
    if "student_labels_only_acc" in m:
        text += f" vs labels-only {percent(m['student_labels_only_acc'])}"
    return text + f" vs teacher {percent(m['teacher_acc'])} ({m['teacher_params']:,})"


GLOSSARY = {
    "teacher_acc": "the teacher's top-1 accuracy on the test images",
    "student_acc": "the distilled student's top-1 accuracy on the test images",
    "student_labels_only_acc": "the same student architecture, same steps, trained on the "
                               "labels alone: what distillation has to beat",
    "student_teacher_agreement": "fraction of test images where student and teacher predict "
                                 "the same class (right or wrong)",
    "student_teacher_kl": "mean KL(teacher ‖ student) on the test images, in nats: 0 when "
                          "the student reproduces the teacher's probabilities",
    "labeled_images": "training images whose labels the student and its labels-only twin "
                      "may use (labels_per_class); the student sees the others through the "
                      "teacher",
    "student_seconds": "wall-clock time of the student's training",
    "teacher_seconds": "wall-clock time of the teacher's training in this run",
    "baseline_seconds": "wall-clock time of the labels-only student's training",
}

RECIPE = Recipe(
    name="distill", config=DistillConfig, train=train_student,
    title="distillation by function matching", delivers="student.keras", verdict=verdict,
    headline=headline, figure="accuracy.png", glossary=GLOSSARY, companions=teacher_beside,
    evaluate=evaluate_run, image_size=crop_size,
    demo=Demo("demo-distill", "that model distilled into a student with 7× fewer "
              "parameters and the labels of 200 of its 3600 digits", 87,
              teacher_from="supervised"))
