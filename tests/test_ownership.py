"""mentor writes only into folders it owns and deletes only what it created.

A folder is mentor's when it was new or empty and mentor marked it (.mentor-run.json) before
writing anything else; a result file never replaces an input of the same command or a
model, image or data file; temporary files have names no user file has; clean-up deletes
only files the mark lists. Each test below is one way a user's files were at risk.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import bn_classifier, mark_run, write_npz

from mentor.atomic import TEMP_PREFIX, atomic_path
from mentor.cli import build_parser, main
from mentor.errors import MentorError
from mentor.run_folders import MARK, RunDir, claim

TRAIN = ["train", "demo", "--set", "data.train=embedded:digits", "--set", "train.epochs=1"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder) -> dict:
    """Every file under `folder` with its bytes."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def users_folder(path) -> pathlib.Path:
    """A folder of a user's own files, with the names a run writes."""
    path.mkdir(parents=True)
    for name in ("config.toml", "report.html", "model.keras", "history.csv", "curves.png",
                 "robustness.png"):
        (path / name).write_text(f"the user's own {name}\n")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "epoch-0000-backup.npz").write_bytes(b"the user's backup")
    return path


# ---- folders: new, empty, or marked ------------------------------------------------------


def test_train_refuses_a_folder_of_the_users_files_and_leaves_it_as_it_was(capsys, tmp_path):
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    code, _, err = run_cli(capsys, *TRAIN, "--out", mine)
    assert code == 2 and "Traceback" not in err
    assert f"{mine} holds files that are not a mentor run" in err
    assert "new folder" in err  # how to proceed
    assert snapshot(mine) == before and not (mine / MARK).exists()


def test_robustness_refuses_a_folder_of_the_users_files(capsys, tmp_path):
    model = tmp_path / "m.keras"
    bn_classifier(classes=10, size=8).save(model)
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    code, _, err = run_cli(capsys, "robustness", model, "--data", "embedded:digits",
                           "--corruptions", "fog", "--severities", "1", "--max-images", "20",
                           "--out", mine)
    assert code == 2 and "not a mentor run" in err
    assert snapshot(mine) == before


def test_out_at_the_filesystem_root_is_refused_before_writing_there(capsys):
    written = [p for p in ("/config.toml", "/status.json", "/" + MARK) if os.path.exists(p)]
    code, _, err = run_cli(capsys, *TRAIN, "--out", "/")
    assert code == 2 and "/ holds files that are not a mentor run" in err
    assert [p for p in ("/config.toml", "/status.json", "/" + MARK)
            if os.path.exists(p)] == written


