"""Runs that die and runs that repeat: SIGKILL mid-run then resume, the run status, a full
disk, and determinism."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import write_digit_folder

from mentor.cli import main
from mentor.run_folders import read_status

ARGS = ["train", "demo", "--set", "data.train=embedded:digits", "--set", "train.epochs=6",
        "--set", "train.steps_per_epoch=8", "--set", "train.warmup_steps=4",
        "--set", "train.ema=0.9"]
# AdaMatch UDA from UCI digits to MNIST at 16 px: 6 epochs × 5 steps, no baseline
ADAMATCH = ["train", "demo-adamatch", *[a for kv in (
    "data.image_size=16", "train.epochs=6", "train.steps_per_epoch=5", "train.batch_size=16",
    "baseline.enabled=false", "target.train=embedded:mnist5k") for a in ("--set", kv)]]


def mentor(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mentor", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def weights(path):
    return keras.saving.load_model(path).get_weights()


def wait_for(path, process):
    deadline = time.time() + 600
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def kill_then_resume(args, tmp_path, stage=""):
    """Run `args` straight into tmp/straight; run it again into tmp/killed, SIGKILL it once
    its third epoch's checkpoint exists, and resume it there with the same command."""
    straight = mentor(*args, "--out", str(tmp_path / "straight"))
    assert straight.wait(timeout=600) == 0, straight.stdout.read()

    killed = mentor(*args, "--out", str(tmp_path / "killed"))
    wait_for(tmp_path / "killed" / "checkpoints" / stage / "epoch-0003.npz", killed)
    killed.send_signal(signal.SIGSTOP)  # held mid-run, alive, while we look at it
    # While it lives, a second process may not write into the same directory.
    second = mentor(*args, "--out", str(tmp_path / "killed"))
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 1 and "being written by another mentor process" in out, out
    assert read_status(tmp_path / "killed")["state"] == "running"
    killed.send_signal(signal.SIGKILL)  # no clean-up of any kind: a pre-empted machine
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    status = read_status(tmp_path / "killed")
    assert status["state"] == "interrupted" and status["epoch"] >= 3, status

    resumed = mentor(*args, "--out", str(tmp_path / "killed"))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert "resuming from" in out
    assert read_status(tmp_path / "killed")["state"] == "completed"
    for a, b in zip(weights(tmp_path / "straight" / "model.keras"),
                    weights(tmp_path / "killed" / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return [json.loads((tmp_path / d / "metrics.json").read_text())
            for d in ("straight", "killed")]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    m1, m2 = kill_then_resume(ARGS, tmp_path)
    assert m1["test_acc"] == m2["test_acc"] and m1["steps"] == m2["steps"] == 48


@pytest.mark.slow
def test_adamatch_killed_and_resumed_ends_with_the_same_weights_and_state(tmp_path):
    """Its target, 500 MNIST digits, streamed from a folder by two Grain worker processes:
    the resumed run's loader starts at the checkpoint's global step, and the killed run's
    workers do not outlive it."""
    target = write_digit_folder(tmp_path / "mnist", per_class=50, size=28,
                                source="embedded:mnist5k")
    args = [*ADAMATCH, *[a for kv in (f"target.train={target}", "data.stream=always",
                                      "data.workers=2") for a in ("--set", kv)]]
    m1, m2 = kill_then_resume(args, tmp_path)
    assert m1["target_acc"] == m2["target_acc"] and m1["steps"] == m2["steps"] == 30
    # The whole final state: model, EMA, distribution-alignment averages and window, the
    # optimizer's momentum, the augmenters' random state.
    with np.load(tmp_path / "straight" / "checkpoints" / "epoch-0006.npz") as a, \
            np.load(tmp_path / "killed" / "checkpoints" / "epoch-0006.npz") as b:
        assert a.files == b.files and len(a.files) > 20
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    deadline = time.time() + 10  # workers look for their parent once a second
    while time.time() < deadline and _orphans():
        time.sleep(0.5)
    assert not _orphans()


def _orphans() -> list[int]:
    """Loader workers re-parented to init: spawned children of a killed mentor run."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if "spawn_main" in line and line.split()[1] == "1"]


def test_two_runs_with_the_same_seed_give_identical_metrics(tmp_path):
    from mentor.recipes import load_config, supervised

    results = []
    for run in ("a", "b"):
        config, _ = load_config("demo", [a for a in ARGS[2:] if a != "--set"])
        results.append(supervised.RECIPE.run(config, tmp_path / run))
    for key in results[0]:
        if key != "seconds":
            assert results[0][key] == results[1][key], key


def test_a_killed_run_leaves_no_file_that_looks_complete(tmp_path):
    run = mentor(*ARGS, "--out", str(tmp_path / "run"))
    first = tmp_path / "run" / "checkpoints" / "epoch-0001.npz"
    deadline = time.time() + 600
    while not first.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    names = {p.name for p in (tmp_path / "run").rglob("*")}
    assert "metrics.json" not in names and "model.keras" not in names
    assert "config.toml" in names  # …while the directory says what it was running


def test_status_says_failed_with_the_message_and_a_corrected_command_starts_afresh(
        tmp_path, capsys):
    out = str(tmp_path / "run")
    bad = [*ARGS, "--set", "train.batch_size=100000", "--out", out]
    assert main(bad) == 1  # the data cannot fill one batch: a run-time failure
    status = read_status(out)
    assert status["state"] == "failed" and "batch_size" in status["message"]
    assert main(["status", out]) == 1
    assert "failed: train.batch_size = 100000" in capsys.readouterr().out
    # Nothing was saved, so there is nothing to resume: the fixed command just runs.
    assert main([*ARGS, "--set", "train.epochs=1", "--out", out]) == 0
    assert read_status(out)["state"] == "completed"
    assert main(["status", str(tmp_path)]) == 0  # a parent folder lists its runs
    assert "completed, model epoch 1/1" in capsys.readouterr().out


def test_a_nearly_full_disk_is_reported_before_training(tmp_path, capsys, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 * 2**20))
    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "has only 10 MiB free" in err and "--out on another disk" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_checkpoints_that_would_not_fit_are_reported_before_training(tmp_path, capsys,
                                                                      monkeypatch):
    import shutil

    import mentor.run_folders

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(mentor.run_folders, "MIN_FREE_BYTES", 0)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100_000))
    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "has 0 MiB free but 1 checkpoints of this run" not in err  # keep is 2 in demo
    assert "MiB free but 2 checkpoints of this run" in err and "need about" in err, err
    assert not list((tmp_path / "run").rglob("*.npz"))


def test_a_disk_that_fills_up_mid_run_gets_a_plain_message_and_no_partial_file(
        tmp_path, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and "resumes from the newest complete checkpoint" in err
    files = {p.name for p in (tmp_path / "run").rglob("*")}
    assert not any("partial" in f for f in files) and "metrics.json" not in files, files
    assert read_status(tmp_path / "run")["state"] == "failed"
