"""Inputs that must never be accepted silently: each gives one clear message naming the
problem and the fix, or is counted and said, never a wrong number, a hang or a traceback."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
from unittest import mock

import numpy as np
import pytest
from conftest import bn_classifier, write_digit_folder, write_npz
from PIL import Image

from mentor.data.files import BadImages, ImageFiles, decode_image, scan
from mentor.data.imageset import ImageSet
from mentor.data.sources import load_source
from mentor.errors import MentorError


@pytest.fixture
def digits(tmp_path):
    return write_digit_folder(tmp_path / "digits", per_class=6, classes=3, size=8)


def within(seconds, call):
    """`call()`'s result, or a failure if it has not returned after `seconds`."""
    out = {}

    def run():
        try:
            out["value"] = call()
        except Exception as error:  # noqa: BLE001 - handed back to the test
            out["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def cli(args, capsys):
    from mentor.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def demo_args(*sets):
    fixed = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4",
             "train.warmup_steps=1"]
    return [a for s in [*fixed, *sets] for a in ("--set", s)]


# ---- 1. unreadable test and validation images are not scored ------------------------------


def test_deleted_test_images_are_left_out_of_the_accuracy_and_counted(digits, capsys):
    from mentor.core.lifecycle import accuracy
    from mentor.inference import predict

    model = bn_classifier(classes=3, size=8)
    with BadImages.scope(strict=False):
        data = load_source(digits, stream="always")
        gone = [1, 7, 8, 16]
        for row in gone:
            os.remove(data.x.paths[row])
        kept = np.setdiff1d(np.arange(len(data)), gone)
        remaining = ImageFiles(data.x.paths[kept], 8, 1)
        hits = np.argmax(predict(model, np.asarray(remaining)), -1) == data.y[kept]
        assert accuracy(model, data) == pytest.approx(float(np.mean(hits)))
        assert sorted(BadImages.unscored) == sorted(str(data.x.paths[r]) for r in gone)
    assert "4 image(s) could not be read and are left out of its accuracy" in \
        capsys.readouterr().out


def test_every_score_leaves_unreadable_test_images_out(digits):
    """Accuracy is not the only number computed on a test set: distillation's agreement and
    KL, the robustness cells, AdaMatch's per-epoch target accuracy and `mentor predict`'s
    rows and accuracy all count only the images that could be read."""
    import mentor.data.sources as sources
    from mentor.core.evaluation import compare, logits
    from mentor.core.monitor import HeldOutAccuracy
    from mentor.data.files import scored_mask
    from mentor.inference import predict
    from mentor.predict import predict_images
    from mentor.robustness import sweep

    model, other = bn_classifier(classes=3, size=8), bn_classifier(classes=3, size=8)
    with BadImages.scope(strict=False):
        data = load_source(digits, stream="always")
        gone = [0, 5, 9]
        for row in gone:
            os.remove(data.x.paths[row])
        kept = np.setdiff1d(np.arange(len(data)), gone)
        clean = np.asarray(ImageFiles(data.x.paths[kept], 8, 1))
        want = lambda m: float(np.mean(np.argmax(predict(m, clean), -1) == data.y[kept]))

        pair = compare(logits(model, data), logits(other, data), data.y,
                       scored_mask(data.x, data.name))
        assert pair["teacher_acc"] == pytest.approx(want(model))
        assert pair["student_acc"] == pytest.approx(want(other))
        agree = np.argmax(predict(model, clean), -1) == np.argmax(predict(other, clean), -1)
        assert pair["student_teacher_agreement"] == pytest.approx(float(np.mean(agree)))

        cells = sweep({"model": model}, data, corruptions=["fog"], severities=(1,))["model"]
        assert cells["clean_acc"] == pytest.approx(want(model))

        logs = {}
        monitor = HeldOutAccuracy(data.x, data.y, "target_acc")
        monitor.set_model(model)
        monitor.on_epoch_end(0, logs)
        assert logs["target_acc"] == pytest.approx(want(model))

    # predict on a streamed source whose file breaks after the listing: no row for it
    with BadImages.scope(strict=False):
        data = load_source(digits, stream="always")
        victim = str(data.x.paths[4])
        with mock.patch.object(sources, "load_source", return_value=data):
            os.remove(victim)
            text, summary = predict_images(model, [digits], batch_size=16)
        assert victim not in text and summary["unreadable_images"] == 1
        assert summary["images"] == len(data) - 1
        assert len(text.strip().splitlines()) == len(data)  # the header and one row each


