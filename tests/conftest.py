"""Shared fixtures: tiny recipes and stores made by the project's own generator."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from flashmd.data.recipes import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (registered, so its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_recipe() -> Recipe:
    """``data/al-emt-tiny.yaml`` shortened to 40 fs of production (11 frames per trajectory)."""
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    return recipe.model_copy(update={"production_fs": 40.0, "equilibration_fs": 20.0})


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist every worker gets one torch thread, and so do the processes it starts
    (notebook kernels, ``flashmd`` subprocesses): workers already use every core, and torch's
    default of one thread per core on top of that ran 5-28x slower on a 2-core machine."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
