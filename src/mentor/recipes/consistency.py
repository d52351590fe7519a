"""Recipe `consistency`: a student that keeps its accuracy when images get noisy, blurred,
foggy or compressed (Noisy Student, Xie et al. 2020; keras-io "consistency training with
supervision").

A teacher is trained on the clean view (flip + crop) by `supervised`, or loaded. Then the
teacher is frozen and, for every batch, sees the clean view while the student sees a
RandAugment-noisy version of the *same* clean images, in the same order:

    loss = ce_weight · CE(labels, student(noisy)) + kd_weight · KL(teacher(clean)/T ‖ student(noisy)/T) · T²

Both are evaluated clean and on the CIFAR-10-C corruptions (mentor.robustness).
"""

from __future__ import annotations

import time

import keras
import numpy as np

from mentor import augment, robustness
from mentor.config import ConsistencyConfig, dumps, to_dict
from mentor.errors import MentorError
from mentor.losses import consistency_loss, cross_entropy
from mentor.models import count_params
from mentor.recipes.supervised import augment_layer, get_teacher
from mentor.report import plot_history, write_report
from mentor.runs import RunDir, recorded
from mentor.training import WeightEMA, accuracy, build_for, fit_student, start_run


class ConsistencyTrainer(keras.Model):
    """Frozen teacher on the clean view, student on the noisy view of the same images."""

    def __init__(self, student, teacher, clean_view, noisy_view, loss_config,
                 ema_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False  # its weights leave the optimizer's list
        self.clean_view, self.noisy_view = clean_view, noisy_view
        self.loss_config = loss_config
        self.ema = WeightEMA(student, ema_decay, name="ema") if ema_decay else None
        self._teacher_logits = None

    def build(self, input_shape):
        pass  # both models arrive built

    def views(self, x):
        """(clean, noisy): the noisy view is RandAugment applied on top of the clean one."""
        clean = self.clean_view(x, training=True) if self.clean_view else keras.ops.cast(x, "float32")
        return clean, self.noisy_view(clean, training=True)

    def call(self, x, training=False):
        if not training:
            return self.student(x, training=False)
        clean, noisy = self.views(x)
        # Inference mode: the teacher's batch-norm statistics must not move. Kept for
        # compute_loss, which Keras calls right after this in the same train step (and the
        # same trace on JAX and TensorFlow).
        self._teacher_logits = keras.ops.stop_gradient(self.teacher(clean, training=False))
        return self.student(noisy, training=True)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if training:
            c = self.loss_config
            per_example = consistency_loss(y, y_pred, self._teacher_logits,
                                           temperature=c.temperature, ce_weight=c.ce_weight,
                                           kd_weight=c.kd_weight, t_squared=c.t_squared)
        else:  # validation: the student's plain cross-entropy
            per_example = cross_entropy(y, y_pred)
        loss = keras.ops.mean(per_example)
        if self.losses:
            loss = loss + keras.ops.sum(self.losses)
        if training and self.ema is not None:
            self.ema.update()
        return loss


def train_student(config: ConsistencyConfig, teacher, train, val, run: RunDir, initial=None):
    student = build_for(config.model, train)
    if config.student_from_teacher_init:
        if initial is None or config.model != config.teacher.model:
            raise MentorError(
                "student_from_teacher_init needs a teacher trained in this run with the same "
                "[model] as the student; set it to false or make the two models equal.")
        student.set_weights(initial)
    a, t = config.augment, config.train
    clean_view = augment_layer(config.teacher.augment, config.seed)
    noisy_view = augment.StrongAugment(num_ops=a.num_ops, magnitude=a.magnitude, flip=False,
                                       translate=0.0, seed=config.seed + 1)
    trainer = ConsistencyTrainer(student, teacher, clean_view, noisy_view, config.loss,
                                 ema_decay=t.ema)
    print(f"student: training {config.model.name} "
          f"({count_params(student, trainable_only=True):,} parameters) on the noisy view, "
          f"T = {config.loss.temperature:g}", flush=True)
    steps = fit_student(trainer, teacher, train, val, run, t, seed=config.seed + 2,
                        workers=config.data.workers)
    return student, trainer, steps


@recorded
def run(config: ConsistencyConfig, out, *, name: str = "consistency") -> dict:
    start = time.time()
    run_dir, train, val, test = start_run(config, out, name)
    teacher, teacher_steps, initial = get_teacher(config, train, val, run_dir)
    teacher_params = count_params(teacher, trainable_only=True)  # before it is frozen
    run_dir.save_model(teacher, "teacher.keras")
    student, trainer, steps = train_student(config, teacher, train, val, run_dir, initial)
    run_dir.save_model(student, "student.keras")

    r = config.robustness
    subset = robustness.subset(test, r.max_images, config.seed)
    print(f"robustness: {len(subset)} test images × {len(r.corruptions) or 19} corruptions × "
          f"{len(r.severities)} severities, teacher and student", flush=True)
    results = robustness.sweep({"teacher": teacher, "student": student}, subset,
                               corruptions=r.corruptions or None,
                               severities=tuple(r.severities), seed=r.seed)
    metrics = {"recipe": "consistency", "backend": keras.backend.backend(), "steps": steps,
               "teacher_steps": teacher_steps}
    for who, model in (("teacher", teacher), ("student", student)):
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
                   train_images=len(train), test_images=len(test),
                   corruption_images=len(subset))
    for who in ("teacher", "student"):
        metrics.update({f"{who}_{k}": v for k, v in results[who].items()
                        if k.startswith("corrupt_acc/")})

    figures = []
    if run_dir.file("teacher_history.csv").exists():
        figures.append(("Teacher training", plot_history(
            run_dir.file("teacher_history.csv"), run_dir.file("teacher_curves.png"),
            "teacher").name))
    figures.append(("Student training", plot_history(
        run_dir.file("history.csv"), run_dir.file("curves.png"), "student").name))
    shown = train.x[np.random.default_rng(config.seed).choice(len(train), 8, replace=False)]
    clean, noisy = trainer.views(shown)
    figures.append(("What each model sees: the teacher the clean view, the student the noisy "
                    "view of the same images", augment.sample_grid(
                        {"input": shown, "clean (teacher)": keras.ops.convert_to_numpy(clean),
                         "noisy (student)": keras.ops.convert_to_numpy(noisy)},
                        run_dir.file("views.png")).name))
    figures.append(("Accuracy per corruption and severity", robustness.heatmap(
        results, run_dir.file("robustness.png")).name))
    figures.append(("Teacher vs student per corruption", robustness.compare_bars(
        results, run_dir.file("per_corruption.png")).name))
    metrics["seconds"] = round(time.time() - start, 1)
    shown_metrics = {k: v for k, v in metrics.items() if "/" not in k}
    write_report(run_dir.file("report.html"), f"{name}: consistency training", shown_metrics,
                 figures, dumps(to_dict(config)))
    run_dir.write_metrics(metrics)
    return metrics
