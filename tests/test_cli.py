"""The command line: happy paths, and the catalogue of bad inputs.

Every bad input must give one clear message on stderr (naming the problem and the fix),
exit code 2 for a wrong command line or config (found before any work) or 1 for a run that
failed (data, files, models, network, training), and no metrics.json.
"""

import html
import json
import re
import subprocess
import sys
import urllib.error

import keras
import numpy as np
import pytest
from conftest import mark_run, write_npz

from mentor.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def small_model(tmp_path, classes=10, size=8, lam=False):
    layers = [keras.Input((size, size, 1)), keras.layers.Flatten()]
    if lam:
        layers.append(keras.layers.Lambda(lambda t: t * 1.0))
    model = keras.Sequential(layers + [keras.layers.Dense(classes)])
    path = tmp_path / ("lambda.keras" if lam else f"m{classes}.keras")
    model.save(path)
    return path


def test_presets_lists_one_line_each(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    lines = out.strip().splitlines()
    assert any(line.startswith("demo ") for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # name + description


def test_sources_and_help_teach(capsys):
    assert run_cli(capsys, "sources")[1].count("embedded:mnist5k") == 1
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--set" in out and "example" in out


def test_demo_end_to_end_short(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, _ = run_cli(capsys, "demo", "supervised", "--out", str(out_dir),
                           "--set", "train.epochs=1")
    assert code == 0 and "test_acc" in out
    assert "[1/1] supervised:" in out  # part headers number the parts
    # …and it ends on the summary table and the page that compares the parts
    metrics = json.loads((out_dir / "supervised" / "metrics.json").read_text())
    assert f"supervised   test {100 * metrics['test_acc']:.1f} % (72,666 parameters)" in out
    assert f"compare them in {out_dir / 'index.html'}" in out
    assert 'href="supervised/report.html"' in (out_dir / "index.html").read_text()
    out_dir = out_dir / "supervised"
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["recipe"] == "supervised" and metrics["test_images"] == 1000

    code, out, err = run_cli(capsys, "evaluate", str(out_dir / "model.keras"),
                             "--data", "embedded:mnist5k", "--json", str(tmp_path / "e.json"))
    assert code == 0 and "accuracy" in out
    # the demo trained on 4000 of these 5000 (train and validation): not a test accuracy
    assert "4000 of 5000 test images are training images of this run" in err
    assert 0.0 <= json.loads((tmp_path / "e.json").read_text())["test_acc"] <= 1.0


def test_evaluate_resizes_data_to_the_model(capsys, tmp_path):
    """An 8×8 model evaluated on 28×28 MNIST: the data is prepared to the model's input."""
    code, out, _ = run_cli(capsys, "evaluate", str(small_model(tmp_path)),
                           "--data", "embedded:mnist5k")
    assert code == 0 and "5000 images" in out


def bad_inputs(tmp_path):
    """(argv, words the message must contain) for each bad input."""
    ok_x = np.zeros((20, 8, 8), np.uint8)
    ok_y = np.arange(20) % 2
    one_class = tmp_path / "one_class" / "cat"
    one_class.mkdir(parents=True)
    from PIL import Image
    Image.new("L", (8, 8)).save(one_class / "a.png")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    done = mark_run(tmp_path / "done")
    (done / "metrics.json").write_text("{}")
    train = ["train", "demo", "--set"]
    distill = ["train", "demo-distill", "--set"]

    def teacher(classes, size):
        path = tmp_path / f"teacher{classes}_{size}.keras"
        keras.Sequential([keras.Input((size, size, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(classes)]).save(path)
        return path

    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    unfinished = mark_run(tmp_path / "unfinished")
    (unfinished / "config.toml").write_text("# resolved from x\n\nrecipe = \"supervised\"\n")
    (unfinished / "checkpoints").mkdir()  # it saved something: there is a run to resume
    (unfinished / "checkpoints" / "epoch-0001.npz").write_bytes(b"")
    robust = ["robustness", str(small_model(tmp_path)), "--data", "embedded:digits"]
    return {
        "npz without y": (train + [f"data.train={write_npz(tmp_path / 'noy.npz', x=ok_x)}"],
                          ["no", "'y'"]),
        "npz without x": (train + [f"data.train={write_npz(tmp_path / 'nox.npz', y=ok_y)}"],
                          ["no", "'x'"]),
        "labels out of range for the train classes": (
            train + [f"data.train={write_npz(tmp_path / 'tr.npz', x=ok_x, y=ok_y)}",
                     "--set", f"data.test={write_npz(tmp_path / 'te.npz', x=ok_x, y=np.arange(20) % 7)}"],
            ["label space"]),
        "negative labels": (train + [f"data.train={write_npz(tmp_path / 'neg.npz', x=ok_x, y=ok_y - 1)}"],
                            ["≥ 0"]),
        "NaN images": (train + [f"data.train={write_npz(tmp_path / 'nan.npz', x=np.full((20, 8, 8), np.nan), y=ok_y)}"],
                       ["NaN"]),
        "wrong-rank images": (train + [f"data.train={write_npz(tmp_path / 'rank.npz', x=np.zeros((20, 64)), y=ok_y)}"],
                              ["N×H×W"]),
        "unknown preset": (["train", "dmeo"], ["unknown preset", "demo"]),
        "unknown config key": (train + ["train.epoch=3"], ["unknown config key", "train.epochs"]),
        "wrong config type": (train + ["train.epochs=ten"], ["train.epochs", "int"]),
        "malformed --set": (train + ["epochs"], ["key=value"]),
        "unknown model": (train + ["model.name=resnet9000"], ["unknown model", "small_cnn"]),
        "unknown model option": (train + ["model.options.depth=3"], ["no option", "width"]),
        "one-class folder": (train + [f"data.train=folder:{one_class.parent}"], ["2 classes"]),
        "missing data file": (train + [f"data.train={tmp_path / 'missing.npz'}"],
                              ["missing.npz"]),
        "unknown source": (train + ["data.train=imagenet:train"], ["not a data source"]),
        "too few labels for a split": (train + [f"data.train={write_npz(tmp_path / 'tiny.npz', x=ok_x[:2], y=ok_y[:2])}"],
                                       ["empty"]),
        "missing config file": (["train", str(tmp_path / "nope.toml")], ["no such config file"]),
        "unwritable output directory": (["train", "demo", "--out", str(a_file / "run")],
                                        ["cannot write the run directory"]),
        "output holds a completed run": (["train", "demo", "--out", str(done)],
                                         ["already holds a completed run"]),
        "missing model file": (["evaluate", str(tmp_path / "none.keras"), "--data",
                                "embedded:digits"], ["no such model file"]),
        "model and data class counts differ": (
            ["evaluate", str(small_model(tmp_path, classes=3)), "--data", "embedded:digits"],
            ["predicts 3 classes", "10"]),
        "Lambda model without --unsafe": (
            ["evaluate", str(small_model(tmp_path, lam=True)), "--data", "embedded:digits"],
            ["--unsafe"]),
        "bad schedule": (train + ["train.schedule=linear"], ["train.schedule"]),
        "unknown demo part": (["demo", "adamatch-ish"], ["unknown demo part", "supervised"]),
        "unknown corruption": (robust + ["--corruptions", "fgo"],
                               ["unknown corruption 'fgo'", "'fog'"]),
        "severity outside 1-5": (robust + ["--severities", "6"], ["1 to 5", "6"]),
        "robustness: class counts differ": (
            ["robustness", str(small_model(tmp_path, classes=3)), "--data", "embedded:digits"],
            ["predicts 3 classes"]),
        "CIFAR-10-C folder missing a file": (
            robust + ["--cifar10c", str(tmp_path), "--corruptions", "fog"], ["fog.npy"]),
        "distill: teacher and student class counts differ": (
            distill + [f"teacher.path={teacher(12, 28)}"],
            ["teacher predicts 12 classes but the student 10"]),
        "distill: teacher file does not load": (distill + [f"teacher.path={broken}"],
                                                ["broken.keras"]),
        "distill: teacher input size differs": (distill + [f"teacher.path={teacher(10, 16)}",
                                                           "--set", "teacher.image_size=12"],
                                                ["takes 16×16 images but teacher.image_size = 12"]),
        "distill: run directory without a model": (distill + [f"teacher.path={a_file.parent / 'one_class'}"],
                                                   ["without model.keras"]),
        "resuming with another config": (["train", "demo", "--out", str(unfinished)],
                                         ["unfinished run with another config"]),
        "data parallel off JAX": (["train", "demo", "--devices", "2"],
                                  ["runs on the JAX backend"]),
        "unknown precision": (["train", "demo", "--set", "runtime.precision=float8"],
                              ["'runtime.precision' must be one of"]),
    }


# The command line or the config is wrong: exit 2. Every other case is a run that failed on
# its data, files or models: exit 1.
USAGE_ERRORS = {"unknown preset", "unknown config key", "wrong config type", "malformed --set",
                "unknown model", "unknown model option", "missing config file", "bad schedule",
                "unknown demo part", "unknown corruption", "severity outside 1-5",
                "data parallel off JAX", "unknown precision"}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """Built once for all cases: no case writes into the catalogue's files."""
    return bad_inputs(tmp_path_factory.mktemp("catalogue"))




@pytest.mark.parametrize("case", [
    "npz without y", "npz without x", "labels out of range for the train classes",
    "negative labels", "NaN images", "wrong-rank images", "unknown preset",
    "unknown config key", "wrong config type", "malformed --set", "unknown model",
    "unknown model option", "one-class folder", "missing data file", "unknown source",
    "too few labels for a split", "missing config file", "unwritable output directory",
    "output holds a completed run", "missing model file", "model and data class counts differ",
    "Lambda model without --unsafe", "bad schedule", "unknown demo part",
    "unknown corruption", "severity outside 1-5", "robustness: class counts differ",
    "CIFAR-10-C folder missing a file", "distill: teacher and student class counts differ",
    "distill: teacher file does not load", "distill: teacher input size differs",
    "distill: run directory without a model", "resuming with another config",
    "data parallel off JAX", "unknown precision"])
def test_bad_input_gets_one_clear_message(case, catalogue, capsys, tmp_path, monkeypatch):
    argv, words = catalogue[case]
    out_dir = tmp_path / "out"
    if "--out" not in argv and argv[0] in ("train", "robustness"):
        argv = argv + ["--out", str(out_dir)]
    code, _, err = run_cli(capsys, *argv)
    assert code == (2 if case in USAGE_ERRORS else 1), err
    assert err.startswith("mentor: error: ") and "Traceback" not in err
    for word in words:
        assert word in err, f"{case}: {word!r} not in {err!r}"
    assert not (out_dir / "metrics.json").exists()


def test_download_while_offline_says_where_to_put_the_file(capsys, tmp_path, monkeypatch):
    import mentor.data.download as download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "_urlopen", offline)
    monkeypatch.setenv("MENTOR_CACHE", str(tmp_path / "cache"))
    code, _, err = run_cli(capsys, "evaluate", str(small_model(tmp_path)), "--data", "mnist:test")
    assert code == 1  # the network failed, not the command line
    assert "could not download" in err and str(tmp_path / "cache") in err
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_exit_code_of_the_installed_command():
    """The console entry point itself (not just main()) exits 2 on a usage error."""
    result = subprocess.run([sys.executable, "-m", "mentor", "train", "no-such-preset"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown preset 'no-such-preset'" in result.stderr


def test_robustness_generated_and_from_a_cifar10c_release(capsys, tmp_path):
    """The sweep on generated corruptions, then on a release-format folder (one NAME.npy of
    5 severities × n rows, labels.npy) whose rows we know."""
    model = small_model(tmp_path)
    code, out, _ = run_cli(capsys, "robustness", str(model), "--data", "embedded:digits",
                           "--corruptions", "fog,gaussian_noise", "--severities", "1,5",
                           "--max-images", "50", "--out", str(tmp_path / "gen"))
    assert code == 0 and "clean accuracy" in out
    metrics = json.loads((tmp_path / "gen" / "metrics.json").read_text())
    assert metrics["recipe"] == "robustness" and metrics["images"] == 50
    cells = [k for k in metrics if k.startswith("corrupt_acc/")]
    assert sorted(cells) == ["corrupt_acc/fog/1", "corrupt_acc/fog/5",
                             "corrupt_acc/gaussian_noise/1", "corrupt_acc/gaussian_noise/5"]
    assert metrics["corrupt_acc"] == pytest.approx(np.mean([metrics[k] for k in cells]))
    assert (tmp_path / "gen" / "robustness.png").stat().st_size > 0
    # its report opens with the verdict on these numbers: 2 benchmark corruptions here
    page = (tmp_path / "gen" / "report.html").read_text()
    said = html.unescape(re.search(r'<p class="verdict">(.*?)</p>', page).group(1))
    assert (f"{100 * metrics['clean_acc']:.1f} % of the 50 clean images and "
            f"{100 * metrics['corrupt_acc']:.1f} % of their corrupted versions") in said
    assert "(2 corruptions × 2 severities)" in out

    release = tmp_path / "CIFAR-10-C"
    release.mkdir()
    rng = np.random.default_rng(0)
    np.save(release / "fog.npy", rng.integers(0, 256, (5 * 4, 32, 32, 3)).astype("uint8"))
    np.save(release / "labels.npy", np.tile(np.arange(4), 5))
    code, out, _ = run_cli(capsys, "robustness", str(model), "--data", "embedded:digits",
                           "--cifar10c", str(release), "--corruptions", "fog",
                           "--out", str(tmp_path / "rel"))
    assert code == 0
    metrics = json.loads((tmp_path / "rel" / "metrics.json").read_text())
    assert sorted(k for k in metrics if k.startswith("corrupt_acc/")) == [
        f"corrupt_acc/fog/{s}" for s in range(1, 6)]


def test_a_diverging_run_stops_with_the_guards_message(capsys, tmp_path):
    out_dir = tmp_path / "nan"
    code, _, err = run_cli(capsys, "train", "demo", "--set", "train.learning_rate=1e30",
                           "--set", "train.epochs=2", "--set", "train.warmup_steps=0",
                           "--set", "data.train=embedded:digits",
                           "--out", str(out_dir))
    assert code == 1 and "Traceback" not in err  # a run that failed, not a wrong command
    assert "training diverged" in err and "epoch 1, batch" in err and "learning_rate" in err
    assert not (out_dir / "metrics.json").exists()
