"""Cell geometry and periodic pair search shared by RDF, distances and Lindemann index.

All arithmetic here is written elementwise (no BLAS calls whose rounding could depend on the
batch size), so a frame gives bit-identical results whether it is processed alone or in a block.
"""

from __future__ import annotations

import numpy as np
import vesin


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of (..., 3) arrays, elementwise."""
    return np.stack(
        [
            a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
            a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
            a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
        ],
        axis=-1,
    )


def _norm(a: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis of a (..., 3) array, elementwise."""
    return np.sqrt(a[..., 0] * a[..., 0] + a[..., 1] * a[..., 1] + a[..., 2] * a[..., 2])


def completed_cell(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Cells (n_frames, 3, 3) Å whose non-periodic vectors are replaced by unit vectors.

    The periodic vectors are kept; the non-periodic ones are replaced by an orthonormal basis of
    the complement of the periodic span (length 1 Å), so the cell is always invertible and
    fractional coordinates along open directions are plain Cartesian lengths.
    """
    cell = np.array(cell, dtype=np.float64)
    periodic = np.flatnonzero(pbc)
    open_ = np.flatnonzero(~pbc)
    if periodic.size == 3:
        return cell
    if periodic.size == 0:
        cell[:] = np.eye(3)
        return cell
    if periodic.size == 2:
        normal = _cross(cell[:, periodic[0]], cell[:, periodic[1]])
        cell[:, open_[0]] = normal / _norm(normal)[:, None]
        return cell
    axis = cell[:, periodic[0]]
    unit = axis / _norm(axis)[:, None]
    helper = np.eye(3)[np.argmin(np.abs(unit), axis=1)]
    first = helper - np.sum(helper * unit, axis=1)[:, None] * unit
    first /= _norm(first)[:, None]
    cell[:, open_[0]] = first
    cell[:, open_[1]] = _cross(unit, first)
    return cell


def perpendicular_widths(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Distances (n_frames, 3) Å between opposite faces of ``cell``; ``inf`` along open directions.

    A sphere of radius r fits in the cell (and minimum-image distances below r are exact) when r
    is at most half the smallest periodic width.
    """
    cell = completed_cell(cell, pbc)
    volume = np.abs(triple_product(cell))
    widths = np.empty(cell.shape[:2])
    for k in range(3):
        widths[:, k] = volume / _norm(_cross(cell[:, (k + 1) % 3], cell[:, (k + 2) % 3]))
    widths[:, ~pbc] = np.inf
    return widths


def triple_product(cell: np.ndarray) -> np.ndarray:
    """Signed volume (n_frames,) Å^3 of cells (n_frames, 3, 3)."""
    return np.sum(cell[:, 0] * _cross(cell[:, 1], cell[:, 2]), axis=-1)


def periodic_area(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Area (n_frames,) Å^2 spanned by the two periodic vectors of a slab cell."""
    a, b = np.flatnonzero(pbc)
    return _norm(_cross(cell[:, a], cell[:, b]))


def shift_vectors(shifts: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Cartesian shifts (n_frames, n_pairs, 3) Å from integer shifts (n_pairs, 3) and cells."""
    shifts = shifts.astype(np.float64)
    return (
        shifts[None, :, 0, None] * cell[:, None, 0]
        + shifts[None, :, 1, None] * cell[:, None, 1]
        + shifts[None, :, 2, None] * cell[:, None, 2]
    )


class PairSearch:
    """Half neighbour list (each pair once) within ``cutoff`` Å for one frame at a time.

    Thin wrapper over :class:`vesin.NeighborList`, which handles any cell, mixed periodicity and
    unwrapped positions; periodic images of an atom itself are reported as pairs ``(i, i)``.
    """

    def __init__(self, cutoff: float):
        self.cutoff = float(cutoff)
        self._nl = vesin.NeighborList(cutoff=self.cutoff, full_list=False, n_threads=1)

    def __call__(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, quantities: str = "ijd"
    ) -> list[np.ndarray]:
        """Pairs of one frame: ``positions`` (n_atoms, 3) Å, ``cell`` (3, 3) Å, ``pbc`` (3,).

        Returns the arrays named by ``quantities`` (vesin letters): i, j (n_pairs,) indices,
        S (n_pairs, 3) integer shifts, d (n_pairs,) Å, D (n_pairs, 3) Å, D = r_j - r_i + S·cell.
        """
        cell = completed_cell(cell[None], pbc)[0] if not pbc.all() else cell
        return self._nl.compute(positions, cell, pbc.tolist(), quantities, copy=True)
