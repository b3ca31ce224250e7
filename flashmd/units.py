"""Unit constants and conversions.

Inside the library everything is in ASE units: positions in Å, energies in eV, masses in amu,
momenta in amu·Å/(ASE time) and time in ASE time units (``1 fs == ase.units.fs``).
At the boundaries (recipes, CLI, Zarr attributes, public keyword arguments) time is given in
femtoseconds and temperature in kelvin, and the name says so: ``stride_fs``, ``timestep_fs``,
``temperature_K``.
"""

from __future__ import annotations

from ase import units as _ase_units

#: One femtosecond in ASE time units.
FS: float = float(_ase_units.fs)
#: Boltzmann constant in eV/K.
KB: float = float(_ase_units.kB)

#: Units of every stored quantity, written into store and checkpoint attributes.
UNITS: dict[str, str] = {
    "positions": "angstrom",
    "momenta": "amu*angstrom/ase_time (ase_time = 1/ase.units.fs fs)",
    "masses": "amu",
    "energy": "eV",
    "forces": "eV/angstrom",
    "stress": "eV/angstrom^3",
    "cell": "angstrom",
    "time": "fs",
    "temperature": "K",
}


def fs_to_ase(time_fs: float) -> float:
    """Convert a time in femtoseconds to ASE time units."""
    return float(time_fs) * FS


def ase_to_fs(time_ase: float) -> float:
    """Convert a time in ASE time units to femtoseconds."""
    return float(time_ase) / FS


def kinetic_temperature(kinetic_energy_eV: float, n_dof: int) -> float:
    """Temperature in K of ``n_dof`` degrees of freedom carrying ``kinetic_energy_eV`` in total."""
    if n_dof <= 0:
        raise ValueError(f"n_dof must be positive, got {n_dof}")
    return 2.0 * kinetic_energy_eV / (n_dof * KB)
