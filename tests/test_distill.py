"""The distill recipe: one shared view, a frozen teacher, the loss by hand, the schedule,
exact resume, and bad teachers."""

import json
import math

import keras
import numpy as np
import pytest
from conftest import bn_classifier

from mentor import augment
from mentor.config import set_dotted
from mentor.core.evaluation import compare
from mentor.core.optim import build_optimizer
from mentor.errors import MentorError
from mentor.losses import soft_target_kl as distill_loss
from mentor.recipes import from_dict
from mentor.recipes.distill import DistillLossConfig, DistillTrainer, SharedView

# Recipe tests run on every backend CI has: torch, then JAX (-m neutral).
pytestmark = pytest.mark.neutral


def make_trainer(seen_t=None, seen_s=None, mixup=True, temperature=1.0, ema=0.0,
                 label_weight=0.0):
    keras.utils.set_random_seed(0)
    teacher = bn_classifier(name="teacher", record=seen_t)
    student = bn_classifier(name="student", record=seen_s)
    view = SharedView(area=(0.3, 1.0), mixup=mixup, seed=5)
    trainer = DistillTrainer(student, teacher=teacher, view=view,
                             loss=DistillLossConfig(temperature=temperature,
                                                       label_weight=label_weight), ema=ema)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-2),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    return trainer


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1)).astype("uint8"), np.arange(n) % 3


def test_both_models_receive_the_identical_tensor_at_every_step():
    if keras.backend.backend() != "torch":
        pytest.skip("records tensors eagerly; the torch backend runs train steps eagerly")
    seen_t, seen_s = [], []
    trainer = make_trainer(seen_t, seen_s)
    x, y = batch(32)
    trainer.fit(x[:8], y[:8], verbose=0)  # the first fit also probes the models with ones
    seen_t.clear(), seen_s.clear()
    trainer.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert len(seen_t) == len(seen_s) == 8  # 4 steps × 2 epochs, no validation
    for t, s, k in zip(seen_t, seen_s, range(8)):
        np.testing.assert_array_equal(t, s)  # the same pixels, not just the same images
        raw = x[(k % 4) * 8:(k % 4 + 1) * 8].astype("float32")
        assert not np.allclose(t, raw)  # …and they are the crop + MixUp view, not the input


def test_a_view_of_another_size_than_the_data_trains_and_validates():
    """augment.crop_size ≠ the data's size: Keras's first probe of the model (training=False)
    passes a training batch at the data's size, which must reach the models at the view's."""
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(3)])  # takes 12×12 images only
    student = bn_classifier(size=12)
    trainer = DistillTrainer(student, teacher=teacher, loss=DistillLossConfig(),
                             view=SharedView(size=12, area=(0.3, 1.0), seed=5))
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-2),  # metrics: Keras probes first
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    x, y = batch(16)  # 8×8
    val = keras.ops.convert_to_numpy(augment.central_crop(x, 1.0, 12))
    history = trainer.fit(x, y, batch_size=8, epochs=1, validation_data=(val, y), verbose=0)
    assert np.isfinite(history.history["val_kl"]).all()
    assert tuple(trainer(x, training=True).shape) == (16, 3)


def test_teacher_weights_and_batchnorm_statistics_do_not_move():
    trainer = make_trainer(ema=0.99)
    x, y = batch(32)
    teacher_before = [np.array(w) for w in trainer.teacher.get_weights()]
    student_before = [np.array(w) for w in trainer.classifier.get_weights()]
    history = trainer.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), verbose=0)
    for a, b in zip(teacher_before, trainer.teacher.get_weights()):
        np.testing.assert_array_equal(a, b)  # kernels, biases, BN gamma/beta and statistics
    assert all(not np.allclose(a, b)
               for a, b in zip(student_before, trainer.classifier.get_weights()))
    assert not trainer.teacher.trainable_weights
    for key in ("kl", "agreement", "acc", "val_kl", "val_agreement", "val_acc"):
        assert key in history.history and np.isfinite(history.history[key]).all()


