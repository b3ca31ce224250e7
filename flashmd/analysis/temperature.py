r"""Kinetic energy and kinetic temperature per frame, total and per species.

Equipartition gives :math:`T = 2K / (n_\mathrm{dof} k_B)`. Without constraints
:math:`n_\mathrm{dof} = 3N`. When the centre-of-mass momentum is fixed (``fixed_com``), three
degrees of freedom are removed: :math:`3N - 3` in total, and for species s with total mass
:math:`M_s` out of :math:`M`, :math:`3N_s - 3 M_s / M`. That is the exact split: with
:math:`\sum_i p_i = 0` imposed on Maxwell–Boltzmann momenta, :math:`\langle p_i^2 / 2m_i \rangle =
\tfrac{3}{2} k_B T (1 - m_i / M)`, so heavy species lose more of the three degrees of freedom and
all species then share one temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flashmd.analysis._common import as_frames, as_masses, species_groups, sum_over_atoms
from flashmd.units import KB


def _atom_kinetic_energy(momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Kinetic energy (n_frames, n_atoms) eV of every atom."""
    p = momenta
    return 0.5 * (p[..., 0] * p[..., 0] + p[..., 1] * p[..., 1] + p[..., 2] * p[..., 2]) / masses


def kinetic_energy(momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Kinetic energy (n_frames,) eV of ``momenta`` (n_frames, n_atoms, 3) ASE units.

    ``masses`` (n_atoms,) amu.
    """
    masses = as_masses(masses)
    momenta = as_frames("momenta", momenta, masses.size)
    per_atom = _atom_kinetic_energy(momenta, masses)
    return sum_over_atoms(per_atom, np.zeros(masses.size, dtype=np.int64), 1)[:, -1]


def degrees_of_freedom(
    masses: np.ndarray, index: np.ndarray, n_groups: int, fixed_com: bool
) -> np.ndarray:
    """Degrees of freedom (n_groups + 1,) of each group of atoms (``index`` (n_atoms,)) and of all.

    With ``fixed_com`` the three centre-of-mass degrees of freedom are shared out by mass.
    """
    group_mass = np.bincount(index, weights=masses, minlength=n_groups)
    group_atoms = np.bincount(index, minlength=n_groups).astype(np.float64)
    dof = np.append(3.0 * group_atoms, 3.0 * masses.size)
    if fixed_com:
        dof -= 3.0 * np.append(group_mass / masses.sum(), 1.0)
    if np.any(dof <= 0):
        raise ValueError("no kinetic degrees of freedom left (a single atom with fixed_com?)")
    return dof


@dataclass(frozen=True)
class TemperatureResult:
    """Per-frame temperatures.

    ``species`` (n_species,) atomic numbers; ``per_group`` (n_frames, n_species + 1) K, column
    ``k`` for ``species[k]`` and the last for all atoms; ``kinetic_energy`` (n_frames,) eV of all
    atoms; ``dof`` (n_species + 1,) degrees of freedom used.
    """

    species: np.ndarray
    per_group: np.ndarray
    kinetic_energy: np.ndarray
    dof: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Temperature (n_frames,) K of all atoms."""
        return self.per_group[:, -1]

    def of_species(self, number: int) -> np.ndarray:
        """Temperature (n_frames,) K of the atoms with atomic number ``number``."""
        found = np.flatnonzero(self.species == number)
        if found.size == 0:
            raise KeyError(f"no atoms with atomic number {number}")
        return self.per_group[:, int(found[0])]


class TemperatureAccumulator:
    """Per-frame temperatures from blocks of momenta; keeps only (n_frames,) traces.

    ``masses`` (n_atoms,) amu; ``numbers`` (n_atoms,) atomic numbers (default: one species 0);
    ``fixed_com``: the centre-of-mass momentum is constrained (see module docstring).
    """

    def __init__(
        self, masses: np.ndarray, numbers: np.ndarray | None = None, fixed_com: bool = False
    ):
        self.masses = as_masses(masses)
        numbers = np.zeros(self.masses.size, dtype=int) if numbers is None else numbers
        self.species, self._index = species_groups(numbers)
        if self._index.size != self.masses.size:
            raise ValueError("numbers and masses must have the same length")
        self.dof = degrees_of_freedom(self.masses, self._index, self.species.size, fixed_com)
        self._blocks: list[np.ndarray] = []

    def update(self, momenta: np.ndarray) -> None:
        """Add frames: ``momenta`` (n_frames, n_atoms, 3) amu·Å/(ASE time)."""
        momenta = as_frames("momenta", momenta, self.masses.size)
        per_atom = _atom_kinetic_energy(momenta, self.masses)
        self._blocks.append(sum_over_atoms(per_atom, self._index, self.species.size))

    def result(self) -> TemperatureResult:
        """Temperatures of every frame added so far."""
        if not self._blocks:
            raise ValueError("no frames were added to the temperature accumulator")
        energy = np.concatenate(self._blocks)
        temperature = 2.0 * energy / (self.dof[None, :] * KB)
        return TemperatureResult(self.species, temperature, energy[:, -1], self.dof)


def kinetic_temperature(
    momenta: np.ndarray,
    masses: np.ndarray,
    numbers: np.ndarray | None = None,
    fixed_com: bool = False,
) -> TemperatureResult:
    """Temperatures of whole arrays: ``momenta`` (n_frames, n_atoms, 3), ``masses`` (n_atoms,).

    See :class:`TemperatureAccumulator`; the work is per frame, so no blocking is needed.
    """
    acc = TemperatureAccumulator(masses, numbers, fixed_com)
    acc.update(momenta)
    return acc.result()
