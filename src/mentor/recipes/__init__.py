"""Recipes: one file each, its views, its loss (a core.trainer.Trainer) and its `run`.

The recipe names are the keys of mentor.config.RECIPES, the one registry; recipe NAME lives
in mentor.recipes.NAME and exposes run(config, out, name=...) -> metrics dict.
"""

from __future__ import annotations

import importlib


def get_recipe(name: str):
    from mentor.config import RECIPES

    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return importlib.import_module(f"mentor.recipes.{name}")
