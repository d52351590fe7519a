"""Many processes (hosts): a two-process JAX job on this machine (a localhost coordinator,
CPU collectives over gloo) against one process, and the settings that start such a job.

The two-process tests run in CI's JAX pass (`KERAS_BACKEND=jax pytest -m neutral`): their
reference, one process stepping on the whole batch, is computed in the test's own process,
which must then be JAX's."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from mentor.data.imageset import ImageSet
from mentor.data.pipeline import Batches, PairedBatches
from mentor.errors import MentorError, UsageError
from mentor.runtime import process_request

HERE = pathlib.Path(__file__).parent
SRC = str(HERE.parent / "src")
JOB_ENV = {**os.environ, "KERAS_BACKEND": "jax", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
for name in ("XLA_FLAGS", "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
             "KERAS_DISTRIBUTION_PROCESS_ID", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
             "JAX_PROCESS_ID"):
    JOB_ENV.pop(name, None)  # one CPU device a process, and only the job these tests start
NO_JOB = {}  # an environment that asks for no job
jax_pass = pytest.mark.skipif(keras.backend.backend() != "jax",
                              reason="runs in the JAX pass: its reference is computed here")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start(command, tmp_path, name, env=None):
    """Start `command(process_id)` as processes 0 and 1 of one job, logging to tmp_path."""
    logs = [open(tmp_path / f"{name}-{i}.log", "w+") for i in range(2)]
    return [subprocess.Popen(command(i), env={**JOB_ENV, **(env or {})}, stdout=log,
                             stderr=subprocess.STDOUT)
            for i, log in enumerate(logs)], logs


def stop(started):
    """End a job's processes now (the test failed without them)."""
    for p in started[0]:
        p.kill()
        p.wait()
    for log in started[1]:
        log.close()


def finish(started, timeout=600):
    """Wait for a job's processes; their outputs. Fails with both outputs' ends if either
    process failed."""
    procs, logs = started
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # a process left waiting for a dead partner
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    assert codes == [0, 0], "\n----\n".join(o[-3000:] for o in outputs)
    return outputs


# ----------------------------------------------------------------------------- the job


@pytest.mark.neutral
@jax_pass
def test_each_recipe_on_two_processes_matches_one_process_with_the_same_global_batch(
        tmp_path):
    sys.path.insert(0, str(HERE))
    import two_processes

    port = free_port()
    running = start(lambda i: [sys.executable, str(HERE / "two_processes.py"), str(port),
                               str(i), str(tmp_path)], tmp_path, "step")
    try:  # while the job runs: one process, no distribution, the whole global batch
        reference = {recipe: two_processes.step(recipe, (0, 1))
                     for recipe in two_processes.RECIPES}
    except BaseException:
        stop(running)
        raise
    finish(running)
    shares = [np.load(tmp_path / f"process{i}.npz") for i in range(2)]
    for recipe, ref in reference.items():
        got = {k.split("/", 1)[1]: v for k, v in shares[0].items() if k.startswith(recipe + "/")}
        other = {k.split("/", 1)[1]: v for k, v in shares[1].items()
                 if k.startswith(recipe + "/")}
        assert int(got["devices"]) == 2 and int(got["variable_devices"]) == 2, recipe
        assert not bool(got["all_addressable"]), (recipe, "the variables live in one process")
        assert int(got["local_rows"]) == int(ref["local_rows"]) // 2, recipe  # half the batch
        assert np.isfinite(ref["loss"]) and ref["loss"] > 0, recipe
        np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-5, err_msg=recipe)
        np.testing.assert_allclose(other["loss"], ref["loss"], rtol=1e-5, err_msg=recipe)
        assert float(ref["moved"]) > 1e-4, (recipe, "the step changed nothing: vacuous")
        weights = sorted(k for k in ref if k.startswith("weight"))
        assert weights and set(weights) == {k for k in got if k.startswith("weight")}, recipe
        for key in weights:
            np.testing.assert_allclose(got[key], ref[key], atol=1e-5, err_msg=(recipe, key))
        # predictions: every image once, in order, in both processes (7: padded, then cut)
        assert got["logits"].shape == ref["logits"].shape == (7, 4), recipe
        np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-5, err_msg=recipe)
        np.testing.assert_array_equal(other["logits"], got["logits"])
        # validation: 6 of the 7 images kept (a multiple of 2 devices), 3 in each process
        np.testing.assert_array_equal(np.concatenate([got["validation"], other["validation"]]),
                                      ref["validation"][:6])
        assert len(got["validation"]) == 3, recipe


TRAIN = ["train", "demo", *[a for kv in (
    "data.train=embedded:digits", "train.epochs=2", "train.steps_per_epoch=2",
    "train.warmup_steps=1") for a in ("--set", kv)]]


def weights(path):
    return keras.saving.load_model(path).get_weights()