def test_unreadable_validation_images_leave_the_batch_with_their_labels(digits):
    from mentor.data.pipeline import EvalBatches

    with BadImages.scope(strict=False):
        data = load_source(digits, stream="always")
        os.remove(data.x.paths[2])
        x, y = EvalBatches(data.x, data.y, batch_size=8)[0]
        assert len(x) == len(y) == 7
        assert y.tolist() == np.delete(data.y[:8], 2).tolist()
    with BadImages.scope(strict=True):
        data = load_source(digits, stream="always")
        os.remove(data.x.paths[3])
        with pytest.raises(MentorError, match=f"{data.x.paths[3]}.*--strict"):
            EvalBatches(data.x, data.y, batch_size=8)[0]


def test_unscored_images_reach_metrics_json_and_the_report(tmp_path):
    from mentor.core.lifecycle import finish_run
    from mentor.recipes import load_config
    from mentor.run_folders import RunDir

    config, _ = load_config("demo", [])
    run_dir = RunDir(tmp_path / "run")
    with BadImages.scope(strict=False):
        BadImages.unscored["/data/test/a.png"] = "missing file"
        metrics = finish_run(run_dir, config, "t", {"test_acc": 0.5}, [])
    assert metrics["unscored_images"] == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["unscored_files"] == \
        ["/data/test/a.png"]
    assert "left out of the accuracies" in (tmp_path / "run" / "report.html").read_text()


# ---- 2. one class -----------------------------------------------------------------------


def test_a_training_set_of_one_class_is_refused_from_any_source(tmp_path):
    from mentor.data.splits import load_splits
    from mentor.objects import DATA_PREFIX, register
    from mentor.recipes import load_config

    x = np.random.default_rng(0).integers(0, 255, (20, 8, 8, 1), dtype=np.uint8)
    npz = write_npz(tmp_path / "one.npz", x=x, y=np.full(20, 3),
                    class_names=np.array([str(i) for i in range(10)]))
    memory = register(ImageSet(x, np.zeros(20, int), ["a", "b"], "arrays"), DATA_PREFIX)
    for spec in (npz, memory):
        config, _ = load_config("demo", [f"data.train={spec}"])
        with pytest.raises(MentorError, match="all 20 training images are of one class"):
            load_splits(config.data, 0)


# ---- 3. leakage -------------------------------------------------------------------------


def write_list(path, rows, header=True, **open_options):
    text = ("path,label\n" if header else "") + "".join(f"{f},{label}\n" for f, label in rows)
    path.write_text(text, **open_options)
    return str(path)


def test_a_list_naming_an_image_twice_is_refused_with_its_lines(digits, tmp_path):
    rows = [(f"digits/{c}/{i:04d}.png", c) for c in range(3) for i in range(2)]
    repeated = write_list(tmp_path / "repeated.csv", rows * 5)
    with pytest.raises(MentorError, match=r"repeated.csv: .*0000.png is listed twice "
                                          r"\(lines 2 and 8\).*Remove the repeated rows"):
        load_source(repeated)
    relabelled = write_list(tmp_path / "relabelled.csv", rows + [("digits/0/0001.png", 2)])
    with pytest.raises(MentorError, match=r"0001.png is listed with two labels, '0' \(line 3\) "
                                          r"and '2' \(line 8\)"):
        load_source(relabelled)


