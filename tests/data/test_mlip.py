"""Universal MLIPs as named reference calculators: a short generation with CHGNet records the
weights' SHA-256; SevenNet-0 answers; bad parameters and a missing package get clear errors."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import yaml
import zarr
from ase.build import bulk

from flashmd.data import mlip
from flashmd.data.calculators import make_calculator
from flashmd.data.generate import generate
from flashmd.data.inspect import format_store
from flashmd.data.recipes import CalculatorSpec, RecipeError, parse_recipe
from flashmd.data.store import StoreError, TrajectoryStore

RECIPE = """
name: cu-chgnet-tiny
seed: 0
calculator: {name: chgnet}
systems:
  - {name: cu, builder: crystal, element: Cu, lattice: fcc, supercell: [1, 1, 1]}
temperatures_K: [300]
ensemble: {equilibration: langevin, production: nve, friction_per_fs: 0.02}
timestep_fs: 2.0
sample_interval_fs: 4.0
equilibration_fs: 4
production_fs: 8
"""


def test_a_chgnet_store_records_the_weights(tmp_path):
    pytest.importorskip("chgnet")
    location = str(tmp_path / "chgnet.zarr")
    generate(parse_recipe(yaml.safe_load(RECIPE)), location, progress=False)
    store = TrajectoryStore.open(location)
    (traj_id,) = store.ids()
    reader = store[traj_id]
    calculator = reader.attrs["calculator"]
    path = mlip.MLIPS["chgnet"].weights("0.3.0")
    assert calculator["name"] == "chgnet" and calculator["package"] == "chgnet"
    assert calculator["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert calculator["model"] == "0.3.0" and reader.n_frames == 3
    energies = reader.read()["energy"]
    assert np.isfinite(energies).all() and np.ptp(energies) > 0
    # another chgnet release's weights: resuming the store is refused before any work
    group = zarr.open_group(location, mode="r+")[f"trajectories/{traj_id}"]
    group.attrs["calculator"] = {**calculator, "weights_sha256": "0" * 64, "version": "0.2.0"}
    group.attrs["status"] = "partial"
    with pytest.raises(
        StoreError, match=r"written with chgnet weights .* \(sha256 000000000000, chgnet 0.2.0\)"
    ):
        generate(parse_recipe(yaml.safe_load(RECIPE)), location, progress=False)
    assert TrajectoryStore.open(location)[traj_id].n_frames == 3


def test_sevennet_0_gives_energy_and_forces():
    pytest.importorskip("sevenn")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.calc = make_calculator(CalculatorSpec(name="sevennet-0"))
    forces = atoms.get_forces()
    assert np.isfinite(atoms.get_potential_energy()) and forces.shape == (4, 3)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-4)  # no net force


def test_bad_parameters_and_a_missing_package_say_what_to_do(monkeypatch):
    with pytest.raises(RecipeError, match="takes params model and device"):
        make_calculator(CalculatorSpec(name="chgnet", params={"modle": "0.3.0"}))

    def missing(model, device):
        raise ImportError("no module named chgnet")

    monkeypatch.setitem(mlip.MLIPS, "chgnet", replace(mlip.MLIPS["chgnet"], build=missing))
    with pytest.raises(RecipeError, match=r"pip install 'flashmd\[mlip\]'"):
        make_calculator(CalculatorSpec(name="chgnet"))


def test_bench_calculators_prints_cost_ratios_and_says_what_is_missing(monkeypatch):
    from flashmd.bench.generator import bench_calculators

    def missing(model, device):
        raise ImportError("no module named sevenn")

    monkeypatch.setitem(mlip.MLIPS, "sevennet-0", replace(mlip.MLIPS["sevennet-0"], build=missing))
    table = bench_calculators(("asap3-emt", "emt", "sevennet-0"), "Cu", (1,), repeats=1)
    lines = table.splitlines()
    assert lines[1].split() == [
        "calculator",
        "atoms",
        "s",
        "per",
        "call",
        "steps",
        "per",
        "s",
        "x",
        "asap3-emt",
    ]
    emt = next(line.split() for line in lines if line.startswith("emt "))
    assert emt[1] == "4" and float(emt[-1]) > 1  # ASE's EMT is slower than asap3's
    assert any("not available" in line and "flashmd[mlip]" in line for line in lines)


@pytest.mark.parametrize("name", ["sevennet-0", "chgnet"])
def test_an_element_the_mlip_was_not_trained_on_is_refused_before_any_work(tmp_path, name):
    pytest.importorskip(mlip.MLIPS[name].package)
    recipe = yaml.safe_load(RECIPE)
    recipe["calculator"] = {"name": name}
    recipe["systems"] = [
        {"name": "es", "builder": "crystal", "element": "Es", "lattice": "fcc", "a": 4.0}
    ]
    location = tmp_path / "es.zarr"
    with pytest.raises(RecipeError, match=rf"systems.0: calculator {name} was not trained on Es"):
        generate(parse_recipe(recipe), str(location), progress=False)
    assert not location.exists()


def test_an_interrupted_mlip_equilibration_resumes_exactly(tmp_path, monkeypatch):
    """SevenNet-0 equilibrations can take many minutes: their state is committed with the
    frames' commits, and a run stopped in the middle continues from it to the very trajectory
    an uninterrupted run writes."""
    pytest.importorskip("sevenn")
    from flashmd.data import reference

    recipe = yaml.safe_load(RECIPE)
    recipe.update(calculator={"name": "sevennet-0"}, equilibration_fs=24, production_fs=8)
    recipe = parse_recipe(recipe)
    generate(recipe, str(tmp_path / "whole.zarr"), progress=False)

    make_dynamics, steps, stop_at = reference.make_dynamics, [], 0

    def stopping(*args, **kwargs):
        dynamics = make_dynamics(*args, **kwargs)
        step = dynamics.step

        def counted():
            steps.append(1)
            if len(steps) == stop_at:
                raise KeyboardInterrupt
            step()

        dynamics.step = counted
        return dynamics

    monkeypatch.setattr(reference, "make_dynamics", stopping)
    location = str(tmp_path / "resumed.zarr")
    stop_at = 7  # the 7th of 12 equilibration steps
    with pytest.raises(KeyboardInterrupt):
        generate(recipe, location, progress=False, commit_interval_s=0.0)
    (partial,) = TrajectoryStore.open(location).info()
    state = TrajectoryStore.open(location)[partial.id].attrs["equilibration"]
    assert partial.n_frames == 0 and state["steps_taken"] == 6
    assert "partial (equilibration step 6)" in format_store(location)  # flashmd inspect
    steps.clear()
    stop_at = 0
    generate(recipe, location, progress=False)
    assert len(steps) == 6 + 4  # the equilibration's last 6 steps, then 4 production steps
    whole, resumed = TrajectoryStore.open(tmp_path / "whole.zarr"), TrajectoryStore.open(location)
    (traj_id,) = whole.ids()
    for key, values in whole[traj_id].read().items():
        np.testing.assert_array_equal(resumed[traj_id].read()[key], values, err_msg=key)
    assert resumed[traj_id].attrs["equilibration"] is None