@pytest.mark.neutral
@jax_pass
def test_a_run_on_two_processes_writes_its_directory_once_and_resumes(tmp_path):
    """`mentor train` as a two-process job: one run directory, written by process 0 alone
    (one row per epoch in history.csv, not one per process); then the run is cut back to
    its first epoch's checkpoint, as if the job had been killed there, and the same command
    resumes both processes from it to the same final weights."""
    out = tmp_path / "run"
    # The resumed job reuses the first one's compiled steps: 24 s instead of 58 s here.
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

    def command(port):
        return lambda i: [sys.executable, "-m", "mentor", *TRAIN, "--out", str(out),
                          "--coordinator", f"localhost:{port}", "--num-processes", "2",
                          "--process-id", str(i)]

    running = start(command(free_port()), tmp_path, "train", cache)
    finish(running)
    procs = running[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["devices"] == 2 and metrics["steps"] == 4
    assert json.loads((out / "status.json").read_text())["pid"] == procs[0].pid
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2, history  # a header and one row per epoch: written once
    names = {p.name for p in out.rglob("*")}
    assert {"model.keras", "report.html", "curves.png", "epoch-0001.npz",
            "epoch-0002.npz"} <= names
    assert not [n for n in names if ".partial" in n or n == ".write-test"], names
    straight = weights(out / "model.keras")

    # Killed after epoch 1: its checkpoint and history row are all that is left.
    for name in ("metrics.json", "model.keras", "report.html", "curves.png"):
        (out / name).unlink()
    (out / "checkpoints" / "epoch-0002.npz").unlink()
    (out / "history.csv").write_text("\n".join(history[:2]) + "\n")
    shutil.rmtree(out / "tensorboard")

    outputs = finish(start(command(free_port()), tmp_path, "resume", cache))
    for output in outputs:  # both processes read process 0's checkpoint
        assert "checkpoints/epoch-0001.npz: 1 epochs done, optimizer step 2" in output, \
            output[-2000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 2
    for a, b in zip(straight, weights(out / "model.keras"), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- settings


def _images(n, name="a"):
    x = np.arange(n, dtype="uint8").reshape(n, 1, 1, 1)
    return ImageSet(x, np.arange(n) % 2, ["even", "odd"], name)


@pytest.mark.neutral
def test_each_process_gets_its_consecutive_share_of_every_global_batch():
    data, target = _images(10), _images(30, "t")
    for step in range(4):
        whole = Batches(data, 4, steps=4, seed=3)[step]
        shares = [Batches(data, 4, steps=4, seed=3, shard=(i, 2))[step] for i in range(2)]
        np.testing.assert_array_equal(np.concatenate([s[0] for s in shares]), whole[0])
        np.testing.assert_array_equal(np.concatenate([s[1] for s in shares]), whole[1])
        assert len(shares[0][1]) == 2
        whole = PairedBatches(data, target, 4, ratio=3, steps=4, seed=3)[step]
        shares = [PairedBatches(data, target, 4, ratio=3, steps=4, seed=3, shard=(i, 2))[step]
                  for i in range(2)]
        for key in ("source", "target"):
            np.testing.assert_array_equal(
                np.concatenate([s[0][key] for s in shares]), whole[0][key])
        assert len(shares[1][0]["target"]) == 6  # 3 × 4 / 2
    # distillation's batches carry which labels may be used: the flags follow the images
    from mentor.recipes.distill import LabeledBatches

    mask = np.arange(10) % 3 == 0
    for i in range(2):
        x, y = LabeledBatches(data, mask, 4, steps=4, seed=3, shard=(i, 2))[1]
        np.testing.assert_array_equal(x["labeled"], mask[x["images"][:, 0, 0, 0]])
        assert len(y) == 2
    with pytest.raises(MentorError, match="global batch 5 must split evenly into 2"):
        Batches(data, 5, steps=4, shard=(0, 2))


@pytest.mark.neutral
def test_a_job_is_read_from_flags_then_keras_then_jax_variables(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert process_request(environ=NO_JOB) is None
    assert process_request("10.0.0.1:1234", 2, 1, environ=NO_JOB) == {
        "coordinator": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    keras_env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:2345",
                 "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1",
                 "JAX_COORDINATOR_ADDRESS": "10.9.9.9:1", "JAX_PROCESS_ID": "0"}
    assert process_request(environ=keras_env) == {  # Keras's list: its first address leads
        "coordinator": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    assert process_request(process_id=0, environ=keras_env)["process_id"] == 0  # flag first
    jax_env = {"JAX_COORDINATOR_ADDRESS": "h:9", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert process_request(environ=jax_env) == {
        "coordinator": "h:9", "num_processes": 4, "process_id": 3}
    assert process_request("h:9", 1, 0, environ=NO_JOB) is None  # one process: no job
    assert process_request("auto", environ=NO_JOB)["coordinator"] == "auto"


@pytest.mark.neutral
@pytest.mark.parametrize("args, message", [
    (("h:9", None, 0), "num_processes is missing \\(--num-processes or "
                       "KERAS_DISTRIBUTION_NUM_PROCESSES / JAX_NUM_PROCESSES\\)"),
    (("h", 2, 0), "must be HOST:PORT"),
    (("h:9", 2, 2), "--process-id = 2 is not a process of a 2-process job: give 0 … 1"),
    (("a:1,b:2,c:3", 2, 0), "lists 3 addresses but the job has 2 processes"),
])
def test_an_incomplete_or_inconsistent_job_is_refused_with_the_fix(monkeypatch, args, message):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(UsageError, match=message):
        process_request(*args, environ=NO_JOB)
    with pytest.raises(UsageError, match="must be a whole number"):
        process_request(environ={"JAX_COORDINATOR_ADDRESS": "h:9", "JAX_NUM_PROCESSES": "two",
                                 "JAX_PROCESS_ID": "0"})


@pytest.mark.neutral
def test_a_job_off_jax_exits_2_naming_the_backend(monkeypatch, tmp_path, capsys):
    from mentor.cli import main

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    code = main([*TRAIN, "--out", str(tmp_path / "run"), "--coordinator", "localhost:1",
                 "--num-processes", "2", "--process-id", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "runs on the JAX backend" in err and "KERAS_BACKEND=jax" in err, err
    assert not (tmp_path / "run").exists()  # refused before anything was written
