"""Stochastic cell rescaling (``flashmd.md.barostats``): the ideal gas's exact isobaric volume
distribution in every mode, the energy bookkeeping of the filter's target, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from md_testkit import crystal, thermal, tiny_model

from flashmd.md.barostats import GPA, StochasticCellRescaling
from flashmd.md.filters import FilterConfig
from flashmd.md.propagators import ModelPotential, ModelPropagator
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.md.thermostats import Langevin
from flashmd.units import FS, KB


class FreeFlight:
    """Non-interacting atoms: positions move with the momenta, momenta are unchanged."""

    cutoff = None

    def check(self, state, stride_fs):
        pass

    def propagate(self, state, edges, stride_fs):
        return state.positions + stride_fs * FS * state.momenta / state.masses[:, None], (
            state.momenta
        )


class NoInteraction:
    """U = 0 and no stress: the ideal gas."""

    cutoff = None

    def energy(self, state, edges):
        return torch.zeros(state.n_systems, dtype=torch.float64)

    def energy_and_forces(self, state, edges):
        return self.energy(state, edges), torch.zeros_like(state.positions)

    def energy_and_stress(self, state, edges):
        return self.energy(state, edges), torch.zeros((state.n_systems, 3, 3), dtype=torch.float64)


def ideal_gas_volumes(mask, n_atoms=8, strides=4000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gas = Atoms(f"Ar{n_atoms}", positions=rng.uniform(0, 6, (n_atoms, 3)), cell=[6, 6, 6], pbc=True)
    state = state_from_atoms(thermal(gas, seed, rattle=0.0), seed=seed)
    barostat = StochasticCellRescaling(
        pressure=0.001, temperature_K=300.0, tau=200 * FS, compressibility=1000.0, mask=mask
    )  # the ideal gas's own compressibility, 1/P: the volume relaxes within about tau
    stepper = Stepper(
        FreeFlight(),
        20.0,
        NoInteraction(),
        thermostat=Langevin(300.0, 0.02 / FS),
        filters=FilterConfig(energy=False, contact_fraction=None),
        barostat=barostat,
    )
    state = stepper.prepare(state)
    volumes = []
    for _ in range(strides):
        state, _ = stepper.step(state)
        volumes.append(float(torch.linalg.det(state.cell[0])))
    return np.asarray(volumes[strides // 10 :])


@pytest.mark.parametrize("mask", [None, (True, True, False)])
def test_ideal_gas_samples_the_isobaric_volume_distribution(mask):
    """p(V) ∝ V^N exp(-P V / kT): mean (N + 1) kT / P and variance (N + 1) (kT / P)²; without
    the kT/V term of the drift the mean would be N kT / P, 11 % lower for N = 8."""
    volumes = ideal_gas_volumes(mask)
    scale = KB * 300.0 / 0.001
    assert volumes.mean() == pytest.approx(9 * scale, rel=0.06)
    assert volumes.var() == pytest.approx(9 * scale**2, rel=0.35)


def test_the_rescaling_moves_the_filter_target_by_the_change_of_the_energy():
    model = tiny_model()
    atoms = thermal(crystal((2, 2, 2)), seed=3, temperature_K=600.0)
    barostat = StochasticCellRescaling(pressure=1.0 * GPA, temperature_K=600.0, tau=100 * FS)
    stepper = Stepper(ModelPropagator(model), 16.0, ModelPotential(model), barostat=barostat)
    state = stepper.prepare(state_from_atoms(atoms, seed=1))
    moved = stepper._barostat(state)
    assert not torch.equal(moved.cell, state.cell)
    ratio = torch.linalg.det(moved.cell) / torch.linalg.det(state.cell)
    torch.testing.assert_close(moved.positions, state.positions * ratio ** (1 / 3))
    total = moved.kinetic_energy() + stepper.potential_energy(moved)
    torch.testing.assert_close(moved.target_energy, total)
    after, _ = stepper.step(state)  # a whole stride runs and stays finite
    assert bool(torch.isfinite(after.positions).all())


def test_bad_input_is_refused_clearly():
    model = tiny_model()
    with pytest.raises(ValueError, match="needs a potential that gives the stress"):
        Stepper(
            ModelPropagator(model),
            16.0,
            None,
            barostat=StochasticCellRescaling(0.0, 300.0, 100 * FS),
        )
    with pytest.raises(ValueError, match="tau and compressibility must be positive"):
        StochasticCellRescaling(0.0, 300.0, 0.0)
    with pytest.raises(ValueError, match="mask scales no axis"):
        StochasticCellRescaling(0.0, 300.0, 100 * FS, mask=(False, False, False))
    with pytest.raises(ValueError, match="pressure must be finite"):
        StochasticCellRescaling(float("nan"), 300.0, 100 * FS)
    barostat = StochasticCellRescaling(0.0, 300.0, 100 * FS)
    stepper = Stepper(ModelPropagator(model), 16.0, ModelPotential(model), barostat=barostat)
    open_system = crystal()
    open_system.pbc = False
    with pytest.raises(ValueError, match="needs fully periodic systems"):
        stepper.prepare(state_from_atoms(thermal(open_system, seed=0)))


def test_flashmd_npt_moves_the_atoms_cell_with_the_state():
    from ase import units

    from flashmd.ase import FlashMDNPT

    model = tiny_model()
    atoms = thermal(crystal((2, 2, 2)), seed=4, temperature_K=600.0)
    before = atoms.cell[:].copy()
    dynamics = FlashMDNPT(
        atoms, 16 * units.fs, temperature_K=600.0, pressure_au=-0.5 * GPA, model=model, seed=2
    )
    dynamics.run(3)
    assert not np.allclose(atoms.cell[:], before)
    np.testing.assert_allclose(atoms.cell[:], dynamics._state.cell[0].numpy())
    atoms.set_cell(atoms.cell[:] * 1.01, scale_atoms=True)  # a change made by the user is read
    dynamics.run(1)
    assert np.isfinite(atoms.positions).all()


def test_md_runs_npt_and_stores_the_cell_of_every_frame(tmp_path):
    import ase.io

    from flashmd.data.store import TrajectoryStore
    from flashmd.md.batch import MDSettings, run_md

    structure = tmp_path / "cu.extxyz"
    ase.io.write(structure, crystal((2, 2, 2)).copy())
    atoms = ase.io.read(structure)
    atoms.numbers[:] = 29
    ase.io.write(structure, atoms)
    settings = MDSettings(
        model="emt-metals",
        structures=(str(structure),),
        ensemble="npt",
        temperature_K=900.0,
        pressure_GPa=2.0,
        stride_fs=32.0,
        strides=4,
        cell_mask=(True, True, False),
    )
    run_md(settings, str(tmp_path / "npt.zarr"), device="cpu", progress=False)
    store = TrajectoryStore.open(str(tmp_path / "npt.zarr"))
    cells = store[store.ids()[0]].read()["cell"]
    assert cells.shape == (5, 3, 3) and len({float(c[0, 0]) for c in cells}) == 5
    np.testing.assert_array_equal(cells[:, 2, 2], cells[0, 2, 2])  # z is not scaled
    # the RDF of flashmd evaluate fits in the smallest cell of the run, not the first frame's
    from flashmd.analysis.observables import largest_rdf_rmax

    smallest = 0.5 * min(min(c[0, 0], c[1, 1], c[2, 2]) for c in cells)
    assert largest_rdf_rmax(store[store.ids()[0]]) == pytest.approx(smallest)
    assert smallest < 0.5 * min(cells[0, 0, 0], cells[0, 1, 1])  # 2 GPa compresses it
    with pytest.raises(ValueError, match="needs a pressure"):
        MDSettings(model="m", structures=("a",), ensemble="npt", stride_fs=32.0)
    with pytest.raises(ValueError, match="a pressure needs the npt ensemble"):
        MDSettings(model="m", structures=("a",), ensemble="langevin", pressure_GPa=1.0)


def test_reference_barostat_rescales_every_barostat_every_steps_when_stepped_directly():
    """The generator calls ``step()`` (not ``run()``): the cell changes on steps 0, 5, 10 only."""
    from asap3 import EMT
    from ase.build import bulk

    from flashmd.ase.reference_npt import LangevinSCR

    atoms = bulk("Cu", cubic=True).repeat(2)
    atoms.calc = EMT()
    barostat = StochasticCellRescaling(
        pressure=0.0, temperature_K=300.0, tau=100 * FS, compressibility=1 / (140 * GPA)
    )
    dynamics = LangevinSCR(
        atoms,
        2 * FS,
        temperature_K=300.0,
        friction=0.01 / FS,
        barostat=barostat,
        barostat_every=5,
        rng=np.random.default_rng(0),
    )
    changed = []
    for step in range(12):
        before = atoms.get_volume()
        dynamics.step()
        if atoms.get_volume() != before:
            changed.append(step)
    assert changed == [0, 5, 10] and dynamics.steps_taken == 12
