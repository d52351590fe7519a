"""Streamed image folders and CSV lists: the same batches as in memory, from worker processes,
never the whole set decoded; bad files met late; the automatic choice."""

import json

import keras
import numpy as np
import pytest
from conftest import write_digit_folder
from PIL import Image

from mentor.data import folders
from mentor.data.files import BadImages, ImageFiles
from mentor.data.pipeline import Batches, PairedBatches, feed
from mentor.data.prepare import prepare
from mentor.data.sources import load_source
from mentor.errors import MentorError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_digit_folder(tmp_path_factory.mktemp("digits"), per_class=12, size=12)


def both(spec, **kwargs):
    """The same source streamed and in memory."""
    return (load_source(spec, stream="always", **kwargs),
            load_source(spec, stream="never", **kwargs))


def test_a_streamed_folder_holds_file_names_and_decodes_to_the_in_memory_images(folder):
    lazy, eager = both(folder)
    assert isinstance(lazy.x, ImageFiles) and isinstance(eager.x, np.ndarray)
    assert lazy.x.shape == eager.x.shape == (120, 12, 12, 1)
    assert lazy.y.tolist() == eager.y.tolist() and lazy.class_names == eager.class_names
    rows = [5, 0, 119]
    np.testing.assert_array_equal(lazy.x[rows], eager.x[rows])
    fitted = prepare(lazy, 20, 3)  # resizing and channels stay lazy, and agree with memory's
    assert isinstance(fitted.x, ImageFiles) and fitted.x.shape == (120, 20, 20, 3)
    np.testing.assert_array_equal(fitted.x[rows], prepare(eager, 20, 3).x[rows])


@pytest.mark.neutral
def test_grain_workers_serve_exactly_the_in_memory_batches_from_any_start_step(folder):
    lazy, eager = both(folder)
    for start in (0, 3):  # a resumed run starts at a later global step
        served = list(feed(Batches(lazy, 16, steps=9, seed=4, start_step=start, workers=2)))
        expected = Batches(eager, 16, steps=9, seed=4, start_step=start)
        assert len(served) == len(expected) == 9 - start
        for (x, y), (ex, ey) in zip(served, (expected[i] for i in range(len(expected)))):
            assert x.dtype == np.uint8 and x.shape == (16, 12, 12, 1)
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)


def test_two_streamed_sets_of_different_sizes_keep_their_own_orders(folder, tmp_path):
    target = write_digit_folder(tmp_path / "target", per_class=7, size=12)
    (source, source_mem), (target, target_mem) = both(folder), both(target)
    served = list(feed(PairedBatches(source, target, 8, ratio=3, steps=6, seed=1, workers=2,
                                     target_labels=True)))
    expected = PairedBatches(source_mem, target_mem, 8, ratio=3, steps=6, seed=1,
                             target_labels=True)
    for g, (x, y) in enumerate(served):
        ex, ey = expected[g]
        assert x["target"].shape == (24, 12, 12, 1)  # 3× the source batch
        for key in ("source", "target", "target_labels"):
            np.testing.assert_array_equal(x[key], ex[key])
        np.testing.assert_array_equal(y, ey)


def test_a_batch_decodes_only_its_own_rows(folder):
    lazy, _ = both(folder)
    batches = Batches(lazy, 16, steps=4, seed=0)
    batches.draw(2)
    assert batches.draw.x.decoded_most == 16


@pytest.mark.neutral
def test_fit_on_a_streamed_folder_matches_fit_in_memory_on_every_backend(folder):
    """Keras hands a Grain dataset to each backend its own way (numpy, JAX, tf.data and torch
    iterators): the streamed fit must take exactly the in-memory fit's steps."""
    from conftest import bn_classifier

    lazy, eager = both(folder)
    weights = []
    for data in (lazy, eager):
        keras.utils.set_random_seed(0)
        model = bn_classifier(classes=10, size=12)
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        fed = feed(Batches(data, 16, steps=6, seed=2, workers=2))
        try:
            model.fit(fed, epochs=2, steps_per_epoch=3, shuffle=False, verbose=0)
        finally:
            if hasattr(fed, "close"):
                fed.close()
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.neutral
@pytest.mark.torch_once
def test_a_streamed_run_never_decodes_its_training_set_whole_and_ends_as_in_memory(
        folder, tmp_path, monkeypatch):
    """Same seed, same batches: the streamed run's weights are the in-memory run's. In the
    main process no decode is larger than an evaluation batch, and nothing asks for the whole
    set as an array (the workers decode one batch per step by construction: the test above)."""
    from mentor.recipes import load_config, supervised

    largest = []
    decode_rows = ImageFiles.decode_rows

    def counted(self, rows, threads=1):
        largest.append(len(np.asarray(rows).reshape(-1)))
        return decode_rows(self, rows, threads)

    def refused(self, dtype=None, copy=None):
        raise AssertionError(f"{self!r} was decoded whole")

    weights = {}
    for stream in ("always", "never"):
        with monkeypatch.context() as patch:
            patch.setattr(ImageFiles, "decode_rows", counted)
            patch.setattr(ImageFiles, "__array__", refused)
            config, _ = load_config("demo", [
                f"data.train={folder}", f"data.stream={stream}", "data.workers=2",
                "train.epochs=2", "train.steps_per_epoch=5", "train.batch_size=16",
                "train.warmup_steps=1"])
            metrics = supervised.RECIPE.run(config, tmp_path / stream)
        weights[stream] = keras.saving.load_model(tmp_path / stream / "model.keras").get_weights()
        assert metrics["steps"] == 10
    assert largest and max(largest) <= 256  # validation and test batches, in order
    for a, b in zip(weights["always"], weights["never"]):
        np.testing.assert_array_equal(a, b)


