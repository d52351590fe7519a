"""Models people bring: keras.applications networks with their preprocessing built in,
weights from a local file, a .keras file as a starting point (head replaced when the classes
differ), teachers on other pixels, and the recipes from Python with a keras.Model and arrays.
All offline."""

import importlib

import keras
import numpy as np
import pytest
from conftest import as_numpy

from mentor.config import ModelConfig
from mentor.core.trainer import ClassifierTrainer
from mentor.errors import MentorError
from mentor.models import build, load_model
from mentor.recipes import from_dict

APP = "keras.applications:MobileNetV3Small"  # 0.9 M parameters: the cheapest to build


def images(n=4, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels)).astype("uint8")


@pytest.fixture(scope="module")
def hub_preset(tmp_path_factory):
    """A tiny KerasHub ResNet classifier saved as a local preset, with an image converter
    that scales pixels to [0, 1]."""
    keras_hub = pytest.importorskip(
        "keras_hub", reason="KerasHub is the optional extra mentor[hub] (tensorflow-text)")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    converter = keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255.0)
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=4,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter))
    path = tmp_path_factory.mktemp("hub") / "preset"
    classifier.save_to_preset(str(path))
    return str(path)


@pytest.mark.parametrize("form", ["application", "zoo", "keras_hub", "keras file"])
def test_a_model_form_builds_trains_a_step_and_round_trips_through_keras(form, tmp_path,
                                                                         request):
    if form == "keras_hub":
        name = f"keras_hub:{request.getfixturevalue('hub_preset')}"
    elif form == "keras file":
        keras.utils.set_random_seed(3)
        build(ModelConfig(), num_classes=7, image_size=32, channels=3).save(tmp_path / "b.keras")
        name = str(tmp_path / "b.keras")
    else:
        name = APP if form == "application" else "small_cnn"
    keras.utils.set_random_seed(0)
    model = build(ModelConfig(name=name), num_classes=5, image_size=32, channels=3)
    assert model.output_shape == (None, 5)
    trainer = ClassifierTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    before = as_numpy(model.trainable_weights[-1]).copy()
    trainer.train_on_batch(images(8), np.arange(8) % 5)
    assert not np.allclose(as_numpy(model.trainable_weights[-1]), before)
    model.save(tmp_path / "m.keras")
    x = images(3, seed=1)
    np.testing.assert_array_equal(as_numpy(load_model(tmp_path / "m.keras")(x)),
                                  as_numpy(model(x)))


@pytest.mark.parametrize("application", ["ResNet50", "ResNet50V2", "DenseNet121"],
                         ids=["caffe", "tf", "torch"])
def test_the_built_in_preprocessing_equals_the_applications_preprocess_input(application):
    model = build(ModelConfig(name=f"keras.applications:{application}"), num_classes=3,
                  image_size=32, channels=3)
    layer = model.get_layer("preprocess")
    preprocess = importlib.import_module(
        getattr(keras.applications, application).__module__).preprocess_input
    x = images(2).astype("float32")
    np.testing.assert_allclose(as_numpy(layer(x)), preprocess(x.copy()), rtol=1e-5, atol=1e-4)


def test_a_keras_hub_preset_gets_its_converters_pixels_and_a_new_head(hub_preset):
    import keras_hub

    model = build(ModelConfig(name=f"keras_hub:{hub_preset}"), num_classes=6, image_size=32,
                  channels=3)
    assert model.output_shape == (None, 6)
    x = images(2).astype("float32")
    np.testing.assert_allclose(as_numpy(model.get_layer("preprocess")(x)), x / 255.0, rtol=1e-6)
    saved = keras_hub.models.Backbone.from_preset(hub_preset)
    for a, b in zip(model.get_layer(saved.name).get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)  # the preset's weights, as saved


