"""The AugMix recipe: its views (chains of the paper's operations, Dirichlet and Beta
mixing), the Jensen–Shannon loss against numbers worked by hand, the one batch of three
views, and the config's ranges."""

import math

import keras
import numpy as np
import pytest
from conftest import as_numpy, bn_classifier

from mentor import augment
from mentor.errors import UsageError
from mentor.losses import augmix_loss, cross_entropy, jensen_shannon
from mentor.recipes import augmix, from_dict
from mentor.recipes.augmix import OPS, AugMix, AugMixTrainer

pytestmark = pytest.mark.neutral


def test_jensen_shannon_by_hand():
    # p = (½, ½), (¾, ¼), (¼, ¾): M = (½, ½), so JS = ⅓·[0 + 2·KL((¾, ¼) ‖ (½, ½))]
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    logits = [np.array([[0.0, 0.0]]), np.array([[math.log(3), 0.0]]),
              np.array([[0.0, math.log(3)]])]
    assert float(as_numpy(jensen_shannon(*logits))[0]) == pytest.approx(2 * kl / 3, rel=1e-5)
    same = np.array([[2.0, -1.0, 0.5]])
    assert float(as_numpy(jensen_shannon(same, same, same))[0]) == pytest.approx(0, abs=1e-6)
    # a confident prediction (p → 0 for a class) stays finite: no log 0
    sure = np.array([[80.0, -80.0]])
    assert np.isfinite(as_numpy(jensen_shannon(sure, -sure, same[:, :2])))


def test_the_augmix_loss_is_cross_entropy_plus_twelve_times_the_divergence():
    rng = np.random.default_rng(0)
    clean, v1, v2 = (rng.normal(size=(4, 5)).astype("float32") for _ in range(3))
    y = np.array([0, 1, 2, 3])
    want = as_numpy(cross_entropy(y, clean)) + 12.0 * as_numpy(jensen_shannon(clean, v1, v2))
    np.testing.assert_allclose(as_numpy(augmix_loss(y, clean, v1, v2)), want, rtol=1e-5)
    np.testing.assert_allclose(as_numpy(augmix_loss(y, clean, v1, v2, jsd_weight=0.0)),
                               as_numpy(cross_entropy(y, clean)), rtol=1e-6)


def test_the_operations_leave_out_those_that_overlap_the_test_corruptions():
    assert set(OPS) <= set(augment.OP_NAMES)
    assert not {"Contrast", "Color", "Brightness", "Sharpness"} & set(OPS)
    assert len(OPS) == 9 and "Identity" not in OPS


def test_chain_weights_are_dirichlet_and_the_mix_with_the_image_is_beta():
    layer = AugMix(alpha=1.0, seed=0)
    w = as_numpy(layer._dirichlet((2, 3, 4000)))
    assert (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(w.mean(axis=(0, 2)), [1 / 3] * 3, atol=0.01)
    m = as_numpy(layer._beta((8000,)))
    assert 0 < m.min() and m.max() < 1
    assert m.mean() == pytest.approx(0.5, abs=0.01)  # Beta(1, 1) = uniform: mean ½ …
    assert m.var() == pytest.approx(1 / 12, abs=0.005)  # … variance 1/12


def test_each_view_mixes_the_image_with_its_chains(monkeypatch):
    """Every chain made a constant 200 image: a view is then m·x + (1 − m)·200 exactly, one
    m in (0, 1) per image and view, whatever the chain weights."""
    calls = []

    def flat(images, seed, **kwargs):
        calls.append(kwargs)
        return keras.ops.full(keras.ops.shape(images), 200.0)

    monkeypatch.setattr(augmix.augment, "strong", flat)
    x = np.random.default_rng(0).integers(0, 100, (6, 8, 8, 1)).astype("float32")
    views = [as_numpy(v) for v in AugMix(seed=1)(x, training=True)]
    assert len(calls) == 3  # depth 1..3 at random: three layers, each applied where deep enough
    assert all(c["op_names"] == OPS and c["num_ops"] == 1 and c["random_magnitude"] and
               c["magnitude"] == 3 for c in calls)
    ms = []
    for view in views:
        m = (view - 200.0) / (x - 200.0)
        np.testing.assert_allclose(m, m[:, :1, :1, :1] * np.ones_like(m), rtol=1e-4)
        ms.append(m[:, 0, 0, 0])
        assert ((0 < ms[-1]) & (ms[-1] < 1)).all()
    assert not np.allclose(ms[0], ms[1])  # the two views draw their own m
    assert len(AugMix(depth=2, seed=1)(x, training=True)) == 2 and len(calls) == 5


def test_views_are_random_only_in_training_and_seeded():
    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("uint8")
    same = AugMix(seed=0)(x, training=False)
    for view in same:
        np.testing.assert_array_equal(as_numpy(view), x.astype("float32"))
    a1, a2 = (as_numpy(v) for v in AugMix(seed=5)(x, training=True))
    b1, _ = (as_numpy(v) for v in AugMix(seed=5)(x, training=True))
    np.testing.assert_array_equal(a1, b1)
    assert a1.shape == x.shape and a1.dtype == np.float32
    assert 0 <= a1.min() and a1.max() <= 255 + 1e-3
    assert not np.allclose(a1, a2) and not np.allclose(a1, x)


def make_trainer(seen=None):
    keras.utils.set_random_seed(0)
    model = bn_classifier(classes=3, record=seen)
    return AugMixTrainer(model, base=augment.WeakAugment(flip=False, translate=0.0, seed=1),
                         augmix=AugMix(seed=2), jsd_weight=12.0)


X = np.random.default_rng(1).integers(0, 256, (8, 8, 8, 1)).astype("uint8")
Y = np.arange(8) % 3


def test_the_model_sees_clean_and_both_views_in_one_batch():
    if keras.backend.backend() != "torch":
        pytest.skip("records tensors eagerly; the torch backend runs train steps eagerly")
    seen = []
    trainer = make_trainer(seen)
    trainer(X, training=True)
    assert seen[-1].shape == (24, 8, 8, 1)  # batch norm's statistics over all three
    np.testing.assert_allclose(seen[-1][:8], X.astype("float32"))  # the clean images first
    assert not np.allclose(seen[-1][8:16], seen[-1][16:])  # two views, each its own draw
    trainer(X, training=False)
    assert seen[-1].shape == (8, 8, 8, 1)  # evaluation: the clean images alone


def test_the_training_loss_is_cross_entropy_plus_the_divergence_of_the_three():
    trainer = make_trainer()
    clean_logits = trainer(X, training=True)
    loss = trainer.compute_loss(X, Y, clean_logits, training=True)
    want = np.mean(as_numpy(augmix_loss(Y, clean_logits, trainer.kept["view1"],
                                        trainer.kept["view2"])))
    assert float(as_numpy(loss)) == pytest.approx(want, rel=1e-5)
    assert want > np.mean(as_numpy(cross_entropy(Y, clean_logits)))  # the views disagree a bit
    assert as_numpy(trainer(X, training=False)).shape == (8, 3)


def test_the_config_checks_its_ranges():
    config = from_dict({"recipe": "augmix"})
    assert (config.augment.width, config.augment.depth, config.augment.severity,
            config.augment.alpha, config.loss.jsd_weight) == (3, 0, 3, 1.0, 12.0)
    with pytest.raises(UsageError, match="augment.depth.*0..3"):
        from_dict({"recipe": "augmix", "augment": {"depth": 4}})
    with pytest.raises(UsageError, match="augment.severity"):
        from_dict({"recipe": "augmix", "augment": {"severity": 0}})
