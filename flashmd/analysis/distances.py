"""Minimum interatomic distance per frame and detection of overlapping atoms.

Both use a cell-list neighbour search (vesin), so they stay linear in the number of atoms and
honour any cell and periodicity. In periodic directions an atom's own periodic images count as
partners (reported as the pair (i, i)): in a cell shorter than the distance of interest that is
a real contact.
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
from flashmd.analysis._geometry import PairSearch


@dataclass(frozen=True)
class MinDistanceResult:
    """``distance`` (n_frames,) Å, the closest pair of each frame, with its atoms ``pair``
    (n_frames, 2); ``inf`` and (-1, -1) when a frame has no pair at all (one isolated atom)."""

    distance: np.ndarray
    pair: np.ndarray


class MinDistanceAccumulator:
    """Closest pair of every frame, from blocks of frames.

    ``pbc`` (3,) periodic flags; ``search_cutoff`` Å is the first search radius, doubled on
    frames where no pair lies within it (any value gives the same result; a value a little above
    the typical closest distance is fastest).
    """

    def __init__(self, pbc: PBC = True, search_cutoff: float = 3.0):
        self.pbc = as_pbc(pbc)
        self.search_cutoff = check_positive("search_cutoff", search_cutoff)
        self._distance: list[float] = []
        self._pair: list[tuple[int, int]] = []

    def _largest_needed(self, positions: np.ndarray, cell: np.ndarray) -> float:
        """A radius within which some pair must lie if the frame has any pair at all, Å."""
        extent = float(np.linalg.norm(np.ptp(positions, axis=0)))
        return extent + float(np.linalg.norm(cell[self.pbc], axis=1).sum())

    def update(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Add frames: ``positions`` (n_frames, n_atoms, 3) Å, ``cell`` (n_frames, 3, 3) Å."""
        positions = as_frames("positions", positions)
        cell = as_cells(cell, positions.shape[0])
        for frame in range(positions.shape[0]):
            cutoff = self.search_cutoff
            limit = self._largest_needed(positions[frame], cell[frame])
            while True:
                i, j, d = PairSearch(cutoff)(positions[frame], cell[frame], self.pbc, "ijd")
                if d.size or cutoff > limit:
                    break
                cutoff *= 2.0
            if d.size:
                k = int(np.argmin(d))
                self._distance.append(float(d[k]))
                self._pair.append((int(i[k]), int(j[k])))
            else:
                self._distance.append(np.inf)
                self._pair.append((-1, -1))

    def result(self) -> MinDistanceResult:
        """Closest distances of every frame added so far."""
        pair = np.array(self._pair, dtype=np.int64).reshape(-1, 2)
        return MinDistanceResult(np.array(self._distance), pair)


def min_distance(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: PBC = True,
    search_cutoff: float = 3.0,
) -> MinDistanceResult:
    """Closest pair per frame of ``positions`` (n_frames, n_atoms, 3) Å, ``cell`` (n_frames, 3, 3)
    or (3, 3) Å. See :class:`MinDistanceAccumulator`."""
    acc = MinDistanceAccumulator(pbc, search_cutoff)
    acc.update(positions, cell)
    return acc.result()


@dataclass(frozen=True)
class OverlapResult:
    """Pairs closer than ``threshold`` Å.

    ``count`` (n_frames,) close pairs per frame; ``frame``, ``i``, ``j`` (n_overlaps,) and
    ``distance`` (n_overlaps,) Å list every close pair.
    """

    threshold: float
    count: np.ndarray
    frame: np.ndarray
    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray

    @property
    def any(self) -> bool:
        """True if some frame has a close pair."""
        return bool(self.count.any())

    @property
    def frames(self) -> np.ndarray:
        """Indices (n,) of the frames with at least one close pair."""
        return np.flatnonzero(self.count)


class OverlapAccumulator:
    """Pairs closer than ``threshold`` Å in every frame, from blocks of frames."""

    def __init__(self, threshold: float, pbc: PBC = True):
        self.threshold = check_positive("threshold", threshold)
        self.pbc = as_pbc(pbc)
        self._search = PairSearch(self.threshold)
        self._count: list[int] = []
        self._found: list[tuple[np.ndarray, ...]] = []

    def update(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Add frames: ``positions`` (n_frames, n_atoms, 3) Å, ``cell`` (n_frames, 3, 3) Å."""
        positions = as_frames("positions", positions)
        cell = as_cells(cell, positions.shape[0])
        for frame in range(positions.shape[0]):
            i, j, d = self._search(positions[frame], cell[frame], self.pbc, "ijd")
            close = d < self.threshold
            index = np.full(int(close.sum()), len(self._count), dtype=np.int64)
            self._found.append((index, i[close], j[close], d[close]))
            self._count.append(index.size)

    def result(self) -> OverlapResult:
        """Close pairs of every frame added so far."""
        if self._found:
            frame, i, j, d = (np.concatenate(column) for column in zip(*self._found, strict=True))
        else:
            frame, i, j, d = (np.zeros(0) for _ in range(4))
        return OverlapResult(
            self.threshold,
            np.array(self._count, dtype=np.int64),
            frame.astype(np.int64),
            i.astype(np.int64),
            j.astype(np.int64),
            d.astype(np.float64),
        )


def find_overlaps(
    positions: np.ndarray,
    cell: np.ndarray,
    threshold: float,
    pbc: PBC = True,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> OverlapResult:
    """Pairs closer than ``threshold`` Å in ``positions`` (n_frames, n_atoms, 3) Å with ``cell``
    (n_frames, 3, 3) or (3, 3) Å. See :class:`OverlapAccumulator`."""
    positions = as_frames("positions", positions)
    cell = as_cells(cell, positions.shape[0])
    acc = OverlapAccumulator(threshold, pbc)
    for block in frame_blocks(positions.shape[0], block_frames):
        acc.update(positions[block], cell[block])
    return acc.result()