def test_a_test_set_inside_the_training_set_is_warned_in_log_metrics_and_report(
        digits, tmp_path, capsys):
    code, _, err = cli(["train", "demo", *demo_args(f"data.train={digits}", f"data.test={digits}"),
                        "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    assert "18 of 18 test images" in err and "memorisation" in err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["warning_test_in_train"] == 18
    assert "Warning: 18 test images are also training images" in \
        (tmp_path / "run" / "report.html").read_text()


def test_test_in_train_counts_the_same_files_or_the_same_pixels(digits, tmp_path):
    from mentor.overlap import test_in_train

    streamed = load_source(digits, stream="always")
    in_memory = load_source(digits, stream="never")
    os.link(streamed.x.paths[0], tmp_path / "linked.png")  # one file, two names
    other = write_digit_folder(tmp_path / "other", per_class=6, classes=3, size=8,
                               source="embedded:mnist5k")
    half = streamed.subset(np.arange(9))
    assert test_in_train(half, None, streamed) == 9  # all streamed: by file
    assert test_in_train(in_memory.subset(np.arange(9)), None, in_memory) == 9  # by pixels
    assert test_in_train(half, None, in_memory) == 9  # mixed: by file still
    assert test_in_train(half, None, load_source(other, stream="always")) == 0
    linked = ImageSet(ImageFiles([str(tmp_path / "linked.png")], 8, 1), [0], ["0", "1", "2"])
    assert test_in_train(half, None, linked) == 1


# ---- 4. labels that are numbers -----------------------------------------------------------


def test_labels_that_are_one_number_written_differently_are_one_class(digits, tmp_path, capsys):
    rows = [(f"digits/{c}/{i:04d}.png", spelling) for c, spellings in
            enumerate([("0", "0.0", "00"), ("1", "01", "+1"), ("2", "2", "2.")])
            for i, spelling in enumerate(spellings)]
    data = load_source(write_list(tmp_path / "numbers.csv", rows))
    assert data.class_names == ["0", "1", "2"]
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    out = capsys.readouterr().out
    assert "list:" in out and "3 classes: 0, 1, 2" in out
    assert "'0', '0.0', '00' are one class, 0" in out
    fraction = write_list(tmp_path / "fraction.csv", rows + [("digits/2/0004.png", "2.5")])
    with pytest.raises(MentorError, match=r"fraction.csv: the label '2.5' \(line 11\) is a "
                                          r"number that is not whole.*class-2.5"):
        load_source(fraction)
    os.rename(tmp_path / "digits" / "2", tmp_path / "digits" / "01")  # folders: "01" is 1
    merged = load_source(digits)
    assert merged.class_names == ["0", "1"] and np.bincount(merged.y).tolist() == [6, 12]
    os.rename(tmp_path / "digits" / "1", tmp_path / "digits" / "00042")  # one spelling: kept
    assert load_source(digits).class_names == ["0", "01", "00042"]  # by value, as lists


# ---- 5. float pixels ----------------------------------------------------------------------


def test_float_pixels_are_read_by_their_range_and_an_ambiguous_range_is_refused(tmp_path):
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 4, 4)
    assert ImageSet(ramp, [0]).x.max() == 255  # 0..1: scaled
    assert ImageSet(ramp * 255, [0]).x.max() == 255  # 0..255: as it is
    assert ImageSet(np.ones((1, 2, 2), bool), [0]).x.min() == 255  # a mask: white
    for bad, says in ((ramp * 1.02, r"found \[0, 1.02\].*np.clip\(x, 0, 1\)"),
                      (ramp - 0.5, r"found \[-0.5, 0.5\].*undo the normalisation")):
        with pytest.raises(MentorError, match=r"\[0, 1\] or \[0, 255\].*" + says):
            ImageSet(bad, [0])
    Image.fromarray(ramp[0], "F").save(tmp_path / "unit.tif")
    decoded = decode_image(tmp_path / "unit.tif", None)
    assert decoded.shape == (4, 4, 1) and decoded.max() == 255 and decoded[0, 1, 0] == 17
    Image.fromarray(ramp[0] * 1.2, "F").save(tmp_path / "odd.tif")
    with pytest.raises(MentorError, match=r"odd.tif: float pixels .*found \[0, 1.2\]"):
        decode_image(tmp_path / "odd.tif", None)


# ---- 6. data.stream on arrays -------------------------------------------------------------


def test_stream_always_on_arrays_says_they_stay_in_memory(tmp_path, capsys):
    x = np.zeros((4, 8, 8, 1), np.uint8)
    data = load_source(write_npz(tmp_path / "a.npz", x=x, y=np.array([0, 1, 0, 1])),
                       stream="always")
    assert isinstance(data.x, np.ndarray)
    assert 'a.npz: held in memory, not streamed: data.stream = "always" streams image ' \
           "folders and CSV lists only" in capsys.readouterr().out


# ---- 7. files that would block a reader ---------------------------------------------------


def test_a_named_pipe_listed_or_swapped_in_is_unreadable_not_a_hang(digits, tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    keep, _, _, bad = within(10, lambda: scan([str(pipe)]))
    assert not keep[0] and "not a regular file but a named pipe (FIFO)" in bad[0][1]
    with BadImages.scope(strict=False):
        data = load_source(digits, stream="always")
        target = data.x.paths[4]
        os.remove(target)
        os.mkfifo(target)  # swapped in after the listing
        batch = within(10, lambda: data.x[[3, 4, 5]])
        np.testing.assert_array_equal(batch[1], batch[0])  # a training batch: replaced
        assert "named pipe" in BadImages.all_skipped()[0][1]
    os.mkfifo(tmp_path / "list.csv")
    with pytest.raises(MentorError, match="list.csv is not a regular file but a named pipe"):
        within(10, lambda: load_source(str(tmp_path / "list.csv")))


# ---- 8. messages, not tracebacks ----------------------------------------------------------


def test_unreadable_csv_lists_get_a_message_naming_the_file_and_the_fix(digits, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,label\ndigits/0/0000.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(MentorError, match=r"latin.csv is not UTF-8 text.*Save it as UTF-8"):
        load_source(str(latin))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(MentorError, match=r"binary.csv.*(UTF-8|not a CSV row)"):
        load_source(str(binary))
    long = write_list(tmp_path / "long.csv", [("x" * 200_000, 0)])
    with pytest.raises(MentorError, match=r"long.csv, line 2: not a CSV row \(field larger "
                                          r"than field limit.*path,label"):
        load_source(long)


def test_a_list_with_a_byte_order_mark_reads_its_header_as_a_header(digits, tmp_path):
    rows = [(f"digits/{c}/{i:04d}.png", c) for c in range(3) for i in range(2)]
    data = load_source(write_list(tmp_path / "bom.csv", rows, encoding="utf-8-sig"))
    assert len(data) == 6 and data.class_names == ["0", "1", "2"]


def test_images_too_small_for_the_model_name_data_image_size(tmp_path, capsys):
    tiny = write_digit_folder(tmp_path / "tiny", per_class=10, classes=3, size=1)
    code, _, err = cli(["train", "demo", *demo_args(f"data.train={tiny}"),
                        "--out", str(tmp_path / "run")], capsys)
    assert code != 0 and "Traceback" not in err
    assert "1×1×1 images" in err and "data.image_size" in err


# ---- 9. workers and shared memory ---------------------------------------------------------


def test_more_workers_than_cores_are_capped_and_said_once(capsys):
    from mentor.data import pipeline
    from mentor.data.files import available_cores

    cores = available_cores()
    assert pipeline.worker_count(cores + 10) == cores
    assert pipeline.worker_count(cores + 10) == cores
    assert capsys.readouterr().out.count(f"data.workers = {cores + 10} is more than") == 1
    assert pipeline.worker_count(0) == cores and pipeline.worker_count(1) == 1


def test_a_streamed_loader_leaves_no_shared_memory_behind(digits, tmp_path):
    script = textwrap.dedent(f"""
        from mentor.data.pipeline import Batches, feed
        from mentor.data.sources import load_source

        if __name__ == "__main__":
            data = load_source({digits!r}, stream="always")
            served = feed(Batches(data, 4, steps=5, seed=0, workers=1))
            print(sum(len(y) for _, y in served))
            served.close()
    """)
    (tmp_path / "loader.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "loader.py")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("20")
    assert "leaked shared_memory" not in done.stderr


# ---- more inputs that must not pass silently or as a traceback ------------------------------


@pytest.mark.parametrize("x, y, words", [
    (np.array(3), np.array([0]), "must be N×H×W"),               # a 0-d "image"
    (np.zeros((4, 0, 0), np.uint8), np.arange(4) % 2, "H, W ≥ 1"),  # images of no pixels
])
def test_npz_arrays_of_no_image_shape_are_refused_by_shape(tmp_path, x, y, words):
    path = write_npz(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(MentorError, match=words):
        load_source(path)


def test_a_folder_named_like_an_npz_says_to_write_folder(tmp_path):
    folder = write_digit_folder(tmp_path / "x.npz", per_class=2, classes=2, size=8)
    with pytest.raises(MentorError, match="is a folder, not an .npz file; .* write folder:"):
        load_source(folder)


def test_a_cifar10c_file_of_pickled_objects_is_refused_with_a_message(tmp_path):
    from mentor.data.datasets import load_cifar10c

    np.save(tmp_path / "fog.npy", np.zeros((5, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.array([object()] * 5, dtype=object))
    with pytest.raises(MentorError, match="labels.npy is not a plain .npy array"):
        load_cifar10c(tmp_path, "fog", 1)


def test_a_list_with_a_nul_byte_is_a_bad_row_not_a_traceback(tmp_path):
    listed = tmp_path / "l.csv"
    listed.write_bytes(b"path,label\na\x00b.png,0\n")
    with pytest.raises(MentorError, match="line 2: expected `path,label`"):
        load_source(f"list:{listed}")


def test_one_image_in_two_class_folders_is_refused(tmp_path):
    folder = pathlib.Path(write_digit_folder(tmp_path / "imgs", per_class=3, classes=2,
                                             size=8))
    os.symlink(folder / "0" / "0000.png", folder / "1" / "linked.png")
    with pytest.raises(MentorError, match="one image is in two classes"):
        load_source(f"folder:{folder}")


def test_class_names_given_twice_are_refused():
    with pytest.raises(MentorError, match="'cat' is given to more than one class id"):
        ImageSet(np.zeros((2, 8, 8, 1), np.uint8), [0, 1], ["cat", "cat"], "d.npz")


def test_numeric_class_folders_get_the_class_ids_a_list_of_the_same_labels_gets(tmp_path,
                                                                                capsys):
    folder = pathlib.Path(write_digit_folder(tmp_path / "imgs", per_class=2, classes=2,
                                             size=8))
    (folder / "1").rename(folder / "10")
    (folder / "0").rename(folder / "9")
    from_folder = load_source(f"folder:{folder}")
    assert from_folder.class_names == ["9", "10"]
    assert "class ids follow the classes' values (9, 10)" in capsys.readouterr().out
    rows = [(f"imgs/{c}/{i:04d}.png", c) for c in ("9", "10") for i in range(2)]
    from_list = load_source(write_list(tmp_path / "l.csv", rows))
    assert from_list.class_names == from_folder.class_names
    by_file = lambda data: {os.path.basename(os.path.dirname(f)) + "/" + os.path.basename(f): y
                            for f, y in zip(data.source_files(), data.y)}
    assert by_file(from_list) == by_file(from_folder)  # each image, one class id


def test_a_resume_sees_images_replaced_under_the_names_a_list_gives(tmp_path):
    from mentor.run_folders import fingerprint

    folder = pathlib.Path(write_digit_folder(tmp_path / "imgs", per_class=2, classes=2,
                                             size=8))
    listed = tmp_path / "l.csv"
    listed.write_text("".join(f"imgs/{c}/000{i}.png,{c}\n" for c in (0, 1) for i in (0, 1)))
    before = fingerprint(str(listed))
    image = folder / "1" / "0001.png"
    Image.fromarray(np.full((9, 9), 7, np.uint8)).save(image)  # other pixels, same name
    assert fingerprint(str(listed)) != before


def test_wide_integer_pixels_of_only_0_and_1_are_refused_as_ambiguous():
    with pytest.raises(MentorError, match="all 0 or 1 .* bool"):
        ImageSet(np.eye(8, dtype=np.int64)[None].repeat(2, 0), [0, 1], name="masks")
    # uint8 is 0..255 by definition: kept as it is
    assert ImageSet(np.eye(8, dtype=np.uint8)[None].repeat(2, 0), [0, 1]).x.max() == 1