def test_distill_loss_by_hand():
    # teacher (0, 0) → p = (½, ½); student (ln 3, 0) → q = (¾, ¼)
    teacher, student = np.array([[0.0, 0.0]]), np.array([[math.log(3.0), 0.0]])
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # = ½ ln(4/3)
    got = keras.ops.convert_to_numpy(distill_loss(teacher, student, temperature=1.0))
    assert float(got[0]) == pytest.approx(kl, rel=1e-5)
    # T = 2: q = (√3, 1)/(√3 + 1), and the T² factor multiplies the KL by 4
    q1 = math.sqrt(3.0) / (math.sqrt(3.0) + 1.0)
    kl2 = 0.5 * math.log(0.5 / q1) + 0.5 * math.log(0.5 / (1.0 - q1))
    got = keras.ops.convert_to_numpy(distill_loss(teacher, student, temperature=2.0))
    assert float(got[0]) == pytest.approx(4.0 * kl2, rel=1e-5)
    got = keras.ops.convert_to_numpy(distill_loss(teacher, student, 2.0, t_squared=False))
    assert float(got[0]) == pytest.approx(kl2, rel=1e-5)


def test_training_loss_is_the_mean_kl_between_the_models_on_the_shared_view():
    trainer = make_trainer(temperature=2.0)
    x, y = batch(8)
    student_logits = trainer(x, training=True)
    teacher_logits = trainer.kept["teacher_logits"]
    got = float(keras.ops.convert_to_numpy(
        trainer.compute_loss(x, y, student_logits, training=True)))
    t, s = (keras.ops.convert_to_numpy(v) for v in (teacher_logits, student_logits))
    p = np.exp(t / 2) / np.exp(t / 2).sum(-1, keepdims=True)
    q = np.exp(s / 2) / np.exp(s / 2).sum(-1, keepdims=True)
    want = 4.0 * np.mean(np.sum(p * np.log(p / q), axis=-1))
    assert got == pytest.approx(float(want), rel=1e-4)
    assert want > 0  # two different networks: the check is not 0 == 0


def test_a_label_term_weighs_the_mixed_labels_against_the_teacher_as_hinton_et_al():
    trainer = make_trainer(temperature=2.0, label_weight=0.3)
    x, y = batch(8)
    student_logits = trainer(x, training=True)
    got = float(keras.ops.convert_to_numpy(
        trainer.compute_loss(x, y, student_logits, training=True)))
    t, s = (keras.ops.convert_to_numpy(v) for v in (trainer.kept["teacher_logits"],
                                                    student_logits))
    lam, partner = (keras.ops.convert_to_numpy(trainer.kept[k]) for k in ("weights", "partner"))
    assert 0 < lam.min() < lam.max() < 1  # images really are mixed: both labels count
    p = np.exp(t / 2) / np.exp(t / 2).sum(-1, keepdims=True)
    q = np.exp(s / 2) / np.exp(s / 2).sum(-1, keepdims=True)
    kl = 4.0 * np.sum(p * np.log(p / q), axis=-1)
    log_q1 = s - np.log(np.exp(s).sum(-1, keepdims=True))  # the student at T = 1
    ce = -(lam * log_q1[np.arange(8), y] + (1 - lam) * log_q1[np.arange(8), y[partner]])
    assert got == pytest.approx(float(np.mean(0.7 * kl + 0.3 * ce)), rel=1e-4)


