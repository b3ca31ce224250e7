r"""Lindemann index from unwrapped positions.

For a pair of atoms, :math:`q_{ij} = \sqrt{\langle r_{ij}^2 \rangle - \langle r_{ij} \rangle^2}
/ \langle r_{ij} \rangle` with averages over frames. The per-atom index is the mean of
:math:`q_{ij}` over the partners j of atom i and the system index is the mean over all pairs
(equal to the mean of the per-atom index when every pair is used).

Pairs are chosen on the first frame: every pair (default) or those closer than ``cutoff``
(neighbour-shell variant, linear in the number of atoms). In periodic directions the image of j
is fixed on the first frame: the one the neighbour search found, or for every pair the image
from rounding fractional coordinates, which is the minimum image for every pair closer than half
the smallest cell width (farther pairs in a crystal can have several equally near images).
r_ij(t) = |r_j(t) - r_i(t) + S cell(t)| then follows that image continuously: with unwrapped
positions the distance never jumps when atoms cross the cell boundary or when another image of
j becomes nearer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flashmd.analysis._common import (
    DEFAULT_BLOCK_FRAMES,
    PBC,
    as_cells,
    as_frames,
    as_pbc,
    check_positive,
    frame_blocks,
)
from flashmd.analysis._geometry import PairSearch, completed_cell, shift_vectors

#: Pair distances computed at once (frames times pairs), bounds memory for large systems.
_PAIR_VALUES: int = 2**21


@dataclass(frozen=True)
class LindemannResult:
    """``per_atom`` (n_atoms,) and ``system`` Lindemann index (dimensionless) over ``n_frames``."""

    per_atom: np.ndarray
    system: float
    n_pairs: int
    n_frames: int


def _first_frame_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j) (n_pairs,) and integer image shifts (n_pairs, 3) chosen on one frame."""
    if cutoff is not None:
        i, j, shifts = PairSearch(cutoff)(positions, cell, pbc, "ijS")
        distinct = i != j
        return i[distinct].astype(np.int64), j[distinct].astype(np.int64), shifts[distinct]
    i, j = np.triu_indices(positions.shape[0], 1)
    full = completed_cell(cell[None], pbc)[0]
    fractional = (positions[j] - positions[i]) @ np.linalg.inv(full)
    shifts = np.where(pbc[None, :], -np.round(fractional), 0.0).astype(np.int64)
    return i, j, shifts


class LindemannAccumulator:
    """Streaming Lindemann index: :meth:`update` with blocks of frames, then :meth:`result`.

    ``pbc`` (3,) periodic flags; ``cutoff`` Å selects pairs closer than it on the first frame
    (None: every pair).
    """

    def __init__(self, pbc: PBC = True, cutoff: float | None = None):
        self.pbc = as_pbc(pbc)
        self.cutoff = None if cutoff is None else check_positive("cutoff", cutoff)
        self.n_frames = 0
        self._n_atoms: int | None = None

    def _start(self, positions: np.ndarray, cell: np.ndarray) -> None:
        self._n_atoms = positions.shape[0]
        self._i, self._j, self._shifts = _first_frame_pairs(positions, cell, self.pbc, self.cutoff)
        if self._i.size == 0:
            raise ValueError("no atom pairs to follow (one atom, or nothing within the cutoff)")
        self._reference = self._distances(positions[None], cell[None])[0]
        self._sum = np.zeros_like(self._reference)
        self._sum_sq = np.zeros_like(self._reference)

    def _distances(self, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """Followed pair distances (n_frames, n_pairs) Å."""
        d = positions[:, self._j] - positions[:, self._i] + shift_vectors(self._shifts, cell)
        return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2])

    def update(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Add frames: ``positions`` (n_frames, n_atoms, 3) Å unwrapped, ``cell`` (n_frames, 3, 3)
        or (3, 3) Å."""
        positions = as_frames("positions", positions, self._n_atoms)
        cell = as_cells(cell, positions.shape[0])
        if positions.shape[0] == 0:
            return
        if self._n_atoms is None:
            self._start(positions[0], cell[0])
        step = max(1, _PAIR_VALUES // self._i.size)
        for block in frame_blocks(positions.shape[0], step):
            # offsets from the first frame keep the variance free of cancellation
            offsets = self._distances(positions[block], cell[block]) - self._reference
            for row in offsets:  # frame by frame: sums independent of the block sizes
                self._sum += row
                self._sum_sq += row * row
        self.n_frames += positions.shape[0]

    def result(self) -> LindemannResult:
        """Lindemann index over every frame added so far."""
        if self.n_frames == 0 or self._n_atoms is None:
            raise ValueError("no frames were added to the Lindemann accumulator")
        mean_offset = self._sum / self.n_frames
        variance = np.maximum(self._sum_sq / self.n_frames - mean_offset**2, 0.0)
        ratio = np.sqrt(variance) / (self._reference + mean_offset)
        n = self._n_atoms
        partners = np.bincount(self._i, minlength=n) + np.bincount(self._j, minlength=n)
        per_pair_sum = np.bincount(self._i, ratio, n) + np.bincount(self._j, ratio, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_atom = np.where(partners > 0, per_pair_sum / partners, np.nan)
        return LindemannResult(per_atom, float(np.mean(ratio)), self._i.size, self.n_frames)


def lindemann_index(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: PBC = True,
    cutoff: float | None = None,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> LindemannResult:
    """Lindemann index of whole arrays: ``positions`` (n_frames, n_atoms, 3) Å unwrapped,
    ``cell`` (n_frames, 3, 3) or (3, 3) Å. Atoms without partners get NaN. See
    :class:`LindemannAccumulator`."""
    positions = as_frames("positions", positions)
    cell = as_cells(cell, positions.shape[0])
    acc = LindemannAccumulator(pbc, cutoff)
    for block in frame_blocks(positions.shape[0], block_frames):
        acc.update(positions[block], cell[block])
    return acc.result()
