"""The registry is the one list of recipes: every recipe in it declares itself whole, and
the suite's per-recipe tests cover every one of them. A recipe added without its smoke
case, its multi-device and multi-process step, an evaluate path or a verdict fails here."""

import dataclasses
import pathlib
import sys

import pytest

from mentor import recipes
from mentor.recipes import from_dict

pytestmark = pytest.mark.neutral

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(HERE))
    import test_smoke
    import two_devices
    import two_processes

    return test_smoke, two_devices, two_processes


@pytest.mark.parametrize("name", recipes.NAMES)
def test_each_recipe_declares_itself_whole(name):
    recipe = recipes.get(name)
    assert recipe.name == name
    config = from_dict({"recipe": name, **({"mode": "ssl", "labels_per_class": 1}
                                           if name == "adamatch" else {})})
    assert isinstance(config, recipe.config) and config.recipe == name
    assert {"data", "model", "train", "runtime", "seed"} <= {
        f.name for f in dataclasses.fields(recipe.config)}
    assert recipe.delivers.endswith(".keras") and recipe.figure.endswith(".png")
    assert callable(recipe.train) and callable(recipe.verdict) and callable(recipe.headline)


@pytest.mark.parametrize("name", recipes.NAMES)
def test_each_recipe_is_covered_by_the_per_recipe_tests(name, suite):
    test_smoke, two_devices, two_processes = suite
    assert name in test_smoke.CASES, "no smoke run (tests/test_smoke.py CASES)"
    assert name in test_smoke.VERDICT_KEYS, "no verdict check (tests/test_smoke.py)"
    assert name in test_smoke.KEY_FIGURES, "no figure check (tests/test_smoke.py)"
    assert name in two_devices.TRAINERS, "no multi-device step (tests/two_devices.py)"
    assert name in two_processes.RECIPES, "no multi-process step (tests/two_processes.py)"


def test_the_registry_and_the_modules_agree():
    modules = sorted(p.stem for p in (pathlib.Path(recipes.__file__).parent).glob("*.py")
                     if p.stem != "__init__")
    assert sorted(recipes.NAMES) == modules
    with pytest.raises(Exception, match="unknown recipe 'fixmatch'"):
        recipes.get("fixmatch")
    with pytest.raises(Exception, match="one of supervised"):
        from_dict({"recipe": "fixmatch"})
