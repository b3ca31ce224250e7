"""Local structure types: crystals are recognised through thermal noise, a melt is not."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from flashmd.analysis import STRUCTURES, structure_fractions

pytest.importorskip("asap3")


def frames_of(atoms, n=3, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    base = atoms.positions
    return np.stack([base + rng.normal(0, noise, base.shape) for _ in range(n)])


@pytest.mark.parametrize(
    ("name", "atoms"),
    [
        ("fcc", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)),
        ("hcp", bulk("Mg", "hcp", a=3.21).repeat((3, 3, 2))),
        ("bcc", bulk("Fe", "bcc", a=2.87, cubic=True).repeat(3)),
    ],
)
def test_crystals_are_recognised_through_thermal_noise(name, atoms):
    result = structure_fractions(
        frames_of(atoms, noise=0.05), np.array(atoms.cell), atoms.numbers, True
    )
    assert result.fractions.shape == (3, len(STRUCTURES))
    np.testing.assert_allclose(result.fractions.sum(axis=1), 1.0)
    assert (result[name] >= 0.95).all() and (result.crystalline >= 0.95).all()


def test_random_positions_and_far_outside_the_cell_are_handled():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    rng = np.random.default_rng(1)
    gas = rng.uniform(0, 7.22, (2, len(atoms), 3))
    assert (structure_fractions(gas, np.array(atoms.cell), atoms.numbers).crystalline < 0.2).all()
    shifted = atoms.positions[None] + np.array([7.22 * 3, -7.22, 0.5])  # unwrapped, out of cell
    assert structure_fractions(shifted, np.array(atoms.cell), atoms.numbers)["fcc"][0] == 1.0
    # the RMSD bound decides: a strongly rattled crystal is fcc only when the bound allows it
    hot = frames_of(atoms, n=1, noise=0.25, seed=2)
    loose = structure_fractions(hot, np.array(atoms.cell), atoms.numbers, rmsd_max=1.0)
    tight = structure_fractions(hot, np.array(atoms.cell), atoms.numbers, rmsd_max=0.05)
    assert loose["fcc"][0] > tight["fcc"][0]


def test_bad_input_is_refused():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    positions = atoms.positions[None]
    with pytest.raises(ValueError, match="cutoff_A"):
        structure_fractions(positions, np.array(atoms.cell), atoms.numbers, [True, True, False])
    with pytest.raises(ValueError, match="rmsd_max"):
        structure_fractions(positions, np.array(atoms.cell), atoms.numbers, rmsd_max=0)
    with pytest.raises(KeyError, match="one of other, fcc"):
        structure_fractions(positions, np.array(atoms.cell), atoms.numbers)["diamond"]