def test_images_without_labels_add_nothing_to_the_label_term():
    trainer = make_trainer(label_weight=0.5)
    x, y = batch(8)
    labeled = np.array([1, 0, 1, 1, 0, 0, 1, 0], "float32")
    student_logits = trainer({"images": x, "labeled": labeled}, training=True)
    got = float(keras.ops.convert_to_numpy(
        trainer.compute_loss(x, y, student_logits, training=True)))
    t, s = (keras.ops.convert_to_numpy(v) for v in (trainer.kept["teacher_logits"],
                                                    student_logits))
    lam, partner = (keras.ops.convert_to_numpy(trainer.kept[k]) for k in ("weights", "partner"))
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    q = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    kl = np.sum(p * np.log(p / q), axis=-1)  # on every image, labeled or not
    own, other = lam * labeled, (1 - lam) * labeled[partner]
    log_q = np.log(q)
    ce = own * -log_q[np.arange(8), y] + other * -log_q[np.arange(8), y[partner]]
    want = 0.5 * kl.mean() + 0.5 * ce.sum() / (own + other).sum()
    assert got == pytest.approx(float(want), rel=1e-4)
    # the labels of unlabeled images really are left out: changing them changes nothing
    y2 = np.where(labeled == 1, y, (y + 1) % 3)
    assert float(keras.ops.convert_to_numpy(trainer.label_term(y2, student_logits))) == \
        pytest.approx(float(keras.ops.convert_to_numpy(trainer.label_term(y, student_logits))))


def test_mixup_weights_are_uniform_and_partners_come_from_the_batch():
    view = SharedView(mixup=True, seed=1)
    x = np.random.default_rng(0).integers(0, 256, (512, 8, 8, 3)).astype("uint8")
    _, weights, partner = (keras.ops.convert_to_numpy(v) for v in view(x))
    assert weights.shape == (512,) and 0.0 <= weights.min() and weights.max() <= 1.0
    assert abs(weights.mean() - 0.5) < 0.05 and abs(weights.std() - math.sqrt(1 / 12)) < 0.03
    assert sorted(partner.tolist()) == list(range(512))


def test_learning_rate_warms_up_linearly_then_decays_to_zero_by_cosine():
    cfg = from_dict({"recipe": "distill", "train": {"learning_rate": 0.003,
                                                    "warmup_steps": 100}}).train
    assert (cfg.optimizer, cfg.clipnorm) == ("adamw", 1.0)
    opt = build_optimizer(cfg, 1100)
    lr = opt._learning_rate  # the schedule, a function of the step
    at = lambda step: float(keras.ops.convert_to_numpy(lr(step)))  # noqa: E731
    assert at(0) == pytest.approx(0.0, abs=1e-12)
    assert at(50) == pytest.approx(0.0015, rel=1e-5)  # half-way up the warm-up
    assert at(100) == pytest.approx(0.003, rel=1e-5)  # peak
    assert at(600) == pytest.approx(0.0015, rel=1e-4)  # half-way down: cos(π/2) = 0
    assert at(1100) == pytest.approx(0.0, abs=1e-9)  # the end
    assert opt.global_clipnorm == 1.0 and opt.weight_decay == cfg.weight_decay


def test_compare_counts_agreement_and_kl():
    t = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [1.0, 1.0]])
    s = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    m = compare(t, s, np.array([0, 1, 1, 0]))
    assert m["teacher_acc"] == 0.75 and m["student_acc"] == 0.75  # rows 0, 1, 3 and 0, 2, 3
    assert m["student_teacher_agreement"] == 0.5  # rows 0 and 3 (ties go to class 0)
    p = 1 / (1 + math.exp(-2))  # softmax(2, 0)[0]
    flip = p * math.log(p / (1 - p)) + (1 - p) * math.log((1 - p) / p)
    assert m["student_teacher_kl"] == pytest.approx(2 * flip / 4, rel=1e-5)


# ----------------------------------------------------------------------------- runs


def tiny_config(**extra):
    values = {
        "recipe": "distill", "seed": 0,
        "data": {"train": "embedded:digits", "test_fraction": 0.2, "val_fraction": 0.1},
        "teacher": {"model": {"name": "small_cnn", "options": {"width": 8}},
                    "augment": {"kind": "weak", "flip": False},
                    "train": {"epochs": 2, "learning_rate": 0.01, "batch_size": 64}},
        "model": {"name": "small_cnn", "options": {"width": 4}},
        "augment": {"crop_area": [0.5, 1.0], "flip": False},
        "train": {"epochs": 4, "steps_per_epoch": 3, "batch_size": 32, "learning_rate": 0.01,
                  "warmup_steps": 2},
    }
    for key, value in extra.items():
        set_dotted(values, key, value)
    return from_dict(values)


