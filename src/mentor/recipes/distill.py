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

import time

import keras
import numpy as np

from mentor import augment
from mentor.config import DistillConfig, DistillLossConfig
from mentor.core.fit import train
from mentor.core.optim import total_steps
from mentor.core.run import (
    accuracy,
    build_for,
    check_model_matches,
    finish_run,
    history_figures,
    preflight,
    start_run,
)
from mentor.core.trainer import Trainer, train_baseline
from mentor.data.files import scored_mask
from mentor.data.imageset import ImageSet
from mentor.data.pipeline import Batches, labeled_rows, prepare
from mentor.data.stream import LabeledDraw
from mentor.errors import MentorError
from mentor.losses import (
    cross_entropy,
    kl_divergence,
    mixed_cross_entropy,
    soft_target_kl,
)
from mentor.models import count_params
from mentor.report import sample_grid, teacher_student_bars
from mentor.runs import recorded
from mentor.inference import predict
from mentor.teachers import get_teacher

# ----------------------------------------------------------------------------- views


class SharedView(keras.layers.Layer):
    """The one training view both models see: inception crop + flip, then MixUp."""

    def __init__(self, size=None, area=(0.05, 1.0), ratio=(3 / 4, 4 / 3), flip=True,
                 mixup=True, mixup_per_image=True, seed=None, **kwargs):
        super().__init__(**kwargs)
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
    return config.augment.crop_size or data.image_shape[0]


def eval_view(data: ImageSet | None, fraction: float, size: int, batch: int = 512):
    """The test-time view: a central crop of `fraction` resized to `size` (identity when
    fraction = 1 and the size already fits)."""
    if data is None or (fraction >= 1.0 and data.image_shape[0] == size):
        return data
    parts = [keras.ops.convert_to_numpy(augment.central_crop(data.x[i:i + batch], fraction, size))
             for i in range(0, len(data), batch)]
    x = np.clip(np.rint(np.concatenate(parts)), 0, 255).astype(np.uint8)
    return ImageSet(x, data.y, list(data.class_names), data.name)


class Mirror(keras.layers.Layer):
    """Left-right mirror image of a batch of (B, H, W, C) images."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


def flip_averaged(teacher: keras.Model) -> keras.Model:
    """The teacher as the mean of its outputs on an image and on its mirror image (the same
    weights twice: no new parameters). Flip averaging is the cheapest ensemble there is: on
    three CIFAR-10 teachers it added 0.007 to 0.022 test accuracy (docs/results.md)."""
    images = keras.Input(shape=teacher.input_shape[1:], name="images")
    mirrored = Mirror(name="mirror")(images)
    out = keras.layers.Average(name="mean")([teacher(images), teacher(mirrored)])
    return keras.Model(images, out, name=f"{teacher.name}_flip_averaged")


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
            images = keras.ops.cast(x, "float32")
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


# ----------------------------------------------------------------------------- evaluation


def logits(model, data: ImageSet, batch_size: int = 256, probabilities=False) -> np.ndarray:
    out = np.asarray(predict(model, data.x, batch_size), dtype=np.float32)
    return np.log(np.maximum(out, 1e-12)) if probabilities else out


def gives_probabilities(model, data: ImageSet, n: int = 64) -> bool:
    """True when a model ends in a softmax (keras.applications does by default): its rows
    are non-negative and sum to 1. mentor trains on logits; log p are logits of p."""
    out = logits(model, data.subset(np.arange(min(n, len(data)))))
    return bool(out.min() >= 0.0 and np.allclose(out.sum(-1), 1.0, atol=1e-3))


def compare(teacher_logits: np.ndarray, student_logits: np.ndarray, labels,
            scored=None) -> dict:
    """Accuracies of both, top-1 agreement and mean KL(teacher ‖ student) at T = 1, over
    the `scored` rows (files.scored_mask: images that could be read; default all)."""
    if scored is not None:
        teacher_logits, student_logits = teacher_logits[scored], student_logits[scored]
        labels = np.asarray(labels)[scored]
    t_top, s_top = teacher_logits.argmax(-1), student_logits.argmax(-1)
    kl = keras.ops.convert_to_numpy(kl_divergence(teacher_logits, student_logits))
    return {"teacher_acc": float(np.mean(t_top == labels)),
            "student_acc": float(np.mean(s_top == labels)),
            "student_teacher_agreement": float(np.mean(t_top == s_top)),
            "student_teacher_kl": float(np.mean(kl))}


def check_pair(teacher: keras.Model, student: keras.Model):
    """Teacher and student must predict the same classes from the same images."""
    t, s = teacher.output_shape[-1], student.output_shape[-1]
    if t != s:
        raise MentorError(f"the teacher predicts {t} classes but the student {s}; "
                          "distillation matches their outputs class by class, so both need "
                          "the data's class count.")
    if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
        raise MentorError(f"the teacher takes images of shape {teacher.input_shape[1:]} but the "
                          f"student {student.input_shape[1:]}; set augment.crop_size to the "
                          "teacher's input size.")


# ----------------------------------------------------------------------------- run


@recorded
def run(config: DistillConfig, out, *, name: str = "distill") -> dict:
    run_dir, train_set, val, test = start_run(config, out, name)
    size = crop_size(config, train_set)
    preflight(config, train_set, size)
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
    # A teacher trained here sees the student's input size and every label: it is the
    # teacher that knows more than the student's labels teach.
    teacher_train = prepare(train_set, size)
    teacher = get_teacher(config, teacher_train, val_view, run_dir)
    check_model_matches(teacher.model, test_view)
    teacher_params = count_params(teacher.model, trainable_only=True)  # before it is frozen
    teacher_model = teacher.model
    if config.teacher.flip_average:
        teacher_model = flip_averaged(teacher_model)
        print("teacher: averaging its outputs on each view and its mirror image", flush=True)
    probabilities = gives_probabilities(teacher_model, test_view)
    if probabilities:
        print("teacher: its outputs are probabilities (a softmax head); distilling from their "
              "logarithms", flush=True)

    student = build_for(config.model, train_set, size)
    check_pair(teacher_model, student)
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

    metrics = {"recipe": "distill", "backend": keras.backend.backend(), "steps": taken,
               "teacher_steps": teacher.steps}
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
    return finish_run(run_dir, config, f"{name}: distillation by function matching", metrics,
                      figures)
