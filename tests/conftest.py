"""Shared fixtures: tiny recipes and stores made by the project's own generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashmd.data.recipes import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_recipe() -> Recipe:
    """``data/al-emt-tiny.yaml`` shortened to 40 fs of production (11 frames per trajectory)."""
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    return recipe.model_copy(update={"production_fs": 40.0, "equilibration_fs": 20.0})
