"""Losses against numbers computed by hand."""

import math

import numpy as np
import pytest
from conftest import as_numpy as np_

from mentor.losses import consistency_loss, cross_entropy, kl_divergence

pytestmark = pytest.mark.neutral


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


def test_mixed_cross_entropy_by_hand():
    from mentor.losses import mixed_cross_entropy

    # Student probabilities (1/4, 3/4) for both images; image 0 is 0.7 of itself (label 0)
    # and 0.3 of image 1 (label 1); image 1 is unmixed (λ = 1, its own partner).
    logits = np.array([[0.0, math.log(3)]] * 2, "float32")
    got = np_(mixed_cross_entropy(np.array([0, 1]), logits, np.array([0.7, 1.0], "float32"),
                                  np.array([1, 1])))
    np.testing.assert_allclose(got, [0.7 * math.log(4) + 0.3 * math.log(4 / 3),
                                     math.log(4 / 3)], rtol=1e-5)


# ----------------------------------------------------------------------------- AdaMatch


def test_logit_interpolation_by_hand():
    from mentor.losses import interpolate_logits

    got = np_(interpolate_logits(np.array([[2.0, 0.0]]), np.array([[0.0, 4.0]]),
                                 np.array([[0.25, 0.5]])))
    np.testing.assert_allclose(got, [[0.25 * 2.0, 0.5 * 4.0]])  # λ·z₁ + (1 − λ)·z₂


def test_distribution_alignment_by_hand():
    from mentor.losses import align_distribution

    got = np_(align_distribution(np.array([[0.6, 0.4]]), np.array([0.5, 0.5]),
                                 np.array([0.75, 0.25])))
    # (0.6 · 0.5/0.75, 0.4 · 0.5/0.25) = (0.4, 0.8) → normalized (1/3, 2/3)
    np.testing.assert_allclose(got, [[1 / 3, 2 / 3]], rtol=1e-5)


def test_relative_threshold_and_masked_loss_by_hand():
    from mentor.losses import masked_pseudo_label_loss, relative_threshold

    c = float(np_(relative_threshold(np.array([[0.9, 0.1], [0.6, 0.4]]), tau=0.9)))
    assert c == pytest.approx(0.9 * 0.75)  # τ · mean(0.9, 0.6)
    loss, mask = masked_pseudo_label_loss(np.array([[0.7, 0.3], [0.55, 0.45]]),
                                          np.array([[0.0, 0.0], [math.log(3.0), 0.0]]), c)
    np.testing.assert_allclose(np_(mask), [1.0, 0.0])  # 0.7 ≥ 0.675 > 0.55
    np.testing.assert_allclose(np_(loss), [math.log(2.0), 0.0], rtol=1e-6)


def test_unlabeled_weight_reaches_one_at_half_of_training():
    from mentor.losses import unlabeled_weight

    at = lambda t: float(np_(unlabeled_weight(t, 1000)))  # noqa: E731
    assert at(0) == pytest.approx(0.0, abs=1e-7)
    assert at(125) == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 4), rel=1e-5)
    assert at(250) == pytest.approx(0.5, rel=1e-5)  # ¼ of training: cos(π/2) = 0
    assert at(500) == pytest.approx(1.0, rel=1e-6)  # ½
    assert at(1000) == pytest.approx(1.0, rel=1e-6)  # the end: it stays at 1
