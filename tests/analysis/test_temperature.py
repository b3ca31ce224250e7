"""Kinetic temperature: ASE, Maxwell–Boltzmann momenta, centre-of-mass constraint, streaming."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.constraints import FixCom

from flashmd.analysis import TemperatureAccumulator, kinetic_energy, kinetic_temperature
from flashmd.units import KB


def _maxwell_boltzmann(rng, masses, n_frames, temperature_K, fixed_com=False):
    """Momenta (n_frames, n_atoms, 3) sampled at ``temperature_K``, optionally with zero total."""
    momenta = (
        rng.normal(size=(n_frames, masses.size, 3))
        * np.sqrt(masses * KB * temperature_K)[None, :, None]
    )
    if fixed_com:
        momenta -= momenta.sum(axis=1, keepdims=True) * (masses / masses.sum())[None, :, None]
    return momenta


def test_matches_ase(rng):
    numbers = np.array([1, 8, 8, 29, 1])
    atoms = Atoms(numbers=numbers, positions=rng.normal(size=(5, 3)))
    masses = atoms.get_masses()
    momenta = _maxwell_boltzmann(rng, masses, 3, 500.0)
    for fixed_com in (False, True):
        result = kinetic_temperature(momenta, masses, numbers, fixed_com=fixed_com)
        for frame in range(3):
            atoms.set_constraint(FixCom() if fixed_com else None)
            atoms.set_momenta(momenta[frame], apply_constraint=False)
            assert result.kinetic_energy[frame] == pytest.approx(atoms.get_kinetic_energy())
            assert result.total[frame] == pytest.approx(atoms.get_temperature())
    np.testing.assert_allclose(kinetic_energy(momenta, masses), result.kinetic_energy)


def test_maxwell_boltzmann_per_species_equal(rng):
    """108 atoms of two masses at 300 K: total and per-species means within 4 standard errors."""
    numbers = np.where(np.arange(108) % 3 == 0, 36, 18)
    masses = np.where(numbers == 36, 83.8, 39.95)
    n_frames = 400
    result = kinetic_temperature(_maxwell_boltzmann(rng, masses, n_frames, 300.0), masses, numbers)
    for temperature, n_atoms in ((result.total, 108), (result.of_species(36), 36)):
        standard_error = 300.0 * np.sqrt(2.0 / (3 * n_atoms * n_frames))
        assert abs(temperature.mean() - 300.0) < 4 * standard_error
    difference_error = 300.0 * np.sqrt(2.0 / (3 * 72 * n_frames) + 2.0 / (3 * 36 * n_frames))
    assert abs(result.of_species(18).mean() - result.of_species(36).mean()) < 4 * difference_error
    np.testing.assert_array_equal(result.dof, [216.0, 108.0, 324.0])


def test_fixed_com_shares_constrained_dof_by_mass(rng):
    """Four atoms, two heavy and two light: a 3N - 3 split by atom count would put the heavy
    species 50 % too hot; the split by mass keeps every species at the bath temperature."""
    masses, numbers = np.array([100.0, 100.0, 1.0, 1.0]), np.array([29, 29, 1, 1])
    momenta = _maxwell_boltzmann(rng, masses, 20000, 300.0, fixed_com=True)
    result = kinetic_temperature(momenta, masses, numbers, fixed_com=True)
    assert result.dof[-1] == 9.0
    assert result.dof[:2].sum() == pytest.approx(9.0)
    for temperature in (result.total, result.of_species(1), result.of_species(29)):
        assert temperature.mean() == pytest.approx(300.0, rel=0.02)  # standard error < 0.6 %
    # without the correction the estimate is biased by (3N - 3) / 3N
    biased = kinetic_temperature(momenta, masses, numbers, fixed_com=False)
    assert biased.total.mean() == pytest.approx(300.0 * 9 / 12, rel=0.02)


def test_streaming_equals_whole_exactly(rng, uneven_blocks):
    masses, numbers = rng.uniform(1.0, 50.0, 30), rng.choice([1, 6, 8], 30)
    momenta = _maxwell_boltzmann(rng, masses, 700, 400.0)
    whole = kinetic_temperature(momenta, masses, numbers, fixed_com=True)
    acc = TemperatureAccumulator(masses, numbers, fixed_com=True)
    for block in uneven_blocks(700):
        acc.update(momenta[block])
    streamed = acc.result()
    np.testing.assert_array_equal(streamed.per_group, whole.per_group)
    np.testing.assert_array_equal(streamed.kinetic_energy, whole.kinetic_energy)


def test_bad_input():
    with pytest.raises(ValueError, match="no kinetic degrees of freedom"):
        TemperatureAccumulator(np.ones(1), fixed_com=True)
    with pytest.raises(ValueError, match="momenta has 3 atoms, expected 2"):
        kinetic_energy(np.ones((4, 3, 3)), np.ones(2))
    with pytest.raises(ValueError, match="no frames"):
        TemperatureAccumulator(np.ones(2)).result()
