"""A teacher at its own resolution (teacher.image_size): it sees the student's exact view
resized on the device, trains and is evaluated at its own side, and every size check
fails before anything trains."""

import json

import keras
import numpy as np
import pytest
from conftest import Record
from test_distill import save, tiny_config

from mentor import augment
from mentor.errors import MentorError
from mentor.recipes import from_dict
from mentor.recipes.distill import DistillLossConfig, DistillTrainer, SharedView
from mentor.teachers import resized_input, teacher_side

pytestmark = pytest.mark.neutral


def conv_classifier(size, channels=1, classes=10, record=None, name=None):
    """Raw pixels → conv → global pooling: `size` None takes any side."""
    layers = [keras.Input((size, size, channels))]
    if record is not None:
        layers.append(Record(record))
    layers += [keras.layers.Rescaling(1 / 255.0),
               keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
               keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
               keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)]
    return keras.Sequential(layers, name=name)


def flat_classifier(size, channels=1, classes=10):
    """Takes size×size images only (Flatten → Dense)."""
    return keras.Sequential([keras.Input((size, size, channels)),
                             keras.layers.Rescaling(1 / 255.0), keras.layers.Flatten(),
                             keras.layers.Dense(classes)])


def resized(x, side):
    return keras.ops.convert_to_numpy(augment.resize(x, side))


def line_fit(view, channel, axis, margin):
    """Per image, (value at the view's first edge, span across it) of a channel that is
    linear along `axis` (1 rows, 2 columns), fitted in the view's own unit coordinate
    u = (i + ½) / side over the pixels `margin` or more from the border."""
    side = view.shape[axis]
    profile = view[..., channel].mean(axis=3 - axis)  # (batch, side)
    keep = np.arange(margin, side - margin)
    u = (keep + 0.5) / side
    fits = [np.polyfit(u, row[keep], 1) for row in profile]
    return np.array([(b, a) for a, b in fits])


@pytest.mark.parametrize("side", [24, 10])  # grown and shrunk (antialiased)
def test_the_teacher_sees_the_students_exact_view_resized_to_its_own_side(side):
    """Image i has pixel (r, c) = (15 r, 15 c, 8 i + 4): rows and columns in the first two
    channels, its index in the third. After one train step, the teacher's input must be
    the student's view resized: the same crop box (the same straight lines in the view's
    own coordinates), the same flip and the same MixUp partner and weight."""
    if keras.backend.backend() != "torch":
        pytest.skip("records tensors eagerly; the torch backend runs train steps eagerly")
    size, n = 16, 16
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    x = np.zeros((n, size, size, 3), np.uint8)
    x[..., 0], x[..., 1] = 15 * r, 15 * c
    x[..., 2] = (8 * np.arange(n) + 4)[:, None, None]
    y = np.arange(n) % 3
    keras.utils.set_random_seed(0)
    seen_t, seen_s = [], []
    teacher = conv_classifier(side, 3, 3, record=seen_t, name="teacher")
    student = conv_classifier(size, 3, 3, record=seen_s, name="student")
    trainer = DistillTrainer(student, teacher=resized_input(teacher, size, side),
                             view=SharedView(area=(0.2, 0.6), seed=5),
                             loss=DistillLossConfig())
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-2))
    trainer.fit(x[:8], y[:8], verbose=0)  # the first fit also probes the models
    seen_t.clear(), seen_s.clear()
    trainer.fit(x, y, batch_size=n, epochs=1, shuffle=False, verbose=0)  # one step
    assert len(seen_t) == len(seen_s) == 1
    t, s = seen_t[0], seen_s[0]
    assert t.shape == (n, side, side, 3) and s.shape == (n, size, size, 3)

    np.testing.assert_allclose(t, resized(s, side), atol=1e-3)  # the view, resized

    # the same MixUp partner and weight: the index channel is λ·c_i + (1 − λ)·c_partner
    lam, partner = (keras.ops.convert_to_numpy(trainer.kept[k]) for k in ("weights", "partner"))
    index = x[:, 0, 0, 2].astype(np.float64)
    want = lam * index + (1 - lam) * index[partner]
    assert ((lam > 0.05) & (lam < 0.95)).sum() >= n // 2  # really mixed
    assert (partner != np.arange(n)).sum() >= n // 2
    np.testing.assert_allclose(t[..., 2].mean(axis=(1, 2)), want, atol=0.05)
    np.testing.assert_allclose(s[..., 2].mean(axis=(1, 2)), want, atol=0.05)

    # the same crop box and flip, in each view's own coordinates
    for channel, axis in ((0, 1), (1, 2)):
        student_lines = line_fit(s, channel, axis, margin=1)
        teacher_lines = line_fit(t, channel, axis, margin=2)
        np.testing.assert_allclose(teacher_lines, student_lines, atol=0.5)
        # the boxes differ image by image, and are not the whole image (span 15·16 = 240)
        assert np.ptp(student_lines[:, 1]) > 20 and np.abs(student_lines[:, 1]).max() < 230
    assert (line_fit(s, 1, 2, 1)[:, 1] < 0).any()  # some views are mirrored


