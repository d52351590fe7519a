"""Recipes: one file each, a keras.Model subclass overriding compute_loss plus a `run`."""

from __future__ import annotations

import importlib

# recipe name → module; a module exposes run(config, out, name=...) -> metrics dict
RECIPES = {"supervised": "mentor.recipes.supervised",
           "consistency": "mentor.recipes.consistency",
           "distill": "mentor.recipes.distill",
           "adamatch": "mentor.recipes.adamatch"}


def get_recipe(name: str):
    return importlib.import_module(RECIPES[name])
