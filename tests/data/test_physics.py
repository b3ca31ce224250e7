"""Physical sanity of the reference generator on Al EMT (asap3)."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.data.generate import generate
from flashmd.data.store import TrajectoryStore
from flashmd.units import KB


def kinetic_energy(momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """(n_frames,) kinetic energy in eV from (n_frames, n_atoms, 3) momenta."""
    return 0.5 * ((momenta**2).sum(-1) / masses).sum(-1)


def test_nve_at_1fs_conserves_energy(tiny_recipe, tmp_path):
    recipe = tiny_recipe.model_copy(
        update={
            "systems": tiny_recipe.systems[:1],
            "temperatures_K": (900.0,),
            "timestep_fs": 1.0,
            "sample_interval_fs": 10.0,
            "equilibration_fs": 200.0,
            "production_fs": 5000.0,
            "store_forces": False,
        }
    )
    generate(recipe, str(tmp_path / "nve.zarr"), progress=False)
    store = TrajectoryStore.open(tmp_path / "nve.zarr")
    reader = store[store.ids()[0]]
    data = reader.read()
    total = data["energy"] + kinetic_energy(data["momenta"], reader.masses)
    slope_eV_per_fs = np.polyfit(data["time_fs"], total, 1)[0]
    drift = abs(slope_eV_per_fs) * 1000 / reader.n_atoms
    assert drift < 1e-4, f"NVE drift {drift:.2e} eV/atom/ps"
    momentum = data["momenta"].sum(axis=1)
    np.testing.assert_allclose(momentum, 0.0, atol=1e-10)


def test_langevin_reaches_the_target_temperature(tiny_recipe, tmp_path):
    target = 700.0
    recipe = tiny_recipe.model_copy(
        update={
            "systems": tiny_recipe.systems[:1],
            "temperatures_K": (target,),
            "replicas": 2,
            "ensemble": tiny_recipe.ensemble.model_copy(update={"production": "langevin"}),
            "equilibration_fs": 500.0,
            "production_fs": 4000.0,
            "sample_interval_fs": 8.0,
            "store_forces": False,
        }
    )
    generate(recipe, str(tmp_path / "nvt.zarr"), progress=False)
    store = TrajectoryStore.open(tmp_path / "nvt.zarr")
    temperatures = []
    for traj_id in store.ids():
        reader = store[traj_id]
        kinetic = kinetic_energy(reader.read(keys=("momenta",))["momenta"], reader.masses)
        temperatures.append(2 * kinetic / ((3 * reader.n_atoms - 3) * KB))
    mean = float(np.mean(temperatures))
    assert abs(mean - target) / target < 0.05, f"mean T {mean:.1f} K vs {target} K"


def test_a_small_crystal_superheats_unless_melted_first(tmp_path):
    """32 Cu atoms (asap3 EMT) stay crystalline for 4 ps at 1700 K, far above EMT copper's
    melting point; with ``melt_K``/``melt_fs`` (1 ps at 6000 K first) they are a liquid."""
    from flashmd.data.inspect import displacement
    from flashmd.data.recipes import parse_recipe
    from flashmd.data.reference import trajectory_steps

    def msd_at_the_end(**melt) -> float:
        system = {"name": "cu", "builder": "crystal", "element": "Cu", "supercell": [2, 2, 2]}
        recipe = parse_recipe(
            {
                "name": "melt",
                "seed": 3,
                "calculator": {"name": "asap3-emt"},
                "systems": [{**system, **melt}],
                "temperatures_K": [1700],
                "ensemble": {"equilibration": "langevin", "production": "langevin"},
                "timestep_fs": 2.0,
                "sample_interval_fs": 20.0,
                "equilibration_fs": 2000,
                "production_fs": 4000,
                "store_forces": False,
            }
        )
        (task,) = recipe.tasks()
        melt_steps = round(melt.get("melt_fs", 0) / 2)
        assert trajectory_steps(recipe, task) == melt_steps + 1000 + 200 * 10
        location = tmp_path / f"melt-{bool(melt)}.zarr"
        generate(recipe, str(location), progress=False)
        store = TrajectoryStore.open(location)
        reader = store[store.ids()[0]]
        assert reader.attrs["system"].get("melt_K") == melt.get("melt_K")
        positions = reader.read(keys=("positions",))["positions"]
        msd = float(((positions[-1] - positions[0]) ** 2).sum(-1).mean())
        assert displacement(reader) == pytest.approx(msd, abs=0.05)  # what inspect shows
        return msd

    assert msd_at_the_end() < 0.5  # Å², vibrations about the lattice
    assert msd_at_the_end(melt_K=6000.0, melt_fs=1000.0) > 1.0  # diffusing


@pytest.mark.parametrize("kind", ["bussi", "langevin"])
def test_thermostats_count_the_degrees_of_freedom_a_fixed_centre_of_mass_leaves(tiny_recipe, kind):
    """ASE's Bussi targets 3N/2 kT unless told the centre of mass is fixed, and ASE's Langevin
    with ``fixcm=True`` heats the free modes by N/(N-1); a 4-atom cell with zero total momentum
    has 9 degrees of freedom, so either mistake reads 12/9 = +33 % hot."""
    from ase.build import bulk
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from flashmd.data.calculators import make_calculator
    from flashmd.data.reference import make_dynamics

    target = 700.0
    recipe = tiny_recipe.model_copy(
        update={"ensemble": tiny_recipe.ensemble.model_copy(update={"production": kind})}
    )
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.calc = make_calculator(recipe.calculator)
    rng = np.random.default_rng(3)
    thermalize_momenta(atoms, temperature_K=target, rng=rng)
    Stationary(atoms)
    dynamics = make_dynamics(atoms, kind, recipe, target, rng)
    dynamics.run(500)
    kinetic = []
    for _ in range(800):
        dynamics.run(25)
        kinetic.append(kinetic_energy(atoms.get_momenta()[None], atoms.get_masses())[0])
    temperature = 2 * np.mean(kinetic) / ((3 * len(atoms) - 3) * KB)
    np.testing.assert_allclose(atoms.get_momenta().sum(0), 0.0, atol=1e-8)
    assert abs(temperature - target) / target < 0.08, f"mean T {temperature:.1f} K vs {target} K"