def test_the_teachers_side_is_its_key_else_its_own_fixed_input_else_the_students(capsys):
    free, fixed = conv_classifier(None), flat_classifier(16)
    assert teacher_side(free, 0, 8, "t") == 8 and teacher_side(free, 24, 8, "t") == 24
    assert teacher_side(fixed, 0, 8, "t") == 16
    assert "takes 16×16 images" in capsys.readouterr().out  # said in the log
    assert teacher_side(fixed, 16, 8, "t") == 16 and teacher_side(fixed, 0, 16, "t") == 16
    with pytest.raises(MentorError, match=r"takes 16×16 images but teacher.image_size = 12"):
        teacher_side(fixed, 12, 8, "t")
    wide = keras.Sequential([keras.Input((16, 24, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])
    with pytest.raises(MentorError, match="16×24 pixels"):
        teacher_side(wide, 0, 8, "t")
    model = conv_classifier(16)
    assert resized_input(model, 16, 16) is model  # the same side: no resize op at all
    wrapped = resized_input(model, 8, 16)
    assert wrapped.input_shape == (None, 8, 8, 1) and wrapped.get_layer("resize").size == 16


def test_the_resize_is_bilinear_and_antialiased_when_shrinking():
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[:, :, [0, 1, 4, 5]] = 255.0  # columns 255, 255, 0, 0, 255, 255, 0, 0
    shrunk = resized(x, 4)[0, 0, :, 0]
    # Output column 1 is centred on input 2.5: a triangle filter two input pixels wide
    # weighs columns 1..4 by ¼, ¾, ¾, ¼ (÷ 2), i.e. 255 · ½ / 2 = 63.75; column 2 the
    # complement. Plain bilinear sampling would read 0 and 255 (aliasing).
    np.testing.assert_allclose(shrunk[1:3], [63.75, 191.25], atol=1e-3)
    ramp = np.broadcast_to(np.arange(4, dtype=np.float32)[None, None, :, None] * 80,
                           (1, 4, 4, 1))
    grown = resized(ramp, 8)[0, 0, :, 0]
    np.testing.assert_allclose(grown[1:-1], 80 * ((np.arange(1, 7) + 0.5) / 2 - 0.5), atol=1e-3)
    assert resized(x, 8) is not None and np.array_equal(resized(x, 8), x)


# ----------------------------------------------------------------------------- runs


def accuracy_at(model, data, side):
    """The model's accuracy on `data` resized to `side` first (as the run resizes)."""
    x = data.x if side == data.x.shape[1] else resized(data.x, side)
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == data.y))


@pytest.mark.torch_once
def test_a_teacher_with_a_fixed_input_of_another_size_distils(tmp_path, capsys):
    from mentor.data.splits import load_splits
    from mentor.recipes import distill

    keras.utils.set_random_seed(0)
    teacher = flat_classifier(16)
    path = save(teacher, tmp_path / "t16.keras")
    config = tiny_config(**{"teacher.path": path, "train.epochs": 1})
    metrics = distill.RECIPE.run(config, tmp_path / "run")
    assert "teacher: takes 16×16 images" in capsys.readouterr().out
    _, _, test = load_splits(config.data, config.seed)
    # the teacher is scored on the 8-px test images resized to its 16 px on the device
    assert metrics["teacher_acc"] == pytest.approx(accuracy_at(teacher, test, 16), abs=1e-9)
    assert metrics["teacher_acc"] > 0.0 and metrics["steps"] == 3

    # `mentor evaluate RUN --data …` scores it the same way
    np.savez(tmp_path / "test.npz", x=test.x, y=test.y)
    again = distill.evaluate_run(tmp_path / "run", config, str(tmp_path / "test.npz"))
    for key in ("teacher_acc", "student_acc", "student_teacher_agreement"):
        assert again[key] == metrics[key], key


@pytest.mark.torch_once
def test_a_teacher_of_any_input_side_distils_at_teacher_image_size(tmp_path):
    from mentor.data.splits import load_splits
    from mentor.recipes import distill

    config = tiny_config(**{"teacher.image_size": 16, "train.epochs": 1})
    train, _, test = load_splits(config.data, config.seed)
    keras.utils.set_random_seed(0)
    teacher = conv_classifier(None)  # (None, None, 1)
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(resized(train.x, 16), train.y, epochs=6, verbose=0)  # a teacher at 16 px
    at_16, at_8 = accuracy_at(teacher, test, 16), accuracy_at(teacher, test, 8)
    config.teacher.path = save(teacher, tmp_path / "free.keras")
    metrics = distill.RECIPE.run(config, tmp_path / "run")
    assert at_16 != at_8  # the check can tell the two sides apart
    assert metrics["teacher_acc"] == pytest.approx(at_16, abs=1e-9)


