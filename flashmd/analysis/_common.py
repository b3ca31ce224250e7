"""Input checks and small helpers shared by the analysis modules.

Every observable reads arrays shaped like the trajectory store's:

- ``positions`` (n_frames, n_atoms, 3) float, Å, unwrapped
- ``momenta`` (n_frames, n_atoms, 3) float, amu·Å/(ASE time)
- ``masses`` (n_atoms,) float, amu
- ``numbers`` (n_atoms,) int, atomic numbers
- ``cell`` (n_frames, 3, 3) float, Å (a single (3, 3) cell is broadcast to every frame)
- ``pbc`` (3,) bool
- ``energy`` (n_frames,) float, eV
- ``time_fs`` (n_frames,) float, fs
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from flashmd.units import FS

#: Periodic flags as accepted by the public API: one bool for all directions, or three.
PBC = bool | Sequence[bool] | np.ndarray

#: Frames per block used by the whole-array convenience functions.
DEFAULT_BLOCK_FRAMES: int = 1024


def as_frames(name: str, array: np.ndarray, n_atoms: int | None = None) -> np.ndarray:
    """Return ``array`` as float64 of shape (n_frames, n_atoms, 3), or raise ``ValueError``."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"{name} must have shape (n_frames, n_atoms, 3), got {out.shape}")
    if n_atoms is not None and out.shape[1] != n_atoms:
        raise ValueError(f"{name} has {out.shape[1]} atoms, expected {n_atoms}")
    return out


def as_cells(cell: np.ndarray, n_frames: int) -> np.ndarray:
    """Return ``cell`` (n_frames, 3, 3) or (3, 3) Å as float64 (n_frames, 3, 3)."""
    out = np.asarray(cell, dtype=np.float64)
    if out.shape == (3, 3):
        return np.broadcast_to(out, (n_frames, 3, 3))
    if out.shape != (n_frames, 3, 3):
        raise ValueError(f"cell must have shape ({n_frames}, 3, 3) or (3, 3), got {out.shape}")
    return out


def as_pbc(pbc: PBC) -> np.ndarray:
    """Return periodic flags as a (3,) bool array (a single bool applies to all directions)."""
    out = np.asarray(pbc, dtype=bool)
    if out.ndim == 0:
        out = np.full(3, bool(out))
    if out.shape != (3,):
        raise ValueError(f"pbc must be a bool or have shape (3,), got {out.shape}")
    return out


def as_masses(masses: np.ndarray, n_atoms: int | None = None) -> np.ndarray:
    """Return ``masses`` (n_atoms,) amu as float64, checking that all are positive."""
    out = np.asarray(masses, dtype=np.float64)
    if out.ndim != 1 or (n_atoms is not None and out.shape[0] != n_atoms):
        expected = "n_atoms" if n_atoms is None else str(n_atoms)
        raise ValueError(f"masses must have shape ({expected},), got {out.shape}")
    if not np.all(out > 0):
        raise ValueError("masses must all be positive")
    return out


def species_groups(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group atoms by species.

    Returns ``species`` (n_species,) sorted atomic numbers and ``index`` (n_atoms,) giving, for
    every atom, the position of its species in ``species``.
    """
    numbers = np.asarray(numbers)
    if numbers.ndim != 1 or not np.issubdtype(numbers.dtype, np.integer):
        raise ValueError(
            f"numbers must be a 1-D integer array, got {numbers.dtype} {numbers.shape}"
        )
    species, index = np.unique(numbers, return_inverse=True)
    return species, index.reshape(-1)


def group_weights(index: np.ndarray, n_groups: int, weights: np.ndarray) -> np.ndarray:
    """Matrix (n_atoms, n_groups + 1) averaging atoms within each group, last column all atoms.

    Column ``g`` holds ``weights[i] / sum(weights[group g])`` for atoms of group ``g`` and zero
    elsewhere; the last column does the same over all atoms.
    """
    n_atoms = index.shape[0]
    matrix = np.zeros((n_atoms, n_groups + 1))
    matrix[np.arange(n_atoms), index] = weights
    matrix[:, n_groups] = weights
    return matrix / matrix.sum(axis=0)


def sum_over_atoms(values: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums (n_frames, n_groups + 1, ...) of ``values`` (n_frames, n_atoms, ...) over the atoms of
    each group (``index`` (n_atoms,)) and, last, over all atoms.

    Atoms are added one after the other, so a frame's sums do not depend on how many frames are
    processed together (NumPy reductions may change their summation order with the shape).
    """
    out = np.zeros((values.shape[0], n_groups + 1, *values.shape[2:]))
    for atom, group in enumerate(index):
        out[:, group] += values[:, atom]
        out[:, n_groups] += values[:, atom]
    return out


def velocities_A_per_fs(momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Velocities (n_frames, n_atoms, 3) in Å/fs from momenta in ASE units and masses in amu."""
    return momenta / masses[None, :, None] * FS


def frame_interval_fs(time_fs: np.ndarray, rtol: float = 1e-6) -> float:
    """Interval in fs between consecutive frames of ``time_fs`` (n_frames,); must be uniform."""
    time_fs = np.asarray(time_fs, dtype=np.float64)
    if time_fs.ndim != 1 or time_fs.shape[0] < 2:
        raise ValueError(f"time_fs must be 1-D with at least two frames, got {time_fs.shape}")
    steps = np.diff(time_fs)
    dt = float(np.mean(steps))
    if dt <= 0 or not np.allclose(steps, dt, rtol=rtol, atol=0.0):
        raise ValueError("time_fs must be strictly increasing with a uniform frame interval")
    return dt


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and positive, else raise ``ValueError``."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def frame_blocks(n_frames: int, block_frames: int = DEFAULT_BLOCK_FRAMES) -> Iterator[slice]:
    """Slices covering ``range(n_frames)`` in consecutive blocks of ``block_frames`` frames."""
    for start in range(0, n_frames, block_frames):
        yield slice(start, min(start + block_frames, n_frames))
