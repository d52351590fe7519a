"""The Python API's door: the README's example runs as written on a torch-only install,
every argument of the wrong kind gets one message naming it, and a run made from Python
objects is a self-contained folder the command line can evaluate and predict with."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import write_npz

import mentor.api
from mentor.cli import main
from mentor.config import SupervisedConfig
from mentor.errors import MentorError

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A torch-only install: tensorflow and tensorboard are not found (find_spec says None, as
# for a package never installed), whatever this environment holds.
WITHOUT_TENSORFLOW = '''
import sys
from importlib.machinery import PathFinder


class _Without:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "tensorboard"):
            return None
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_Without if f is PathFinder else f for f in sys.meta_path]
'''


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


@pytest.mark.torch_once
def test_readme_python_example_runs_verbatim_without_tensorflow(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_TENSORFLOW)
    (tmp_path / "example.py").write_text(readme_python_example())
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT / "src")]
                                        + ([env["PYTHONPATH"]] if "PYTHONPATH" in env else []))
    check = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                            "print(u.find_spec('tensorflow'))"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "None", check.stderr  # the emulation holds
    result = subprocess.run([sys.executable, "example.py"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "mine" / "metrics.json").is_file()


# ----------------------------------------------------------------------------- arguments


def tiny(classes=3):
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                             keras.layers.Flatten(), keras.layers.Dense(classes)])


def arrays(n=48, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), np.arange(n) % classes


QUICK = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=16",
         "train.warmup_steps=0", "augment.kind=\"none\""]


@pytest.mark.parametrize("kwargs, words", [
    ({"config": 3}, ["config takes", "int 3"]),
    ({"config": ["supervised"]}, ["config takes", "list"]),
    ({"config": SupervisedConfig}, ["config takes", "the class SupervisedConfig"]),
    ({"config": "supervised", "set": 5}, ["set takes a list", "int 5"]),
    ({"config": "supervised", "set": [("train.epochs", 1)]}, ["set takes", "tuple"]),
    ({"config": "supervised", "set": {"train.epochs": 1}}, ["set takes a list", "dict"]),
    ({"config": "supervised", "out": 7}, ["out takes a folder path", "int 7"]),
    ({"config": "supervised", "name": 7}, ["name takes a string"]),
    ({"config": "supervised", "callbacks": "tb"}, ["callbacks takes", "str 'tb'"]),
])
def test_arguments_of_the_wrong_kind_are_named(kwargs, words, tmp_path):
    kwargs = {"out": tmp_path / "run", **kwargs}
    with pytest.raises(MentorError) as caught:
        mentor.api.run(**kwargs)
    for word in words:
        assert word in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused at the door, before any work


@pytest.mark.torch_once
@pytest.mark.parametrize("overrides", ["train.epochs=1", None, ("train.epochs=1",)])
def test_set_takes_one_string_none_or_a_tuple(overrides, tmp_path):
    config = {"recipe": "supervised", "train": {"epochs": 1, "steps_per_epoch": 2,
                                               "batch_size": 16, "warmup_steps": 0},
              "augment": {"kind": "none"}}
    result = mentor.api.run(config, pathlib.Path(tmp_path / "run"), model=tiny(),
                            train=arrays(), set=overrides)
    assert result.metrics["steps"] == 2


def test_one_string_is_one_override():
    from mentor.api import _overrides

    assert _overrides("train.epochs=3") == ["train.epochs=3"]
    assert _overrides(None) == [] and _overrides(("a=1", "b=2")) == ["a=1", "b=2"]


# ----------------------------------------------------------------------------- finished runs


@pytest.mark.torch_once
def test_a_run_from_python_objects_is_evaluated_and_predicted_without_them(
        tmp_path, capsys, monkeypatch):
    import json

    import mentor.objects

    x, y = arrays(60)
    result = mentor.api.run("supervised", tmp_path / "run", model=tiny(), train=(x, y),
                            test=(x[:30], y[:30]), set=QUICK)
    run = str(tmp_path / "run")
    assert "object:" in (tmp_path / "run" / "config.toml").read_text()
    data = write_npz(tmp_path / "test.npz", x=x[:30], y=y[:30])
    monkeypatch.setattr(mentor.objects, "_objects", {})  # as in a new process
    assert main(["evaluate", run, "--data", data, "--json", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["test_acc"] == pytest.approx(result.metrics["test_acc"])
    assert main(["predict", run, data, "--out", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {result.metrics['test_acc']:.4f}" in out