@pytest.mark.torch_once
def test_a_teacher_trained_in_the_run_trains_and_is_scored_at_its_own_side(tmp_path):
    from mentor.data.splits import load_splits
    from mentor.models import load_model
    from mentor.recipes import distill

    config = tiny_config(**{"teacher.image_size": 16, "teacher.train.epochs": 1,
                            "train.epochs": 1})
    metrics = distill.RECIPE.run(config, tmp_path / "run")
    teacher = load_model(tmp_path / "run" / "teacher.keras")
    assert teacher.input_shape == (None, 16, 16, 1)
    student = load_model(tmp_path / "run" / "student.keras")
    assert student.input_shape == (None, 8, 8, 1)
    _, _, test = load_splits(config.data, config.seed)
    assert metrics["teacher_acc"] == pytest.approx(accuracy_at(teacher, test, 16), abs=1e-9)
    assert metrics["teacher_acc"] > 0.3  # it learned at 16 px (chance: 0.1)


@pytest.mark.torch_once
def test_a_consistency_teacher_at_its_own_side_is_swept_at_it(tmp_path):
    from mentor.data.splits import load_splits
    from mentor.models import load_model
    from mentor.recipes import consistency

    config = from_dict({
        "recipe": "consistency", "seed": 0,
        "data": {"train": "embedded:digits", "test_fraction": 0.2},
        "teacher": {"image_size": 16, "model": {"name": "small_cnn", "options": {"width": 8}},
                    "augment": {"flip": False}, "train": {"epochs": 1, "learning_rate": 0.01}},
        "model": {"name": "small_cnn", "options": {"width": 4}},
        "train": {"epochs": 1, "steps_per_epoch": 3, "learning_rate": 0.01},
        "robustness": {"corruptions": ["gaussian_noise"], "severities": [1],
                       "max_images": 0},
    })
    metrics = consistency.RECIPE.run(config, tmp_path / "run")
    teacher = load_model(tmp_path / "run" / "teacher.keras")
    assert teacher.input_shape == (None, 16, 16, 1)
    _, _, test = load_splits(config.data, config.seed)
    assert metrics["teacher_clean_acc"] == pytest.approx(accuracy_at(teacher, test, 16),
                                                         abs=1e-9)
    assert metrics["teacher_clean_acc"] > 0.3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics


# ----------------------------------------------------------------------------- refused early


def nothing_trained(run):
    return not any((run / name).exists() for name in (
        "teacher.keras", "student.keras", "metrics.json", "history.csv",
        "teacher_history.csv"))


@pytest.mark.parametrize("case", ["fixed size ≠ teacher.image_size", "not square",
                                  "channels"])
def test_a_loaded_teacher_that_cannot_take_the_view_is_refused_before_training(tmp_path,
                                                                               case):
    from mentor.recipes import consistency, distill

    teacher, extra, match = {
        "fixed size ≠ teacher.image_size": (flat_classifier(16), {"teacher.image_size": 12},
                                            "takes 16×16 images but teacher.image_size = 12"),
        "not square": (keras.Sequential([keras.Input((8, 16, 1)), keras.layers.Flatten(),
                                         keras.layers.Dense(10)]), {}, "8×16 pixels"),
        "channels": (flat_classifier(8, channels=3), {}, "takes images of 3 channels"),
    }[case]
    path = save(teacher, tmp_path / "t.keras")
    with pytest.raises(MentorError, match=match):
        distill.RECIPE.run(tiny_config(**{"teacher.path": path, **extra}), tmp_path / "d")
    assert nothing_trained(tmp_path / "d")
    values = {"recipe": "consistency", "data": {"train": "embedded:digits"},
              "teacher": {"path": path, "image_size": extra.get("teacher.image_size", 0)}}
    with pytest.raises(MentorError, match=match):
        consistency.RECIPE.run(from_dict(values), tmp_path / "c")
    assert nothing_trained(tmp_path / "c")


def test_a_teacher_to_train_at_a_side_its_model_cannot_take_fails_before_it_trains(tmp_path):
    from mentor.recipes import distill

    # ResNet50V2 needs 32 px or more: found while the run checks its models, not after the
    # teacher stage
    config = tiny_config(**{"teacher.image_size": 16, "teacher.model.name": "resnet50v2",
                            "teacher.model.options": {}})
    with pytest.raises(MentorError, match=r"\[teacher.model\] resnet50v2 .* 16×16×1"):
        distill.RECIPE.run(config, tmp_path / "run")
    assert nothing_trained(tmp_path / "run")


def test_student_from_teacher_init_with_a_teacher_of_another_side_fails_before_training(
        tmp_path):
    from mentor.recipes import consistency

    config = from_dict({"recipe": "consistency", "data": {"train": "embedded:digits"},
                        "teacher": {"image_size": 16}, "student_from_teacher_init": True})
    with pytest.raises(MentorError, match="student_from_teacher_init needs the teacher at"):
        consistency.RECIPE.run(config, tmp_path / "run")
    assert nothing_trained(tmp_path / "run")
