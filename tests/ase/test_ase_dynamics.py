"""The ASE drop-in dynamics: ASE machinery, no force calls, clear errors, physics."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms, FixCom
from ase.io import Trajectory
from ase.md import MDLogger

from flashmd.ase import EnergyCalculator, FlashMD, FlashMDBussi, FlashMDLangevin
from flashmd.models import FlashMDModel, Predictor, PredictorConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "md"))
from md_testkit import crystal, harmonic, thermal, tiny_model


class EnergyOnly(Calculator):
    """EMT energies; raises if anyone asks for forces."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self):
        super().__init__()
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if "forces" in properties:
            raise AssertionError("FlashMD dynamics must never ask for forces")
        super().calculate(atoms, properties, system_changes)
        energy = self.emt.get_potential_energy(self.atoms)
        self.results = {"energy": energy, "free_energy": energy}


def untrained_predictor() -> FlashMDModel:
    """An untrained predictor is exact free flight (its corrections start at zero)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = PredictorConfig.preset("tiny", species=(13,), strides_fs=(16.0, 32.0), cutoff=4.0)
        return FlashMDModel(Predictor(config).double())


def test_works_with_attach_logger_trajectory_irun_and_never_asks_for_forces(tmp_path):
    atoms = thermal(crystal(), seed=1, temperature_K=50)
    atoms.calc = EnergyOnly()  # loggers read its energy; V of the filter is the energy model
    dyn = FlashMD(atoms, 16 * units.fs, model=tiny_model())
    log = io.StringIO()
    dyn.attach(MDLogger(dyn, atoms, log), interval=2)
    calls = []
    dyn.attach(lambda: calls.append(dyn.nsteps))
    with Trajectory(tmp_path / "run.traj", "w", atoms) as traj:
        dyn.attach(traj.write, interval=5)
        for _ in dyn.irun(10):
            pass
    assert calls == list(range(11))
    assert len(log.getvalue().splitlines()) == 1 + 6
    assert len(Trajectory(tmp_path / "run.traj")) == 3
    assert dyn.get_time() == pytest.approx(160 * units.fs)


def test_energy_calculator_attached_and_cached():
    model = tiny_model()
    atoms = thermal(crystal(), seed=2, temperature_K=300)
    dyn = FlashMD(atoms, 32 * units.fs, model=model)
    assert isinstance(atoms.calc, EnergyCalculator)
    dyn.run(3)
    cached = atoms.get_potential_energy()
    assert cached == pytest.approx(float(dyn.last_stats.potential_energy[0]))
    fresh = EnergyCalculator(model)
    assert fresh.get_potential_energy(atoms.copy()) == pytest.approx(cached, abs=1e-10)
    forces = fresh.get_forces(atoms.copy())
    assert forces.shape == (len(atoms), 3) and np.abs(forces.sum(0)).max() < 1e-10
    assert fresh.get_stress(atoms.copy()).shape == (6,)


def test_nve_harmonic_conserves_energy_through_ase():
    reference = crystal()
    model = harmonic([reference])
    atoms = thermal(reference, seed=3)
    dyn = FlashMD(atoms, 32 * units.fs, model=model)
    energy0 = float(dyn.stepper.potential_energy(dyn._state)[0]) + atoms.get_kinetic_energy()
    dyn.run(200)
    energy = float(dyn.last_stats.potential_energy[0]) + atoms.get_kinetic_energy()
    assert abs(energy - energy0) / len(atoms) < 1e-5
    assert np.abs(atoms.get_momenta().sum(0)).max() < 1e-8


@pytest.mark.parametrize("kind", ["langevin", "bussi"])
def test_thermostats_reach_temperature(kind):
    reference = crystal((2, 2, 1))
    model = harmonic([reference])
    atoms = thermal(reference, seed=4, temperature_K=50)
    if kind == "langevin":
        dyn = FlashMDLangevin(
            atoms, 16 * units.fs, temperature_K=400, friction=0.02 / units.fs, model=model, seed=1
        )
    else:
        dyn = FlashMDBussi(
            atoms, 16 * units.fs, temperature_K=400, taut=40 * units.fs, model=model, seed=1
        )
    dyn.run(100)
    temperatures = []
    for _ in range(1500):
        dyn.run(1)
        temperatures.append(atoms.get_kinetic_energy() / (1.5 * (len(atoms) - 1) * units.kB))
    assert np.mean(temperatures) == pytest.approx(400, rel=0.06)


def test_fix_atoms_stay_put():
    reference = crystal()
    model = harmonic([reference])
    atoms = thermal(reference, seed=5)
    atoms.set_constraint(FixAtoms(indices=[0, 3]))
    start = atoms.positions[[0, 3]].copy()
    FlashMDLangevin(
        atoms, 16 * units.fs, temperature_K=300, friction=0.01 / units.fs, model=model
    ).run(20)
    np.testing.assert_array_equal(atoms.positions[[0, 3]], start)
    assert np.abs(atoms.get_momenta()[[0, 3]]).max() == 0.0
    assert np.abs(atoms.positions[1:3] - reference.positions[1:3]).max() > 1e-3


def test_changing_momenta_between_runs_is_seen():
    reference = crystal()
    model = harmonic([reference])
    atoms = thermal(reference, seed=6)
    dyn = FlashMD(atoms, 16 * units.fs, model=model)
    dyn.run(2)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    atoms.positions = reference.positions
    dyn.run(3)
    np.testing.assert_allclose(atoms.positions, reference.positions, atol=1e-12)


def test_clear_errors():
    atoms = crystal()
    with pytest.raises(ValueError, match="no momenta"):
        FlashMD(atoms, 16 * units.fs, model=tiny_model())
    atoms = thermal(crystal(), seed=7)
    with pytest.raises(ValueError, match="20 fs"):
        FlashMD(atoms, 20 * units.fs, model=tiny_model())
    copper = atoms.copy()
    copper.symbols[0] = "Cu"
    with pytest.raises(ValueError, match="Cu"):
        FlashMD(copper, 16 * units.fs, model=tiny_model())
    with pytest.raises(ValueError, match="needs V"):
        FlashMD(thermal(crystal(), seed=7), 16 * units.fs, model=untrained_predictor())
    fixcom = thermal(crystal(), seed=7)
    fixcom.set_constraint(FixCom())
    with pytest.raises(ValueError, match="FixCom"):
        FlashMD(fixcom, 16 * units.fs, model=tiny_model())


def test_close_contacts_are_refused_unless_allowed():
    atoms = thermal(crystal(), seed=8, rattle=0.0)
    atoms.positions[1] = atoms.positions[0] + [0.9, 0.0, 0.0]
    with pytest.raises(ValueError, match="0.900 Å apart.*allow_close_contacts=True"):
        FlashMD(atoms, 16 * units.fs, model=tiny_model())
    with pytest.warns(RuntimeWarning, match="0.900 Å apart"):
        FlashMD(atoms, 16 * units.fs, model=tiny_model(), allow_close_contacts=True)


def test_symplectic_strides_through_ase():
    from md_testkit import tiny_symplectic_model

    model = tiny_symplectic_model()
    atoms = thermal(crystal(), seed=11)
    dyn = FlashMDBussi(
        atoms,
        16 * units.fs,
        temperature_K=300,
        taut=100 * units.fs,
        model=model,
        symplectic=True,
        seed=0,
    )
    dyn.run(3)
    assert dyn.mean_solver_iterations >= 1 and dyn.todict()["symplectic"] is True
    assert np.isfinite(atoms.positions).all()
    direct = FlashMD(thermal(crystal(), seed=11), 16 * units.fs, model=model)
    assert np.isnan(direct.mean_solver_iterations) and direct.todict()["symplectic"] is False
    with pytest.raises(ValueError, match="no generating function"):
        FlashMD(thermal(crystal(), seed=11), 16 * units.fs, model=tiny_model(), symplectic=True)


def test_adaptive_strides_decline_unsure_strides_and_are_checked():
    atoms = thermal(crystal((2, 2, 2)), 7, 600.0)
    model = tiny_model()
    sure = FlashMD(
        atoms.copy(), 32 * units.fs, model=model, adaptive=True, adaptive_threshold_A=10.0
    )
    sure.run(2)
    assert sure.declined == 0 and sure.todict()["adaptive"]
    unsure = FlashMD(
        atoms.copy(),
        32 * units.fs,
        model=model,
        adaptive=True,
        adaptive_threshold_A=1e-9,
        energy_filter=False,
    )
    unsure.run(2)
    assert unsure.declined == 2 and unsure.fallbacks == 0
    fixed = FlashMD(atoms.copy(), 16 * units.fs, model=model, energy_filter=False)
    fixed.run(4)  # two declined 32 fs strides are four 16 fs strides
    assert np.allclose(unsure.atoms.positions, fixed.atoms.positions, atol=1e-9)
    with pytest.raises(ValueError, match="serve its half"):
        FlashMD(atoms.copy(), 16 * units.fs, model=model, adaptive=True)
    with pytest.raises(ValueError, match="direct"):
        FlashMD(atoms.copy(), 32 * units.fs, model=harmonic([crystal((2, 2, 2))]), adaptive=True)


def test_a_model_name_or_checkpoint_path_is_loaded(tmp_path):
    """`model=` takes a checkpoint path (or a shipped name) as well as a loaded model, and both
    give the same strides; a path that is not there is a clear error."""
    from flashmd.models.io import save_checkpoint

    path = save_checkpoint(tiny_model(), tmp_path / "tiny.pt")
    runs = []
    for model in (tiny_model(), path, str(path)):
        atoms = thermal(crystal(), seed=11)
        dyn = FlashMD(atoms, 16 * units.fs, model=model)
        dyn.run(3)
        runs.append(atoms.get_positions())
    assert np.allclose(runs[0], runs[1], atol=1e-9) and np.allclose(runs[1], runs[2])
    with pytest.raises(FileNotFoundError):
        FlashMD(thermal(crystal(), seed=11), 16 * units.fs, model=str(tmp_path / "missing.pt"))
