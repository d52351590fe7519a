"""Losses against numbers computed by hand."""

import math

import keras
import numpy as np
import pytest

from mentor.losses import consistency_loss, cross_entropy, kl_divergence

pytestmark = pytest.mark.neutral


def np_(x):
    return keras.ops.convert_to_numpy(x)


def test_cross_entropy_by_hand():
    # logits (0, ln 3): softmax = (1/4, 3/4); −log(3/4) for label 1, −log(1/4) for label 0
    logits = np.array([[0.0, math.log(3)], [0.0, math.log(3)]], "float32")
    np.testing.assert_allclose(np_(cross_entropy(np.array([1, 0]), logits)),
                               [-math.log(0.75), -math.log(0.25)], rtol=1e-6)


def test_kl_by_hand_and_temperature():
    # teacher p = (1/4, 3/4), student q = (1/2, 1/2): KL = ¼ln(½) + ¾ln(3/2)
    t = np.array([[0.0, math.log(3)]], "float32")
    s = np.zeros((1, 2), "float32")
    want = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    np.testing.assert_allclose(np_(kl_divergence(t, s)), [want], rtol=1e-6)
    # at T = 2 the teacher becomes (1, √3)/(1 + √3)
    p = np.array([1.0, math.sqrt(3)]) / (1 + math.sqrt(3))
    want_t2 = float(np.sum(p * np.log(p / 0.5)))
    np.testing.assert_allclose(np_(kl_divergence(t, s, temperature=2.0)), [want_t2], rtol=1e-6)


def test_kl_is_zero_for_equal_logits_and_finite_for_a_certain_teacher():
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    np.testing.assert_allclose(np_(kl_divergence(x, x)), [0.0], atol=1e-7)
    certain = np.array([[0.0, 200.0, 0.0]], "float32")  # p = (0, 1, 0) in float32
    value = np_(kl_divergence(certain, x))
    assert np.isfinite(value).all()
    np.testing.assert_allclose(value, [-np.log(np.exp(2) / np.exp([1, 2, 3]).sum())], rtol=1e-5)


def test_consistency_loss_by_hand():
    t = np.array([[0.0, math.log(3)]], "float32") * 10  # at T = 10 the teacher is (1/4, 3/4)
    s = np.zeros((1, 2), "float32")
    ce = math.log(2)  # student is uniform over 2 classes
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    got = np_(consistency_loss(np.array([1]), s, t, temperature=10.0))
    np.testing.assert_allclose(got, [0.5 * ce + 0.5 * kl * 100], rtol=1e-5)
    got = np_(consistency_loss(np.array([1]), s, t, temperature=10.0, t_squared=False,
                               ce_weight=0.3, kd_weight=0.7))
    np.testing.assert_allclose(got, [0.3 * ce + 0.7 * kl], rtol=1e-5)
