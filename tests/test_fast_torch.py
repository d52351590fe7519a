"""The fused torch Conv2D and BatchNormalization compute what Keras's own layers compute."""

import zipfile

import keras
import numpy as np
import pytest

from mentor.models import accelerate, build_model

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch",
                                reason="accelerate() changes layers on the torch backend only")


def twins(build):
    """Two copies of one model with the same weights: Keras's call and the fused one."""
    plain, fused = build(), build()
    fused.set_weights(plain.get_weights())
    assert accelerate(plain) > 0
    for layer in plain._flatten_layers(include_self=False):  # undo: plain keeps Keras's ops
        layer.__dict__.pop("call", None)
        layer.__dict__.pop("convolution_op", None)
    return plain, fused


def forward_backward(model, x, y, training):
    import torch

    model.zero_grad() if hasattr(model, "zero_grad") else None
    for w in model.trainable_weights:
        w.value.grad = None
    logits = model(x, training=training)
    loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits,
                                                                       from_logits=True))
    loss.backward()
    grads = [keras.ops.convert_to_numpy(w.value.grad) for w in model.trainable_weights]
    with torch.no_grad():
        return keras.ops.convert_to_numpy(logits), grads


@pytest.mark.parametrize("size", [32, 28, 9])  # even, even with odd stride-2 maps, odd
def test_wrn_forward_gradients_and_moving_statistics_match_keras(size):
    def build():
        keras.utils.set_random_seed(0)
        return build_model("wrn", num_classes=10, image_size=size, channels=3, depth=10,
                           width=1, bn_momentum=0.9)

    plain, fused = twins(build)
    x = np.random.default_rng(0).integers(0, 256, (8, size, size, 3)).astype("float32")
    y = np.arange(8) % 10
    for training in (True, False):
        (za, ga), (zb, gb) = (forward_backward(m, x, y, training) for m in (plain, fused))
        np.testing.assert_allclose(za, zb, rtol=1e-4, atol=1e-4)
        for a, b in zip(ga, gb):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert len(plain.non_trainable_weights) == 2 * 7  # WRN-10-1: 3 blocks × 2 + final
    for a, b in zip(plain.non_trainable_weights, fused.non_trainable_weights):
        assert np.abs(keras.ops.convert_to_numpy(a) - (1.0 if "variance" in a.path else 0.0)
                      ).max() > 1e-5, f"{a.path} did not move"
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_momentum_one_keeps_moving_statistics_bit_for_bit():
    """AdaMatch's second pass sets momentum to 1: the fused layer must then leave the moving
    averages exactly as they were (m·1 + x·0)."""
    layer = keras.layers.BatchNormalization(momentum=1.0)
    model = keras.Sequential([keras.Input((4, 4, 3)), layer])
    assert accelerate(model) == 1
    layer.moving_mean.assign(np.array([0.1, 0.2, 0.3], "float32"))
    before = [keras.ops.convert_to_numpy(w).copy() for w in layer.non_trainable_weights]
    model(np.random.default_rng(1).normal(size=(5, 4, 4, 3)).astype("float32"), training=True)
    for a, w in zip(before, layer.non_trainable_weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(w))


def test_batch_norm_by_hand():
    """Training mode normalizes with the batch's biased variance and moves the averages by
    (1 − momentum) towards the batch's mean and variance."""
    layer = keras.layers.BatchNormalization(momentum=0.75, epsilon=0.0, axis=-1)
    model = keras.Sequential([keras.Input((2,)), layer])
    accelerate(model)
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]], "float32")
    out = keras.ops.convert_to_numpy(model(x, training=True))
    mean, var = x.mean(0), x.var(0)  # [3, 12], [8/3, 8]
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean),
                               0.25 * mean, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance),
                               0.75 + 0.25 * var, rtol=1e-6)


def test_mixed_precision_keeps_the_output_dtype_and_float32_statistics():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("small_cnn", num_classes=10, image_size=8, channels=1, width=4)
        x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("float32")
        logits = model(x, training=True)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
        assert norms and all(keras.backend.standardize_dtype(l.moving_mean.dtype) == "float32"
                             for l in norms)
        assert np.isfinite(keras.ops.convert_to_numpy(logits)).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_saved_file_is_plain_keras_and_reloads_to_the_same_predictions(tmp_path):
    from mentor.models import load_model

    model = build_model("wrn", num_classes=3, image_size=12, channels=1, depth=10, width=1)
    x = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 1)).astype("float32")
    model(x, training=True)  # move the statistics off their initial values
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        config = z.read("config.json").decode()
    assert '"BatchNormalization"' in config and "mentor" not in config  # Keras's own layers
    plain = keras.saving.load_model(tmp_path / "m.keras")  # Keras alone, Keras's ops
    again = load_model(tmp_path / "m.keras")  # mentor's loader, fused ops
    want = keras.ops.convert_to_numpy(model(x))
    for other in (plain, again):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(other(x)), want,
                                   rtol=1e-4, atol=1e-4)


def test_layers_it_cannot_fuse_keep_keras_call():
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(4, 3, dilation_rate=2),
        keras.layers.Conv2D(4, 3, groups=2),
        keras.layers.BatchNormalization(renorm=True),
        keras.layers.Conv2D(4, 3, padding="same"),
    ])
    assert accelerate(model) == 1
    assert "convolution_op" in model.layers[-1].__dict__


def test_the_fast_path_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("MENTOR_FAST_TORCH", "0")
    model = build_model("small_cnn", num_classes=3, image_size=8, channels=1, width=4)
    convs = [l for l in model.layers if type(l) is keras.layers.Conv2D]
    assert convs and all("convolution_op" not in vars(l) for l in convs)  # Keras's own op
    assert accelerate(model) == 0