def test_predictions_on_a_streamed_set_come_in_the_order_of_its_files(folder):
    """Four batches, decoded by threads: each prediction belongs to its own image."""
    from conftest import bn_classifier

    from mentor.inference import predict

    lazy, eager = both(folder)
    model = bn_classifier(classes=10, size=12)
    np.testing.assert_allclose(predict(model, lazy.x, batch_size=32),
                               predict(model, eager.x, batch_size=32), rtol=1e-5, atol=1e-6)


def truncate(path):
    """Keep the header and cut the pixel data: the header reads, the image does not."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_a_file_that_fails_only_when_its_batch_decodes_is_replaced_and_recorded(tmp_path):
    folder = write_digit_folder(tmp_path / "digits", per_class=4, classes=3, size=12)
    broken = tmp_path / "digits" / "1" / "0002.png"
    truncate(broken)
    with BadImages.scope(strict=False):
        data = load_source(folder, stream="always")
        assert len(data) == 12  # its header read: listed like any other
        row = data.x.paths.tolist().index(str(broken))
        batch = data.x[[row - 1, row, row + 1]]
        np.testing.assert_array_equal(batch[1], batch[0])  # the previous good image
        assert [f for f, _ in BadImages.all_skipped()] == [str(broken)]
    with BadImages.scope(strict=True):
        data = load_source(folder, stream="always")
        with pytest.raises(MentorError, match="0002.png.*Without --strict"):
            data.x[[row]]


def test_a_streamed_run_counts_a_late_bad_file_and_strict_stops_it_cleanly(tmp_path, capsys):
    from mentor.cli import main

    folder = write_digit_folder(tmp_path / "digits", per_class=10, classes=3, size=12)
    broken = tmp_path / "digits" / "2" / "0003.png"
    truncate(broken)
    args = ["train", "demo", "--set", f"data.train={folder}", "--set", "data.stream=always",
            "--set", "data.workers=1", "--set", "train.epochs=1", "--set",
            "train.steps_per_epoch=8", "--set", "train.batch_size=8", "--set",
            "train.warmup_steps=1", "--set", "data.val_fraction=0"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 1 and metrics["skipped_files"] == [str(broken)]
    capsys.readouterr()
    # Under --strict the worker's error reaches the run, which fails (exit 1), naming the
    # file, instead of waiting on a dead worker.
    assert main([*args, "--strict", "--out", str(tmp_path / "strict")]) == 1
    assert "0003.png" in capsys.readouterr().err
    assert not (tmp_path / "strict" / "metrics.json").exists()


def test_a_csv_list_reads_paths_relative_to_itself_with_classes_sorted_as_numbers(tmp_path):
    folder = write_digit_folder(tmp_path / "images", per_class=3, classes=3, size=8)
    rows = ["path,label"] + [f"images/{c}/{i:04d}.png,{label}" for c, label in
                             ((0, "10"), (1, "2"), (2, "9")) for i in range(3)]
    rows.append("images/missing.png,2")  # listed, absent: skipped like an unreadable file
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    with BadImages.scope(strict=False):
        data = load_source(str(tmp_path / "list.csv"))
        assert data.class_names == ["2", "9", "10"]  # 2 < 9 < 10, not "10" < "2"
        assert data.y.tolist() == [2, 2, 2, 0, 0, 0, 1, 1, 1]
        np.testing.assert_array_equal(data.x, load_source(folder).x)
        assert BadImages.all_skipped()[0][0].endswith("missing.png")
    (tmp_path / "bad.csv").write_text("path,label\nimages/0/0000.png\n")
    with pytest.raises(MentorError, match="bad.csv, line 2: expected `path,label`"):
        load_source(f"list:{tmp_path / 'bad.csv'}")


def test_auto_streams_only_above_the_threshold_and_says_which(folder, monkeypatch, capsys):
    assert isinstance(load_source(folder).x, np.ndarray)  # 17 KB: decoded into memory
    assert "0 MiB as uint8: decoded into memory (data.stream = auto)" in capsys.readouterr().out
    monkeypatch.setattr(folders, "STREAM_ABOVE_BYTES", 10_000)
    assert isinstance(load_source(folder).x, ImageFiles)
    out = capsys.readouterr().out
    assert "120 images at 12×12×1" in out and "streamed from disk" in out, out
    assert "data.stream = auto" in out


def test_a_whole_decode_too_large_for_memory_is_refused(folder, monkeypatch):
    from mentor.data import memory

    lazy, _ = both(folder)
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(MentorError, match="more than half of the"):
        np.asarray(lazy.x)


def test_gray_16_bit_and_palette_files_stream_as_they_load(tmp_path):
    root = tmp_path / "modes"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(root / "a" / "deep.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).convert("P").save(root / "b" / "p.png")
    lazy, eager = both(str(root))
    assert lazy.x.shape == eager.x.shape == (2, 8, 8, 3)  # gray only when every image is
    np.testing.assert_array_equal(np.asarray(lazy.x), eager.x)
    assert eager.x[0, 0, -1, 0] == round(ramp[0, -1] / 257) == 28  # scaled, not clipped
