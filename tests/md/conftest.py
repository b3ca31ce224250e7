"""Fixtures of the rollout tests that need a reference store and a model checkpoint."""

from __future__ import annotations

import pytest
from md_testkit import tiny_model

from flashmd.data.generate import generate
from flashmd.models.io import save_checkpoint


@pytest.fixture
def reference_and_model(tmp_path, tiny_recipe) -> tuple[str, str]:
    """(the tiny Al recipe's reference store, a checkpoint of ``tiny_model``) in ``tmp_path``."""
    reference = str(tmp_path / "ref.zarr")
    generate(tiny_recipe, reference, progress=False)
    return reference, str(save_checkpoint(tiny_model(), tmp_path / "tiny.pt"))