def test_weights_from_a_local_file_reach_the_model_exactly(tmp_path):
    keras.utils.set_random_seed(1)
    source = keras.applications.MobileNetV3Small(include_top=False, weights=None, pooling="avg",
                                                 input_shape=(32, 32, 3))
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    keras.utils.set_random_seed(2)  # another initialisation, overwritten by the file
    model = build(ModelConfig(name=APP, weights=str(path)), num_classes=4, image_size=32,
                  channels=3)
    loaded = model.get_layer("backbone").get_weights()
    assert len(loaded) == len(source.get_weights())
    for a, b in zip(loaded, source.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_imagenet_weights_offline_give_one_message_naming_the_cache(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: [Errno -3] name resolution failed")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(MentorError) as error:
        build(ModelConfig(name=APP, weights="imagenet"), num_classes=3, image_size=32,
              channels=3)
    message = str(error.value)
    assert "could not be had" in message and str(tmp_path / "keras" / "models") in message
    assert "no_top" in message or "notop" in message  # the file to put there is named


def test_a_keras_file_is_a_starting_point_with_its_head_replaced_for_other_classes(
        tmp_path, capsys):
    keras.utils.set_random_seed(0)
    base = build(ModelConfig(), num_classes=10, image_size=16, channels=1)
    base.save(tmp_path / "base.keras")
    model = build(ModelConfig(name=str(tmp_path / "base.keras")), num_classes=3,
                  image_size=16, channels=1)
    assert model.output_shape == (None, 3)
    assert "is replaced by a new one" in capsys.readouterr().out
    for a, b in zip(model.get_weights()[:-2], base.get_weights()[:-2]):  # all but the head
        np.testing.assert_array_equal(a, b)
    same = build(ModelConfig(name=str(tmp_path / "base.keras")), num_classes=10,
                 image_size=16, channels=1)
    x = images(2, 16, 1)
    np.testing.assert_array_equal(as_numpy(same(x)), as_numpy(base(x)))  # kept as it was


@pytest.mark.parametrize("scale,convert", [("unit", lambda x: x / 255.0),
                                           ("symmetric", lambda x: x / 127.5 - 1.0)])
def test_input_scale_builds_the_expected_pixels_into_the_model(scale, convert, tmp_path):
    from mentor.models.scales import scaled

    inner = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    outer = scaled(inner, scale)
    x = images(2, 8, 1).astype("float32")
    np.testing.assert_allclose(as_numpy(outer(x)), as_numpy(inner(convert(x))), rtol=1e-5,
                               atol=1e-5)
    outer.save(tmp_path / "t.keras")  # a registered layer: loads in safe mode
    np.testing.assert_allclose(as_numpy(load_model(tmp_path / "t.keras")(x)), as_numpy(outer(x)),
                               rtol=1e-6)


@pytest.mark.parametrize("values,words", [
    ({"name": "keras.applications:ResNet9"}, "Keras has no application 'ResNet9'"),
    ({"name": "keras.applications:ResNet50", "options": {"depth": 3}}, "has no option 'depth'"),
    ({"name": "small_cnn", "weights": "imagenet"}, "is for keras.applications models"),
    ({"name": "small_cnn", "input_scale": "unit"}, "takes raw pixels already"),
    ({"name": "missing.keras"}, "no such model file"),
    ({"name": "small_cnn", "weights": "nowhere.h5"}, "no such file"),
])
def test_bad_model_specs_are_refused_at_load(values, words):
    with pytest.raises(MentorError, match=words):
        from_dict({"recipe": "supervised", "model": values})


def test_a_model_that_does_not_output_class_scores_or_fit_the_data_is_refused(tmp_path):
    features = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    features.save(tmp_path / "features.keras")
    with pytest.raises(MentorError, match="not one vector of class scores"):
        build(ModelConfig(name=str(tmp_path / "features.keras")), num_classes=3, image_size=8,
              channels=1)
    small = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    small.save(tmp_path / "small.keras")
    with pytest.raises(MentorError, match="takes images of shape"):
        build(ModelConfig(name=str(tmp_path / "small.keras")), num_classes=3, image_size=16,
              channels=1)


# ----------------------------------------------------------------------------- Python API


def digits():
    from mentor.data.sources import load_source

    data = load_source("embedded:digits")
    return data.x, data.y


def test_a_recipe_runs_from_python_on_a_keras_model_and_arrays(tmp_path):
    import mentor.api

    x, y = digits()
    keras.utils.set_random_seed(0)
    mine = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                             keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10)], name="mine")
    result = mentor.api.run("supervised", tmp_path / "run", model=mine,
                            train=(x[:1500], y[:1500]), test=(x[1500:], y[1500:]),
                            set=["train.epochs=5", "train.learning_rate=0.01",
                                 "augment.kind=\"none\""])
    assert result.metrics["test_images"] == len(x) - 1500 and result.metrics["test_acc"] > 0.5
    np.testing.assert_allclose(as_numpy(result.model(x[:5])), as_numpy(mine(x[:5])),
                               rtol=1e-5, atol=1e-6)  # trained in place, saved, reloaded
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_distill_from_python_takes_a_teacher_object(tmp_path):
    import mentor.api

    x, y = digits()
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                                keras.layers.Flatten(), keras.layers.Dense(10)])
    before = [w.copy() for w in teacher.get_weights()]
    result = mentor.api.run("distill", tmp_path / "kd", teacher=teacher, train=(x, y),
                            set=["train.epochs=1", "train.steps_per_epoch=3",
                                 "train.warmup_steps=1", "augment.flip=false",
                                 "model.options={width = 4}"])
    assert result.metrics["teacher_steps"] == 0 and "student_acc" in result.metrics
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)  # the teacher did not move