def test_a_file_given_as_out_is_refused(capsys, tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    code, _, err = run_cli(capsys, *TRAIN, "--out", victim)
    assert code == 2 and "is a file, not a folder" in err and victim.read_text() == "mine"


def test_a_run_folder_inside_its_data_folder_is_refused_before_it_is_made(capsys, tmp_path):
    from conftest import write_digit_folder

    images = pathlib.Path(write_digit_folder(tmp_path / "imgs", per_class=4, classes=2, size=8))
    before = sorted(os.listdir(images))
    code, _, err = run_cli(capsys, "train", "demo", "--set", f"data.train=folder:{images}",
                           "--out", images / "run")
    assert code == 2 and "lies in (or holds) the data folder" in err
    assert sorted(os.listdir(images)) == before  # no class folder named after the run


def test_a_default_run_folder_inside_its_data_folder_is_never_made(capsys, tmp_path,
                                                                   monkeypatch):
    from conftest import write_digit_folder

    images = pathlib.Path(write_digit_folder(tmp_path / "imgs", per_class=4, classes=2, size=8))
    monkeypatch.chdir(images)  # runs/NAME-STAMP would land among the class folders
    code, _, err = run_cli(capsys, "train", "demo", "--set", "data.train=folder:.")
    assert code == 2 and "lies in (or holds) the data folder" in err
    assert not (images / "runs").exists()


def test_an_empty_out_is_refused_not_replaced_by_a_default(capsys):
    code, _, err = run_cli(capsys, *TRAIN, "--out", "")
    assert code == 2 and "--out is empty" in err


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    from mentor.run_folders import default_run_path

    monkeypatch.chdir(tmp_path)
    first, second = default_run_path("demo"), default_run_path("demo")
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name.startswith(first.name)


def test_new_and_empty_folders_are_marked_before_anything_else_is_written(tmp_path):
    for path in (tmp_path / "new" / "nested", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        claim(path)
        assert sorted(os.listdir(path)) == [MARK]
        assert json.loads((path / MARK).read_text())["kind"] == "run"
        claim(path)  # marked: mentor's, taken again (a resume)


def test_a_folder_of_one_kind_is_not_taken_for_another(tmp_path):
    claim(tmp_path / "demo", "demo")
    with pytest.raises(MentorError, match="holds a demo .* not a robustness evaluation"):
        claim(tmp_path / "demo", "robustness")


def test_status_recognises_a_run_by_its_mark_not_by_its_file_names(capsys, tmp_path):
    lookalike = tmp_path / "lookalike"
    lookalike.mkdir()
    (lookalike / "config.toml").write_text('recipe = "supervised"\n')
    (lookalike / "metrics.json").write_text("{}")
    code, out, err = run_cli(capsys, "status", lookalike)
    assert code == 1 and "completed" not in out and "holds no mentor run" in err

    mark_run(lookalike)
    code, out, _ = run_cli(capsys, "status", lookalike)
    assert code == 0 and "completed" in out


def test_a_status_whose_pid_now_names_another_process_is_interrupted(capsys, tmp_path):
    import socket

    from mentor.run_folders import read_status

    run = mark_run(tmp_path / "run")
    status = {"state": "running", "pid": os.getpid(), "host": socket.gethostname(),
              "pid_started": -1}  # this pid, but a process that started at another time
    (run / "status.json").write_text(json.dumps(status))
    assert read_status(run)["state"] == "interrupted"
    del status["pid_started"]  # written by an older mentor: the pid and its program
    (run / "status.json").write_text(json.dumps(status))
    assert read_status(run)["state"] == "running"  # this process is a Python one
    status["pid"] = 1  # init, or whatever the system runs first: not a run of mentor's
    (run / "status.json").write_text(json.dumps(status))
    if b"python" not in pathlib.Path("/proc/1/cmdline").read_bytes():
        assert read_status(run)["state"] == "interrupted"


def test_a_closed_pipe_ends_the_listing_quietly():
    """`mentor presets | head -1`: the reader has gone before mentor writes (it closes its
    end at once, while mentor is still importing)."""
    proc = subprocess.Popen([sys.executable, "-m", "mentor", "presets"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


# ---- clean-up deletes only what the mark lists --------------------------------------------


def test_checkpoint_rotation_deletes_only_the_checkpoints_mentor_wrote(tmp_path):
    from mentor.core.checkpoints import Checkpoints, checkpoint_files

    run = mark_run(tmp_path / "run")
    folder = run / "checkpoints"
    folder.mkdir()
    (folder / "epoch-0000-backup.npz").write_bytes(b"the user's backup")
    (folder / "epoch-0001.npz").write_bytes(b"the user's copy, named like a checkpoint")
    model = bn_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    callback = Checkpoints(folder, every=1, keep=1)
    callback.set_model(model)
    callback.set_params({"epochs": 4})
    for epoch in range(1, 4):  # epochs 2, 3, 4: mentor's own
        callback.on_epoch_end(epoch)
    left = sorted(os.listdir(folder))
    assert left == ["epoch-0000-backup.npz", "epoch-0001.npz", "epoch-0004.npz"]
    assert (folder / "epoch-0001.npz").read_bytes().startswith(b"the user's copy")
    assert json.loads((run / MARK).read_text())["files"] == ["checkpoints/epoch-0004.npz"]
    # a look-alike name is never read as a checkpoint to resume from
    assert [os.path.basename(f) for f in checkpoint_files(folder)] == \
        ["epoch-0001.npz", "epoch-0004.npz"]
    assert "epoch-0000-backup.npz" not in str(checkpoint_files(folder))


# ---- a result file never replaces an input ------------------------------------------------


@pytest.fixture
def model_and_images(tmp_path):
    model = tmp_path / "mine.keras"
    bn_classifier(classes=10, size=8).save(model)
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(images / f"{i}.png")
    return model, images


@pytest.mark.parametrize("case", ["predict --out the model", "predict --out an input image",
                                  "evaluate --json the model", "evaluate --json its data",
                                  "predict --out an existing image"])
def test_a_result_file_never_replaces_an_input_or_a_model(case, capsys, tmp_path,
                                                         model_and_images):
    model, images = model_and_images
    data = write_npz(tmp_path / "test.npz", x=np.zeros((4, 8, 8, 1), np.uint8),
                     y=np.arange(4) % 10)
    other_png = tmp_path / "photo.png"
    other_png.write_bytes((images / "0.png").read_bytes())
    argv, victim = {
        "predict --out the model": (["predict", model, images, "--out", model], model),
        "predict --out an input image": (["predict", model, images / "1.png", "--out",
                                          images / "1.png"], images / "1.png"),
        "evaluate --json the model": (["evaluate", model, "--data", data, "--json", model],
                                      model),
        "evaluate --json its data": (["evaluate", model, "--data", data, "--json", data],
                                     pathlib.Path(data)),
        "predict --out an existing image": (["predict", model, images, "--out", other_png],
                                            other_png),
    }[case]
    before = victim.read_bytes()
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "Traceback" not in err and "Give another file name" in err, err
    assert victim.read_bytes() == before


def test_a_result_file_never_replaces_the_data_the_runs_model_trained_on(capsys, tmp_path,
                                                                          model_and_images):
    model, images = model_and_images
    listed = tmp_path / "l.csv"
    listed.write_text("path,label\n" + "".join(f"imgs/{i}.png,{i % 2}\n" for i in range(3)))
    run = mark_run(tmp_path / "run")
    (run / "config.toml").write_text(f'recipe = "supervised"\n[data]\ntrain = "{listed}"\n')
    bn_classifier(classes=10, size=8).save(run / "model.keras")
    (run / "metrics.json").write_text("{}")
    before = listed.read_bytes()
    code, _, err = run_cli(capsys, "predict", run, images, "--out", listed)
    assert code == 1 and "the data its model trained on" in err
    assert listed.read_bytes() == before


def test_an_existing_file_is_replaced_only_when_it_is_this_commands_result(
        capsys, tmp_path, model_and_images, monkeypatch):
    model, images = model_and_images
    monkeypatch.chdir(tmp_path)
    users = tmp_path / "predictions.csv"
    users.write_text("my,own,table\n")
    code, _, err = run_cli(capsys, "predict", model, images)  # the default --out
    assert code == 1 and "is not a result of this command" in err
    assert users.read_text() == "my,own,table\n"
    users.unlink()
    assert run_cli(capsys, "predict", model, images)[0] == 0
    assert run_cli(capsys, "predict", model, images)[0] == 0  # its own result: replaced
    data = write_npz(tmp_path / "t.npz", x=np.zeros((4, 8, 8, 1), np.uint8), y=np.arange(4))
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    code, _, err = run_cli(capsys, "evaluate", model, "--data", data, "--json", notes)
    assert code == 1 and json.loads(notes.read_text()) == {"mine": 1}
    notes.unlink()
    assert run_cli(capsys, "evaluate", model, "--data", data, "--json", notes)[0] == 0
    assert run_cli(capsys, "evaluate", model, "--data", data, "--json", notes)[0] == 0


def test_a_result_file_is_not_written_into_a_run_folder(capsys, tmp_path, model_and_images):
    model, images = model_and_images
    run = mark_run(tmp_path / "run")
    code, _, err = run_cli(capsys, "predict", model, images, "--out", run / "metrics.json")
    assert code == 1 and "a folder mentor writes itself" in err
    assert not (run / "metrics.json").exists()


def test_temporary_files_never_take_a_users_file_name(capsys, tmp_path, model_and_images):
    model, images = model_and_images
    out = tmp_path / "preds.csv"
    users = tmp_path / "preds.csv.partial"
    users.write_text("the user's file")
    code, _, err = run_cli(capsys, "predict", model, images, "--out", out)
    assert code == 0, err
    assert users.read_text() == "the user's file" and out.read_text().startswith("image,")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_a_failed_atomic_write_leaves_neither_a_temporary_file_nor_a_final_one(tmp_path):
    final = tmp_path / "result.json"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        assert tmp.name.startswith(TEMP_PREFIX) and tmp.name.endswith("result.json")
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert list(tmp_path.iterdir()) == []


# ---- a resume continues on the data the run started with ---------------------------------


def test_a_resume_after_the_training_data_changed_is_refused_unless_asked(tmp_path, capsys):
    data = pathlib.Path(write_npz(tmp_path / "train.npz", x=np.zeros((20, 8, 8, 1), np.uint8),
                                  y=np.arange(20) % 2))
    values = {"recipe": "supervised", "data": {"train": str(data), "test": "embedded:digits"}}
    first = RunDir(tmp_path / "run")
    first.write_config(values, "test")
    (first.checkpoints).mkdir()
    np.savez(first.checkpoints / "epoch-0001.npz", var0=np.zeros(2))  # something to resume

    again = RunDir(tmp_path / "run")
    again.write_config(values, "test")  # the same data: resumes
    assert again.resumed

    write_npz(data, x=np.full((20, 8, 8, 1), 255, np.uint8), y=np.arange(20) % 2)  # in place
    with pytest.raises(MentorError, match=r"data\.train = .*train\.npz.* changed since .*"
                                          r"--resume-anyway"):
        RunDir(tmp_path / "run").write_config(values, "test")
    anyway = RunDir(tmp_path / "run", resume_anyway=True)
    anyway.write_config(values, "test")
    assert anyway.resumed and "resuming anyway" in capsys.readouterr().err
    anyway.write_metrics({"recipe": "supervised"})  # its numbers say what they come from
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["warning_data_changed_on_resume"] == "data.train"


def test_the_python_api_refuses_a_resume_on_changed_data_too(tmp_path):
    import mentor.api

    class StopAfterOneEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # as Ctrl-C would, once a checkpoint is saved

    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    data = pathlib.Path(write_npz(tmp_path / "train.npz", x=x, y=np.arange(40) % 2))
    settings = ["train.epochs=3", "train.batch_size=8", "train.steps_per_epoch=2",
                "train.warmup_steps=0", "model.options.width=4", "data.test_fraction=0.25",
                "data.val_fraction=0"]
    args = dict(config="supervised", out=tmp_path / "run", train=str(data),
                set=settings + ["model.name=small_cnn"])
    with pytest.raises(KeyboardInterrupt):
        mentor.api.run(**args, callbacks=[StopAfterOneEpoch()])
    write_npz(data, x=255 - x, y=np.arange(40) % 2)
    with pytest.raises(MentorError, match=r"resume_anyway=True"):
        mentor.api.run(**args)
    result = mentor.api.run(**args, resume_anyway=True)
    assert result.metrics["warning_data_changed_on_resume"] == "data.train"


def test_a_folder_fingerprint_sees_a_file_added_or_removed(tmp_path):
    from mentor.run_folders import fingerprint

    folder = tmp_path / "imgs" / "0"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"1")
    first = fingerprint(str(tmp_path / "imgs"))
    (folder / "b.png").write_bytes(b"2")
    assert fingerprint(str(tmp_path / "imgs")) != first
    (folder / "b.png").unlink()
    assert fingerprint(str(tmp_path / "imgs")) == first


# ---- hints name what exists -----------------------------------------------------------------


def _flags_of(parser) -> set:
    flags = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        if isinstance(action.choices, dict):  # sub-commands
            for sub in action.choices.values():
                flags |= _flags_of(sub)
    return flags


def test_every_flag_a_message_or_help_names_exists():
    """A hint such as "pass --unsafe" must name a flag of some command; and `train`, which
    loads teachers and starting models, takes --unsafe as the other commands do."""
    flags = _flags_of(build_parser())
    source = pathlib.Path(__file__).resolve().parents[1] / "src" / "mentor"
    named = {}
    for file in source.rglob("*.py"):
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", file.read_text()):
            named.setdefault(flag, file.name)
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    for flag in re.findall(r"mentor [a-z]+ [^\n`]*?(--[a-z][a-z0-9-]+)", readme.read_text()):
        named.setdefault(flag, "README.md")
    others = {"--help", "--logdir",  # tensorboard's, in `tensorboard --logdir runs/`
              "--xla"}  # XLA_FLAGS' --xla_force_host_platform_device_count
    missing = {f: where for f, where in named.items() if f not in flags | others}
    assert not missing, f"flags named but not defined: {missing}"
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "--unsafe" in _flags_of(train) and "--resume-anyway" in _flags_of(train)


def test_train_unsafe_lets_the_runs_loaders_load_code(tmp_path):
    from mentor.models import load_model, unsafe_loading

    path = tmp_path / "lambda.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda t: t * 1.0),
                      keras.layers.Flatten(), keras.layers.Dense(3)]).save(path)
    with pytest.raises(MentorError, match="--unsafe"):
        load_model(path)
    with unsafe_loading(True):
        assert load_model(path).output_shape == (None, 3)
    with pytest.raises(MentorError, match="--unsafe"):
        load_model(path)  # only within the command that asked


# ---- SIGTERM ends a run as Ctrl-C does ------------------------------------------------------


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mentor", *TRAIN[:-1], "train.epochs=50", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("epoch-*.npz")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # schedulers repeat theirs: the clean-up still finishes
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"
    assert not [p for p in out.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert not (out / "metrics.json").exists()
