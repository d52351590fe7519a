"""Test conventions.

- The suite runs on torch by default; tests marked `neutral` run again on JAX in CI with
  `KERAS_BACKEND=jax python -m pytest -m neutral`.
- Tests that need ../shared/data skip with a reason where it is absent (a user's machine).
"""

import os
import pathlib

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (present only on mentor's dev machines)")
    return SHARED_DATA
