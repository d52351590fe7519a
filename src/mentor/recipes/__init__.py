"""The recipes, and the one registry of them.

A recipe is one module, mentor/recipes/NAME.py, that owns everything about itself: its
config dataclass and the rules between its keys, its views, its loss (a core.trainer.Trainer),
its part of a run (`train`), and at its end `RECIPE = Recipe(...)` (core.recipe): the model
file it delivers, how a finished run is scored, its verdict sentence, headline, glossary and
demo part. The CLI, `evaluate`, the report, the demo, the API and the tests ask this
registry; adding a recipe is its module and its name below.
"""

from __future__ import annotations

import importlib

from mentor.config import apply_overrides, build_config, read_toml
from mentor.core.recipe import Recipe
from mentor.errors import UsageError

NAMES = ("supervised", "consistency", "distill", "adamatch", "augmix")


def get(name: str) -> Recipe:
    """The recipe called `name` (imported on first use: `mentor --help` stays quick)."""
    if name not in NAMES:
        raise UsageError(f"unknown recipe {name!r}; recipes: {', '.join(NAMES)}.")
    return importlib.import_module(f"mentor.recipes.{name}").RECIPE


def every() -> list[Recipe]:
    return [get(name) for name in NAMES]


def from_dict(values: dict):
    """The config its `recipe` key names, built from a dict of TOML values and checked."""
    if not isinstance(values, dict):
        raise UsageError(f"a config is a table of keys (a dict), got {type(values).__name__}.")
    recipe = values.get("recipe")
    if recipe not in NAMES:
        raise UsageError(
            f"config must name its recipe with recipe = \"…\", one of {', '.join(NAMES)}; "
            f"got {recipe!r}."
        )
    return build_config(get(recipe).config, values)


def load_config(source, overrides=()):
    """A preset name or TOML path plus `key=value` overrides → (config, name)."""
    values, name, _ = read_toml(source)
    return from_dict(apply_overrides(values, list(overrides))), name


def say(metrics: dict) -> str:
    """The verdict sentence of any run's metrics ("" when no recipe claims them)."""
    recipe = metrics.get("recipe")
    if recipe == "robustness":  # `mentor robustness`, which is a measurement, not a recipe
        from mentor.robustness import say as robustness_says

        return robustness_says(metrics)
    return get(recipe).say(metrics) if recipe in NAMES else ""