@pytest.mark.torch_once
def test_a_run_resumed_after_its_teacher_stage_still_counts_the_teachers_steps(tmp_path):
    """The teacher is not trained again on resume (teacher.keras is kept), but its steps and
    time still belong to the run's metrics."""
    import shutil

    from mentor.recipes import distill

    config = tiny_config(**{"train.epochs": 1})
    first = distill.RECIPE.run(config, tmp_path / "run")
    # 2 teacher epochs of ⌈train images / 64⌉ steps
    assert first["teacher_steps"] == 2 * -(-first["train_images"] // 64)
    assert first["teacher_seconds"] > 0
    # as if killed during the student stage: the teacher stage had finished
    for name in ("metrics.json", "student.keras"):
        (tmp_path / "run" / name).unlink()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "student")
    again = distill.RECIPE.run(config, tmp_path / "run")
    assert again["teacher_steps"] == first["teacher_steps"]
    assert again["teacher_seconds"] == first["teacher_seconds"]


@pytest.mark.torch_once
def test_short_distill_run_writes_the_output_contract(tmp_path):
    from mentor.recipes import distill

    metrics = distill.RECIPE.run(tiny_config(**{"baseline.enabled": True}), tmp_path / "run")
    for key in ("teacher_acc", "student_acc", "student_teacher_agreement", "teacher_params",
                "student_params", "student_labels_only_acc", "student_teacher_kl"):
        assert key in metrics
    assert metrics["steps"] == 12 and metrics["student_params"] < metrics["teacher_params"]
    assert 0.0 <= metrics["student_acc"] <= 1.0
    # the time of each stage (the bar's "minutes of training in all" is their sum)
    stages = [metrics[f"{who}_seconds"] for who in ("teacher", "student", "baseline")]
    assert min(stages) > 0 and sum(stages) <= metrics["seconds"] + 0.2  # each rounded to 0.1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    for name in ("teacher.keras", "student.keras", "baseline.keras", "report.html",
                 "accuracy.png", "views.png", "history.csv", "baseline_history.csv"):
        assert (tmp_path / "run" / name).is_file(), name


