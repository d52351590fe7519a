import numpy as np
import pytest

from mentor.data import ImageSet
from mentor.data.pipeline import Batches, PairedBatches
from mentor.data.prepare import prepare
from mentor.data.splits import labeled_split, split_fraction
from mentor.errors import MentorError


def make_set(n=100, size=8, channels=1, classes=10, name="toy"):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return ImageSet(x, np.arange(n) % classes, name=name)


def test_prepare_resizes_pads_and_converts_channels():
    data = ImageSet(np.full((4, 10, 20, 1), 200, np.uint8), np.arange(4) % 2)
    out = prepare(data, 16, 3)
    assert out.x.shape == (4, 16, 16, 3) and out.x.dtype == np.uint8
    assert (out.x[:, 0] == 0).all() and (out.x[:, 8] == 200).all()  # padded top, kept centre
    assert (out.x[..., 0] == out.x[..., 2]).all()  # gray repeated


def test_split_fraction_is_stratified_disjoint_and_seeded():
    data = make_set(200)
    a, b = split_fraction(data, 0.1, seed=3)
    assert len(a) == 180 and len(b) == 20
    assert np.bincount(b.y).tolist() == [2] * 10
    again = split_fraction(data, 0.1, seed=3)[1]
    other = split_fraction(data, 0.1, seed=4)[1]
    assert (again.x == b.x).all() and not (other.x == b.x).all()
    rows = {r.tobytes() for r in a.x} & {r.tobytes() for r in b.x}
    assert not rows


def test_labeled_split_takes_exactly_k_per_class():
    labeled, unlabeled = labeled_split(make_set(200), 4, seed=0)
    assert np.bincount(labeled.y).tolist() == [4] * 10
    assert len(unlabeled) == 160


def test_labeled_split_asks_for_too_many():
    with pytest.raises(MentorError, match="fewer than labels_per_class"):
        labeled_split(make_set(50), 6, seed=0)


def test_batches_shapes_dtype_and_one_pass_covers_every_image():
    data = make_set(100)
    batches = Batches(data, 32, steps=8, seed=1)
    assert len(batches) == 8
    xs, ys = zip(*(batches[i] for i in range(4)))
    assert xs[0].shape == (32, 8, 8, 1) and xs[0].dtype == np.uint8 and ys[0].dtype == np.int64
    seen = np.concatenate(ys)[:100]  # the first 100 positions are one permutation
    assert sorted(seen.tolist()) == sorted(data.y.tolist())


def test_batches_are_deterministic_for_a_seed_and_resume_at_a_step():
    data = make_set(100)
    a, b, c = (Batches(data, 16, steps=50, seed=s) for s in (1, 1, 2))
    assert (a[2][0] == b[2][0]).all() and not (a[2][0] == c[2][0]).all()
    assert not (a[0][0] == a[7][0]).all()  # the next pass is another permutation
    resumed = Batches(data, 16, steps=50, seed=1, start_step=7)
    assert len(resumed) == 43 and (resumed[0][0] == a[7][0]).all()
    with pytest.raises(MentorError, match="start_step"):
        Batches(data, 16, steps=50, start_step=50)


def test_paired_batches_ratio_and_independent_streams():
    source, target = make_set(60), make_set(300)
    paired = PairedBatches(source, target, 8, ratio=3, steps=20, seed=0, target_labels=True)
    x, y = paired[0]
    assert x["source"].shape == (8, 8, 8, 1) and x["target"].shape == (24, 8, 8, 1)
    assert y.shape == (8,) and x["target_labels"].shape == (24,)
    assert len(paired) == 20
    # the target order is its own permutation chain: 300 target rows in 13 steps of 24
    rows = np.concatenate([paired.target_order.rows(g) for g in range(12)])
    assert len(np.unique(rows)) == 288


def test_paired_batches_reject_mismatched_sets():
    with pytest.raises(MentorError, match="label space"):
        PairedBatches(make_set(60, classes=10), make_set(60, classes=5), 8, steps=5)
    with pytest.raises(MentorError, match="same image_size"):
        PairedBatches(make_set(60), make_set(60, size=16), 8, steps=5)


@pytest.mark.parametrize("x, y, words", [
    (np.zeros((4, 8, 8, 1), np.float32) * np.nan, np.zeros(4), "NaN"),
    (np.zeros((4, 8), np.uint8), np.zeros(4), "N×H×W"),
    (np.zeros((4, 8, 8, 5), np.uint8), np.zeros(4), "channels"),
    (np.zeros((4, 8, 8), np.uint8), np.zeros(3), "must match"),
    (np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 2, -1]), "≥ 0"),
    (np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0.5, 1]), "whole class ids"),
    (np.zeros((0, 8, 8), np.uint8), np.zeros(0), "empty"),
    (np.full((4, 8, 8), 300.0), np.zeros(4), "[0, 1] or [0, 255]"),
])
def test_bad_arrays_get_clear_errors(x, y, words):
    with pytest.raises(MentorError) as e:
        ImageSet(x, y)
    assert words in str(e.value)


def test_labels_out_of_range_for_class_names():
    with pytest.raises(MentorError, match="out of range"):
        ImageSet(np.zeros((3, 4, 4), np.uint8), [0, 1, 5], class_names=["a", "b"])


def test_float_images_in_unit_range_are_scaled():
    data = ImageSet(np.full((2, 4, 4, 1), 0.5, np.float32), [0, 1])
    assert data.x.dtype == np.uint8 and int(data.x[0, 0, 0, 0]) == 128
