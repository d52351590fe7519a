"""Runs that die and runs that repeat: SIGKILL mid-run then resume, and determinism."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

ARGS = ["train", "demo", "--set", "data.train=embedded:digits", "--set", "train.epochs=6",
        "--set", "train.steps_per_epoch=8", "--set", "train.warmup_steps=4",
        "--set", "train.ema=0.9"]


def mentor(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mentor", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def weights(path):
    return keras.saving.load_model(path).get_weights()


def test_sigkill_mid_run_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    straight = mentor(*ARGS, "--out", str(tmp_path / "straight"))
    assert straight.wait(timeout=600) == 0, straight.stdout.read()

    killed = mentor(*ARGS, "--out", str(tmp_path / "killed"))
    third = tmp_path / "killed" / "checkpoints" / "epoch-0003.npz"
    deadline = time.time() + 600
    while not third.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # no clean-up of any kind: a pre-empted machine
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = mentor(*ARGS, "--out", str(tmp_path / "killed"))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert "resuming from" in out
    for a, b in zip(weights(tmp_path / "straight" / "model.keras"),
                    weights(tmp_path / "killed" / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text())
              for d in ("straight", "killed"))
    assert m1["test_acc"] == m2["test_acc"] and m1["steps"] == m2["steps"] == 48


def test_two_runs_with_the_same_seed_give_identical_metrics(tmp_path):
    from mentor.config import load_config
    from mentor.recipes import supervised

    results = []
    for run in ("a", "b"):
        config, _ = load_config("demo", [a for a in ARGS[2:] if a != "--set"])
        results.append(supervised.run(config, tmp_path / run))
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
