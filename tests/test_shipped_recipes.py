"""Every recipe the repository ships (data/, training/) validates: a typo in a field fails here,
not hours into a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flashmd.data.recipes import load_recipe
from flashmd.learn.recipe import load_learn_recipe
from flashmd.train.config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
GENERATION = sorted((ROOT / "data").glob("*.yaml"))
TRAINING = sorted((ROOT / "training").glob("*.yaml"))


@pytest.mark.parametrize("path", GENERATION, ids=lambda p: p.name)
def test_generation_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.systems


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_or_learning_recipe_validates(path):
    if "explore" in yaml.safe_load(path.read_text()):
        recipe = load_learn_recipe(path)
        assert recipe.explore and recipe.select.reference_calls > 0
    else:
        config = load_train_config(path)
        assert config.strides_fs


def test_there_are_recipes_to_check():
    assert len(GENERATION) >= 5 and len(TRAINING) >= 5
