"""``scripts/nve_check.py``: exact NVE from a rollout's first frame is the fair temperature
reference for an NVE rollout (a thermostatted run's mean is the canonical one)."""

from __future__ import annotations

import sys

import numpy as np

from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe
from flashmd.data.store import TrajectoryStore
from tests.conftest import REPO, load_script

nve_check = load_script("nve_check")


def test_exact_nve_from_a_reference_nve_trajectory_reproduces_its_temperatures(
    tmp_path, monkeypatch, capsys
):
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 80.0, "equilibration_fs": 20.0, "temperatures_K": (900.0,)}
    )
    store = str(tmp_path / "ref.zarr")
    generate(recipe, store, progress=False)  # NVE production: its own exact NVE
    traj_id = TrajectoryStore.open(store).ids()[0]
    exact = nve_check.exact_nve_temperatures(store, traj_id, store)
    own = nve_check.observables(TrajectoryStore.open(store)[traj_id], 0)
    assert set(exact) == {"all", "Al", "ν"}
    np.testing.assert_allclose(exact["all"], own["all"], rtol=1e-6)
    np.testing.assert_allclose(exact["ν"], own["ν"], rtol=1e-6)
    assert 1.0 < own["ν"] < 15.0  # THz: Al vibrates at a few THz
    again = nve_check.exact_nve_temperatures(store, traj_id, store)  # stored: not run twice
    assert again == exact
    monkeypatch.setattr(sys, "argv", ["nve_check", store, "--exact-nve", store])
    nve_check.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {store}")]
    assert len(rows) == 2  # both trajectories of the store, each against its own exact NVE
    assert all("(+0.000)" in row or "(-0.000)" in row for row in rows)
