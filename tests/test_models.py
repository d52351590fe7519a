"""The model zoo: exact parameter counts, raw-pixel input, float32 logits, `.keras` round trips."""

import re

import keras
import numpy as np
import pytest
from keras import ops

from mentor.errors import MentorError
from mentor.models import MODELS, build_model, count_params, load_model
from mentor.models.bit import StdConv2D, build_bit, standardize_kernel
from mentor.models.wrn import build_wrn

pytestmark = pytest.mark.neutral

BATCH = 2
SIZE = 32  # the smallest size ResNet50V2 accepts, and CIFAR's


def images(channels, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (BATCH, size, size, channels), dtype=np.uint8)


def predict(model, x):
    return ops.convert_to_numpy(model(x, training=False))


# the count is the architecture's, whatever computes it
@pytest.mark.torch_once
def test_wrn28_2_parameter_count():
    model = build_model("wrn28_2", num_classes=10, image_size=SIZE, channels=3)
    # Widths 16 (stem), 32, 64, 128; 4 blocks per group; 3x3 convs and 1x1 projections, no bias.
    # stem:    3*3*3*16                                                        =       432
    # group 1: block 1: 3*3*16*32 + 3*3*32*32 + 16*32 (proj)                  =    14,336
    #          blocks 2-4: 3 * 2 * 3*3*32*32                                   =    55,296
    # group 2: block 1: 3*3*32*64 + 3*3*64*64 + 32*64                          =    57,344
    #          blocks 2-4: 3 * 2 * 3*3*64*64                                   =   221,184
    # group 3: block 1: 3*3*64*128 + 3*3*128*128 + 64*128                      =   229,376
    #          blocks 2-4: 3 * 2 * 3*3*128*128                                 =   884,736
    # BatchNorm channels: group 1: 16 + 32 + 3*(32+32) = 240; group 2: 480; group 3: 960;
    #          final: 128; 1,808 channels * 2 (gamma, beta)                    =     3,616
    # dense:   128*10 + 10                                                     =     1,290
    # trainable total                                                          = 1,467,610
    # plus BatchNorm's moving mean and variance, 1,808 * 2                     = 1,471,226
    assert count_params(model, trainable_only=True) == 1_467_610
    assert count_params(model) == 1_471_226


def test_small_cnn_parameter_count():
    # convs (no bias, BatchNorm follows): 3*3*(c*32 + 32*32 + 32*64 + 64*64 + 64*128 + 128*128)
    #   = 288*c + 285,696; BatchNorm: 4 * 2*(32 + 64 + 128) = 1,792 (half of it moving stats);
    #   dense: 128*10 + 10 = 1,290. Total 288*c + 288,778.
    mnist = build_model("small_cnn", num_classes=10, image_size=28, channels=1)
    cifar = build_model("small_cnn", num_classes=10, image_size=32, channels=3)
    assert count_params(mnist) == 289_066
    assert count_params(cifar) == 289_642
    assert count_params(cifar) < 500_000


# The 20-25 M-parameter ResNets cost 17-20 s each to compile on JAX for layers Keras keeps
# backend-neutral: they run on torch alone.
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.torch_once) if n in ("resnet50v2", "bit_r50x1") else n
    for n in MODELS if n != "bit_r101x3"])  # 382 M: see below
@pytest.mark.parametrize("channels", [3, 1])
def test_float32_logits_from_uint8_images(name, channels):
    model = build_model(name, num_classes=7, image_size=SIZE, channels=channels)
    logits = model(images(channels))
    assert tuple(logits.shape) == (BATCH, 7)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


@pytest.mark.torch_once
def test_bit_r101x3_is_r101_at_width_3():
    assert MODELS["bit_r101x3"].fixed == {"depth": 101, "width": 3}
    # Its 382 M parameters take too long to build in a test; the same depth at width 0.5 runs.
    model = build_bit(5, SIZE, 3, depth=101, width=0.5)
    assert model.name == "bit_r101x0.5"
    assert tuple(model(images(3)).shape) == (BATCH, 5)


@pytest.mark.parametrize("name", ["small_cnn", "wrn28_2", "bit_r50x1", "resnet50v2"])
def test_keras_round_trip_predicts_the_same(name, tmp_path):
    model = build_model(name, num_classes=10, image_size=SIZE, channels=3)
    _randomize_head(model)  # BiT's head starts at zero, which would hide a wrong reload
    x = images(3)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = load_model(path)
    assert reloaded.name == model.name
    np.testing.assert_allclose(predict(reloaded, x), predict(model, x), atol=1e-5)


def _randomize_head(model):
    head = model.get_layer("logits")
    rng = np.random.default_rng(1)
    head.set_weights([rng.normal(size=w.shape).astype("float32") for w in head.get_weights()])