def test_objects_from_another_process_are_refused_plainly():
    with pytest.raises(MentorError, match="given to mentor.api in another process"):
        from_dict({"recipe": "supervised", "model": {"name": "object:999999"}})


# ----------------------------------------------------------------------------- fine-tuning


def _one_step(scale, optimizer="sgd", freeze_bn=False):
    from mentor.config import TrainConfig
    from mentor.core.optim import build_optimizer

    keras.utils.set_random_seed(0)
    model = build(ModelConfig(freeze_bn=freeze_bn), num_classes=3, image_size=8, channels=1)
    cfg = TrainConfig(optimizer=optimizer, learning_rate=0.1, momentum=0.0, weight_decay=0.0,
                      schedule="constant", backbone_lr_scale=scale)
    trainer = ClassifierTrainer(model)
    trainer.compile(optimizer=build_optimizer(cfg, 10, model))
    before = [w.copy() for w in model.get_weights()]
    trainer.train_on_batch(images(8, 8, 1), np.arange(8) % 3)
    deltas = {w.path: as_numpy(w) - b for w, b in zip(model.weights, before)}
    return deltas, {w.path for w in model.get_layer("logits").weights}


@pytest.mark.neutral
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_backbone_multiplier_scales_the_pretrained_parts_update_by_exactly_that(optimizer):
    full, head = _one_step(1.0, optimizer)
    tenth, _ = _one_step(0.1, optimizer)
    for path, delta in full.items():
        if "moving_" in path:
            continue  # batch statistics are not learned
        want = delta if path in head else 0.1 * delta
        # atol: w + Δ is rounded to float32, ~1e-8 for weights near 0.1
        np.testing.assert_allclose(tenth[path], want, rtol=1e-4, atol=1e-7, err_msg=path)
        assert np.abs(delta).max() > 0, path


@pytest.mark.neutral
def test_freeze_bn_keeps_the_batch_norm_statistics_and_parameters():
    deltas, _ = _one_step(1.0, freeze_bn=True)
    norms = {p: d for p, d in deltas.items() if "_bn/" in p}
    assert norms and all(np.abs(d).max() == 0 for d in norms.values())
    assert np.abs(deltas["logits/kernel"]).max() > 0


# ----------------------------------------------------------------------------- SavedModel


@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="the refusal is for the other backends")
def test_a_saved_model_teacher_off_tensorflow_says_which_backend_or_how_to_convert(tmp_path):
    import mentor.api

    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(MentorError, match="KERAS_BACKEND=tensorflow.*convert it"):
        mentor.api.run("distill", tmp_path / "kd", train="embedded:digits",
                       set=[f"teacher.path=\"{tmp_path / 'exported'}\""])


@pytest.mark.smoke
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a SavedModel runs on the TensorFlow backend only (TFSMLayer)")
def test_a_saved_model_teacher_distils_on_tensorflow(tmp_path):
    import mentor.api
    from mentor.config import DataConfig
    from mentor.core.lifecycle import accuracy
    from mentor.data.splits import load_splits

    keras.utils.set_random_seed(0)
    original = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                                 keras.layers.Flatten(), keras.layers.Dense(10)])
    x, y = digits()
    original.compile(optimizer=keras.optimizers.Adam(0.01),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    original.fit(x, y, epochs=3, verbose=0)
    original.export(str(tmp_path / "exported"))
    result = mentor.api.run("distill", tmp_path / "kd", train="embedded:digits",
                            set=[f"teacher.path=\"{tmp_path / 'exported'}\"",
                                 "train.epochs=1", "train.steps_per_epoch=3",
                                 "train.warmup_steps=1", "augment.flip=false",
                                 "model.options={width = 4}"])
    _, _, test = load_splits(DataConfig(train="embedded:digits"), 0)
    assert result.metrics["teacher_acc"] == pytest.approx(accuracy(original, test), abs=1e-9)
