"""Where validation pairs come from: thermostatted validation trajectories are flagged (their
stride pairs carry the thermostat's kicks), and ``scripts/nve_continuations.py`` turns such a
store into NVE stride pairs from the same states."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.train.config import load_train_config
from flashmd.train.validation import validation_set
from tests.conftest import REPO, load_script

nve_continuations = load_script("nve_continuations")


@pytest.fixture(scope="module")
def langevin_store(tmp_path_factory) -> str:
    """The tiny Al recipe with a Langevin production (as held-out references are made)."""
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    data = recipe.model_dump()
    data.update(
        production_fs=80.0,
        equilibration_fs=20.0,
        temperatures_K=(600.0,),
        ensemble={**data["ensemble"], "production": "langevin", "friction_per_fs": 0.01},
    )
    location = str(tmp_path_factory.mktemp("langevin") / "ref.zarr")
    generate(recipe.model_validate(data), location, progress=False)
    return location


def config_validating_on(store: str, tmp_path):
    return load_train_config(
        REPO / "training" / "tiny.yaml",
        store=store,
        validation=0,
        validation_store=store,
        output=str(tmp_path / "run"),
    )


def test_thermostatted_validation_trajectories_are_flagged(langevin_store, tmp_path):
    with pytest.warns(UserWarning, match="ran under langevin: their stride errors include"):
        location, ids = validation_set(config_validating_on(langevin_store, tmp_path))
    assert location == langevin_store and len(ids) == 2


def test_nve_continuations_of_a_langevin_store_validate_without_warning(
    langevin_store, tmp_path, monkeypatch, capsys
):
    out = str(tmp_path / "nve.zarr")
    argv = ["nve_continuations", langevin_store, "-o", out, "--every-fs", "40"]
    monkeypatch.setattr(sys, "argv", [*argv, "--duration-fs", "16", "--quiet"])
    nve_continuations.main()
    assert "6 NVE continuations" in capsys.readouterr().out  # 2 trajectories x frames 0, 40, 80 fs
    store, source = TrajectoryStore.open(out), TrajectoryStore.open(langevin_store)
    first = store.ids()[0]
    reader = store[first]
    assert reader.status == "complete" and reader.n_frames == 3  # 0, 8, 16 fs
    assert reader.attrs["ensemble"]["production"] == "nve"
    origin = reader.attrs["start_from"]
    start = source[origin["trajectory"]].frame(origin["frame"])
    np.testing.assert_array_equal(reader.frame(0)["positions"], start["positions"])
    np.testing.assert_array_equal(reader.frame(0)["momenta"], start["momenta"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, ids = validation_set(config_validating_on(out, tmp_path))
    assert len(ids) == 6
    nve_continuations.main()  # run again: complete, nothing new
    assert "0 frames written" in capsys.readouterr().out