# a zero-initialised head is the builder's, not the backend's
@pytest.mark.torch_once
def test_bit_head_starts_at_zero():
    model = build_bit(10, SIZE, 3, width=0.5)
    np.testing.assert_array_equal(predict(model, images(3)), np.zeros((BATCH, 10)))


def test_standardize_kernel_per_output_channel():
    kernel = np.random.default_rng(0).normal(3.0, 5.0, (3, 3, 4, 6)).astype("float32")
    standardized = ops.convert_to_numpy(standardize_kernel(kernel))
    np.testing.assert_allclose(standardized.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(standardized.var(axis=(0, 1, 2)), 1, atol=1e-4)


def test_std_conv_convolves_with_the_standardized_kernel():
    layer = StdConv2D(6, 3, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(2.0, 3.0))
    # One image per kernel tap, one-hot at that tap: a 3x3 "valid" conv then returns that
    # tap's weights, so the outputs spell out the kernel actually used.
    taps = np.eye(3 * 3 * 4, dtype="float32").reshape(-1, 3, 3, 4)
    used = ops.convert_to_numpy(layer(taps)).reshape(3 * 3 * 4, 6)
    np.testing.assert_allclose(used.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(used.var(axis=0), 1, atol=1e-4)
    raw = ops.convert_to_numpy(layer.kernel).reshape(-1, 6)
    assert np.abs(raw.mean(axis=0)).max() > 0.5  # the stored variable stays raw


def test_std_conv_reloads_with_its_epsilon(tmp_path):
    inputs = keras.Input((8, 8, 2))
    # flattened: mentor loads classifiers, one (batch, scores) output
    model = keras.Model(inputs, keras.layers.Flatten()(
        StdConv2D(4, 3, epsilon=1e-4, name="ws")(inputs)))
    x = np.random.default_rng(0).normal(size=(BATCH, 8, 8, 2)).astype("float32")
    model.save(tmp_path / "ws.keras")
    reloaded = load_model(tmp_path / "ws.keras")
    assert reloaded.get_layer("ws").epsilon == 1e-4
    np.testing.assert_allclose(predict(reloaded, x), predict(model, x), atol=1e-5)


def test_logits_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_bit(3, SIZE, 1, width=0.5)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(model(images(1)).dtype) == "float32"


def test_wrn_layers_get_their_own_he_normal_fan_out_kernels():
    model = build_wrn(10, SIZE, 3)
    first, second = (model.get_layer(f"group3_block{b}_conv2").kernel for b in (2, 3))
    first, second = ops.convert_to_numpy(first), ops.convert_to_numpy(second)
    assert not np.allclose(first, second)
    # FixMatch: stddev = sqrt(2 / (3*3*128)) = 0.0417 for these 128-filter 3x3 convs
    assert first.std() == pytest.approx(np.sqrt(2 / (3 * 3 * 128)), rel=0.05)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(MentorError, match="unknown model 'wrn28_10'.*wrn28_2.*bit_r50x1"):
        build_model("wrn28_10", num_classes=10, image_size=SIZE, channels=3)


def test_unknown_option_names_it_and_the_accepted_ones():
    with pytest.raises(MentorError, match="no option 'dropuot'.*build_wrn accepts: dropout, bn_momentum"):
        build_model("wrn28_2", num_classes=10, image_size=SIZE, channels=3, dropuot=0.1)


def test_fixed_option_points_to_the_general_model():
    with pytest.raises(MentorError, match="fixes depth=28.*use model 'wrn'"):
        build_model("wrn28_2", num_classes=10, image_size=SIZE, channels=3, depth=16)


def test_bad_architecture_arguments():
    with pytest.raises(MentorError, match="6n\\+4"):
        build_model("wrn", num_classes=10, image_size=SIZE, channels=3, depth=27)
    with pytest.raises(MentorError, match="one of \\[50, 101, 152\\]"):
        build_model("bit", num_classes=10, image_size=SIZE, channels=3, depth=34)
    with pytest.raises(MentorError, match="multiple of 32"):
        build_model("bit", num_classes=10, image_size=SIZE, channels=3, width=0.25)


def test_load_model_missing_file(tmp_path):
    with pytest.raises(MentorError, match="no such model file"):
        load_model(tmp_path / "absent.keras")


def test_load_model_unreadable_file_gives_keras_reason(tmp_path):
    """A zip archive that holds no Keras model: Keras's own reason is passed on. (A file that
    is no zip at all is refused before Keras: tests/test_bad_input.py.)"""
    import zipfile

    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(MentorError, match=f"cannot load model {re.escape(str(path))}: .+"):
        load_model(path)