@pytest.mark.torch_once  # resume is backend-neutral code; 54 s of compiling on JAX
def test_interrupted_run_resumes_at_the_right_step_with_the_right_learning_rate(
        tmp_path, monkeypatch):
    """Stop a run in its third student epoch, run it again into the same directory, and it
    must end exactly where an uninterrupted run ends."""
    from mentor.data import pipeline
    from mentor.recipes import distill

    config = tiny_config()
    straight = distill.RECIPE.run(config, tmp_path / "straight")

    original = pipeline.Batches.__getitem__

    def dies_in_epoch_3(self, index):
        if self.order.batch_size == 32 and self.start_step + index == 7:  # step 8 of 12
            raise KeyboardInterrupt("killed")
        return original(self, index)

    monkeypatch.setattr(pipeline.Batches, "__getitem__", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        distill.RECIPE.run(config, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    saved = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints" / "student").iterdir())
    assert saved == ["epoch-0001.npz", "epoch-0002.npz"]
    monkeypatch.setattr(pipeline.Batches, "__getitem__", original)

    resumed = distill.RECIPE.run(config, tmp_path / "resumed")
    for key in ("teacher_acc", "student_acc", "student_teacher_agreement",
                "student_teacher_kl"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
    a = keras.saving.load_model(tmp_path / "straight" / "student.keras")
    b = keras.saving.load_model(tmp_path / "resumed" / "student.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    # the learning rate logged after each epoch is the uninterrupted run's, epoch by epoch
    rows = lambda run: (tmp_path / run / "history.csv").read_text().splitlines()  # noqa: E731
    lr_col = rows("straight")[0].split(",").index("learning_rate")
    assert [r.split(",")[lr_col] for r in rows("resumed")] == \
        [r.split(",")[lr_col] for r in rows("straight")]
    assert len(rows("resumed")) == 1 + 4
    # the final checkpoint: 4 epochs done, the optimizer's step counter (its first
    # variable) at 12 of 12
    with np.load(tmp_path / "resumed" / "checkpoints" / "student" / "epoch-0004.npz") as f:
        assert int(f["epoch"]) == 4 and int(f["opt0"]) == 12


def test_resuming_with_another_config_is_refused(tmp_path):
    from mentor.recipes import distill
    from mentor.run_folders import RunDir

    RunDir(tmp_path / "run").write_config({"recipe": "distill", "seed": 1}, "x")
    (tmp_path / "run" / "teacher.keras").write_bytes(b"")  # it had saved something
    with pytest.raises(MentorError, match="unfinished run with another config"):
        distill.RECIPE.run(tiny_config(), tmp_path / "run")


# ----------------------------------------------------------------------------- bad teachers


def save(model, path):
    model.save(path)
    return str(path)


def test_a_teacher_with_another_class_count_is_refused(tmp_path):
    from mentor.recipes import distill

    path = save(keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(12)]), tmp_path / "t12.keras")
    with pytest.raises(MentorError, match="teacher predicts 12 classes but the student 10"):
        distill.RECIPE.run(tiny_config(**{"teacher.path": path}), tmp_path / "run")
    path = save(keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(5)]), tmp_path / "t5.keras")
    with pytest.raises(MentorError, match="predicts 5 classes"):
        distill.RECIPE.run(tiny_config(**{"teacher.path": path}), tmp_path / "run2")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_teacher_file_that_does_not_load_is_refused(tmp_path):
    from mentor.recipes import distill

    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MentorError, match="broken.keras"):
        distill.RECIPE.run(tiny_config(**{"teacher.path": str(tmp_path / "broken.keras")}),
                    tmp_path / "run")
    with pytest.raises(MentorError, match="no such model file"):
        distill.RECIPE.run(tiny_config(**{"teacher.path": str(tmp_path / "missing.keras")}),
                    tmp_path / "run2")


def test_a_softmax_teacher_is_distilled_from_its_log_probabilities(tmp_path, capsys):
    """keras.applications models end in a softmax by default; any Keras model must do."""
    from mentor.recipes import distill

    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                                keras.layers.Flatten(), keras.layers.Dense(10),
                                keras.layers.Softmax()])
    path = save(teacher, tmp_path / "softmax.keras")
    metrics = distill.RECIPE.run(tiny_config(**{"teacher.path": path}), tmp_path / "run")
    assert "outputs are probabilities" in capsys.readouterr().out
    assert np.isfinite(metrics["student_teacher_kl"]) and metrics["student_teacher_kl"] < 5

    trainer = make_trainer()
    trainer.teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                        keras.layers.Dense(3), keras.layers.Softmax()])
    trainer.teacher_probabilities = True
    x, _ = batch(8)
    trainer(x, training=True)
    stashed = keras.ops.convert_to_numpy(trainer.kept["teacher_logits"])
    np.testing.assert_allclose(np.exp(stashed).sum(-1), 1.0, rtol=1e-5)  # log p: softmax = p


def test_a_teacher_can_be_named_by_its_run_directory(tmp_path):
    from mentor.teachers import teacher_file

    run = tmp_path / "supervised-run"
    run.mkdir()
    with pytest.raises(MentorError, match="without model.keras"):
        teacher_file(run)
    (run / "student.keras").write_bytes(b"x")
    assert teacher_file(run) == run / "student.keras"  # a distill or consistency run
    (run / "model.keras").write_bytes(b"x")
    assert teacher_file(run) == run / "model.keras"  # a supervised run's model comes first
    assert teacher_file(run / "model.keras") == run / "model.keras"


def test_a_flip_averaged_teacher_is_the_mean_of_its_outputs_on_the_image_and_its_mirror():
    from mentor.core.evaluation import flip_averaged

    keras.utils.set_random_seed(0)
    teacher = bn_classifier(name="teacher")
    averaged = flip_averaged(teacher)
    x, _ = batch(8)
    x = x.astype("float32")
    by_hand = 0.5 * (keras.ops.convert_to_numpy(teacher(x)) +
                     keras.ops.convert_to_numpy(teacher(x[:, :, ::-1].copy())))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(averaged(x)), by_hand, atol=1e-6)
    assert not np.allclose(by_hand, keras.ops.convert_to_numpy(teacher(x)), atol=1e-3)
    assert averaged.count_params() == teacher.count_params()  # the same weights, shared
    assert averaged.output_shape == teacher.output_shape


@pytest.mark.torch_once
def test_a_run_with_a_flip_averaged_teacher_reports_that_teacher_and_keeps_it_frozen(tmp_path):
    from mentor.data.splits import load_splits
    from mentor.models import count_params, load_model
    from mentor.recipes import distill

    keras.utils.set_random_seed(0)
    config = tiny_config(**{"teacher.flip_average": True, "baseline.enabled": True})
    metrics = distill.RECIPE.run(config, tmp_path / "run")
    teacher = load_model(tmp_path / "run" / "teacher.keras")  # saved before training the student
    _, _, test = load_splits(config.data, config.seed)
    x = test.x.astype("float32")
    mean = 0.5 * (teacher.predict(x, verbose=0) + teacher.predict(x[:, :, ::-1].copy(), verbose=0))
    assert metrics["teacher_acc"] == pytest.approx(float(np.mean(mean.argmax(-1) == test.y)))
    assert metrics["teacher_params"] == count_params(teacher, trainable_only=True)  # once
    with pytest.raises(MentorError, match="flip_average"):  # a distill key, not consistency's
        from_dict({"recipe": "consistency", "teacher": {"flip_average": True}})

    # `mentor evaluate RUN --data …` on the run's own test images gives back its metrics:
    # the same flip-averaged teacher, student, labels-only student and view.
    from mentor.cli import main

    np.savez(tmp_path / "test.npz", x=test.x, y=test.y)
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "test.npz"),
                 "--json", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["images"] == len(test) and again["run"] == str(tmp_path / "run")
    for key in ("teacher_acc", "student_acc", "student_teacher_agreement",
                "student_labels_only_acc"):
        assert again[key] == metrics[key], key
    assert again["student_teacher_kl"] == pytest.approx(metrics["student_teacher_kl"], rel=1e-4)


def test_evaluating_a_run_directory_names_what_is_missing(tmp_path):
    from mentor.evaluate import evaluate_run as evaluate_any_run
    from mentor.recipes import distill

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(MentorError, match="no config.toml"):
        evaluate_any_run(run, "embedded:digits")
    gone = str(tmp_path / "deleted-teacher.keras")

    def evaluate_run(path, source, **kwargs):
        return distill.evaluate_run(path, tiny_config(**{"teacher.path": gone}), source, **kwargs)

    with pytest.raises(MentorError, match="no student.keras"):
        evaluate_run(run, "embedded:digits")
    bn_classifier(classes=10).save(run / "student.keras")
    with pytest.raises(MentorError, match="teacher of .* is gone.*deleted-teacher"):
        evaluate_run(run, "embedded:digits")
    # a teacher that runs code on load needs --unsafe here as everywhere else
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda t: t * 1.0),
                      keras.layers.Flatten(), keras.layers.Dense(10)]).save(gone)
    with pytest.raises(MentorError, match="--unsafe"):
        evaluate_run(run, "embedded:digits")
    metrics = evaluate_run(run, "embedded:digits", unsafe=True)
    assert metrics["images"] == 1797 and 0.0 <= metrics["teacher_acc"] <= 1.0
