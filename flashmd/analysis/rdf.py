r"""Radial distribution function, total and per species pair, for bulk and slab geometries.

Conventions (identical to :func:`ase.geometry.rdf.get_rdf`, ASE >= 3.27):

- ``nbins`` bins of width ``dr = rmax / nbins`` with edges ``linspace(0, rmax, nbins + 1)``; a
  pair at distance d goes to bin ``ceil(d / dr) - 1``, so bins are half-open ``(lo, hi]`` and
  pairs at exactly zero distance are dropped. ``r`` holds the bin centres. One deliberate
  difference: pairs at exactly ``rmax`` are not counted (the neighbour search is strict, and
  searching beyond half the cell width, the usual ``rmax``, would cost four times as much).
- Every frame is normalised on its own and the frames are averaged:
  :math:`g_f(r) = n_f(r) / (N_a \, (N_b / V_f) \, \Delta V(r))` where :math:`n_f(r)` counts
  ordered pairs (centre of species a, neighbour of species b; both orders for the total),
  :math:`N_a, N_b` are the species counts and :math:`\Delta V` is the shell volume.
- Partials are symmetric, :math:`g_{ab} = g_{ba}`, and the total is
  :math:`g = \sum_{ab} c_a c_b g_{ab}` with atomic fractions :math:`c`. For an ideal gas of N
  atoms the total tends to :math:`(N - 1) / N`, not 1 (an atom is not its own neighbour).

Bulk (``pbc`` all true): :math:`V_f` is the cell volume and :math:`\Delta V = 4\pi r^2 dr`
integrated exactly over the bin. ``rmax`` may be at most half the smallest perpendicular width of
the cell: then the sphere of radius ``rmax`` fits in the cell and every pair is counted once.

Slab (exactly one open direction, e.g. ``pbc = (True, True, False)``): the volume is
:math:`V_f = A_f h_f`, with A the area of the periodic plane and h the slab thickness along its
normal (``slab_thickness``, or by default the extent of the atoms along the normal in that frame).
A shell of radius r around an atom uniformly placed in the slab lies inside it for the fraction
:math:`1 - r / (2h)` (r <= h) or :math:`h / (2r)` (r > h), so
:math:`\Delta V = \int 4\pi r^2 \, \mathrm{fraction}(r) \, dr` over the bin. With this density
definition an ideal gas filling the slab gives :math:`g \to (N - 1)/N` at every r, also r > h.
``rmax`` may be at most half the smallest in-plane width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flashmd.analysis._common import (
    DEFAULT_BLOCK_FRAMES,
    PBC,
    as_cells,
    as_frames,
    as_pbc,
    check_positive,
    frame_blocks,
    species_groups,
)
from flashmd.analysis._geometry import (
    PairSearch,
    completed_cell,
    periodic_area,
    perpendicular_widths,
    triple_product,
)


@dataclass(frozen=True)
class RDFResult:
    """Radial distribution functions averaged over ``n_frames`` frames.

    ``r`` (nbins,) Å bin centres; ``edges`` (nbins + 1,) Å; ``total`` (nbins,) dimensionless;
    ``partial`` maps ``(Z_a, Z_b)`` with ``Z_a <= Z_b`` to (nbins,) arrays.
    """

    r: np.ndarray
    edges: np.ndarray
    total: np.ndarray
    partial: dict[tuple[int, int], np.ndarray] = field(repr=False)
    n_frames: int

    def pair(self, z_a: int, z_b: int) -> np.ndarray:
        """Partial g(r) (nbins,) for species ``z_a`` and ``z_b`` in either order."""
        return self.partial[(min(z_a, z_b), max(z_a, z_b))]


def shell_volumes(edges: np.ndarray) -> np.ndarray:
    """Volumes (nbins,) Å^3 of spherical shells between ``edges`` (nbins + 1,) Å (ASE's formula)."""
    dr = float(edges[-1] / (edges.size - 1))
    lower = edges[:-1]
    return 4.0 * np.pi * dr * (lower**2 + lower * dr + dr**2 / 3.0)


def slab_shell_volumes(edges: np.ndarray, thickness: float) -> np.ndarray:
    """Shell volumes (nbins,) Å^3 inside a slab of ``thickness`` Å, averaged over positions."""

    def integral(r: np.ndarray) -> np.ndarray:
        inside = 4.0 * np.pi * (r**3 / 3.0 - r**4 / (8.0 * thickness))
        h = thickness
        beyond = 5.0 * np.pi * h**3 / 6.0 + np.pi * h * (r**2 - h**2)
        return np.where(r <= h, inside, beyond)

    values = integral(np.asarray(edges, dtype=np.float64))
    return np.diff(values)


class RDFAccumulator:
    """Streaming RDF: call :meth:`update` with blocks of frames, then :meth:`result`.

    Parameters
    ----------
    numbers
        (n_atoms,) atomic numbers.
    rmax
        Largest distance in Å (the outer edge of the last bin).
    nbins
        Number of bins.
    pbc
        (3,) periodic flags: all true (bulk) or exactly one false (slab).
    slab_thickness
        Slab thickness in Å along the normal of the periodic plane; default: the extent of the
        atoms along that normal in every frame. Only for slabs.
    """

    def __init__(
        self,
        numbers: np.ndarray,
        rmax: float,
        nbins: int,
        pbc: PBC = True,
        slab_thickness: float | None = None,
    ):
        self.species, self._index = species_groups(numbers)
        self.rmax = check_positive("rmax", rmax)
        if int(nbins) != nbins or nbins < 1:
            raise ValueError(f"nbins must be a positive integer, got {nbins}")
        self.nbins = int(nbins)
        self.pbc = as_pbc(pbc)
        n_periodic = int(self.pbc.sum())
        if n_periodic not in (2, 3):
            raise ValueError(
                f"RDF needs a bulk (pbc all true) or slab (one open direction) geometry, got pbc="
                f"{self.pbc.tolist()}: without a periodic volume the density is undefined"
            )
        self.slab = n_periodic == 2
        if slab_thickness is not None and not self.slab:
            raise ValueError("slab_thickness only applies to slab geometries (one open direction)")
        self.slab_thickness = (
            None if slab_thickness is None else check_positive("slab_thickness", slab_thickness)
        )
        self.edges = np.linspace(0.0, self.rmax, self.nbins + 1)
        self._dr = float(self.rmax / self.nbins)
        self._bulk_shells = shell_volumes(self.edges)
        n_species = self.species.size
        upper = np.triu_indices(n_species)
        self._pair_type = np.zeros((n_species, n_species), dtype=np.int64)
        self._pair_type[upper] = np.arange(upper[0].size)
        self._pair_type.T[upper] = np.arange(upper[0].size)
        self._pair_species = [
            (int(self.species[a]), int(self.species[b])) for a, b in zip(*upper, strict=True)
        ]
        self._n_types = upper[0].size
        self._sum = np.zeros((self._n_types, self.nbins))
        self.n_frames = 0
        self._search = PairSearch(self.rmax)

    def _check_rmax(self, cell: np.ndarray) -> None:
        widths = perpendicular_widths(cell, self.pbc).min(axis=1)
        if np.any(2.0 * self.rmax > widths):
            limit = 0.5 * float(widths.min())
            raise ValueError(
                f"rmax={self.rmax} Å exceeds half the smallest perpendicular cell width "
                f"({limit:.6g} Å) in some frame; use rmax <= {limit:.6g} Å or a larger cell"
            )

    def _norm_factors(self, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """Per frame and bin, V_f / shell volume: (n_frames, nbins) (dimensionless)."""
        if not self.slab:
            volume = np.abs(triple_product(cell))
            return volume[:, None] / self._bulk_shells[None, :]
        normal = completed_cell(cell, self.pbc)[:, int(np.flatnonzero(~self.pbc)[0])]
        if self.slab_thickness is None:
            height = np.sum(positions * normal[:, None, :], axis=-1)
            thickness = height.max(axis=1) - height.min(axis=1)
            if np.any(thickness <= 0):
                raise ValueError("slab thickness from atom positions is zero; pass slab_thickness")
        else:
            thickness = np.full(positions.shape[0], self.slab_thickness)
        area = periodic_area(cell, self.pbc)
        shells = np.stack([slab_shell_volumes(self.edges, h) for h in thickness])
        return (area * thickness)[:, None] / shells

    def update(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Add frames: ``positions`` (n_frames, n_atoms, 3) Å, ``cell`` (n_frames, 3, 3) Å."""
        positions = as_frames("positions", positions, self._index.size)
        cell = as_cells(cell, positions.shape[0])
        self._check_rmax(cell)
        factors = self._norm_factors(positions, cell)
        size = self._n_types * self.nbins
        for frame in range(positions.shape[0]):
            i, j, d = self._search(positions[frame], cell[frame], self.pbc, "ijd")
            bins = np.ceil(d / self._dr).astype(np.int64)
            keep = (bins >= 1) & (bins <= self.nbins)
            types = self._pair_type[self._index[i[keep]], self._index[j[keep]]]
            counts = np.bincount(types * self.nbins + bins[keep] - 1, minlength=size)
            self._sum += counts.reshape(self._n_types, self.nbins) * factors[frame]
            self.n_frames += 1

    def result(self) -> RDFResult:
        """Total and partial g(r) averaged over all frames seen so far."""
        if self.n_frames == 0:
            raise ValueError("no frames were added to the RDF accumulator")
        counts = np.bincount(self._index, minlength=self.species.size)
        n_atoms = self._index.size
        partial = {}
        for k, (z_a, z_b) in enumerate(self._pair_species):
            n_a = counts[np.searchsorted(self.species, z_a)]
            n_b = counts[np.searchsorted(self.species, z_b)]
            both_orders = 2.0 if z_a == z_b else 1.0
            partial[(z_a, z_b)] = both_orders * self._sum[k] / (n_a * n_b * self.n_frames)
        total = 2.0 * self._sum.sum(axis=0) / (n_atoms * n_atoms * self.n_frames)
        centres = 0.5 * (self.edges[:-1] + self.edges[1:])
        return RDFResult(centres, self.edges.copy(), total, partial, self.n_frames)


def rdf(
    positions: np.ndarray,
    cell: np.ndarray,
    numbers: np.ndarray,
    rmax: float,
    nbins: int,
    pbc: PBC = True,
    slab_thickness: float | None = None,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> RDFResult:
    """RDF of whole arrays: ``positions`` (n_frames, n_atoms, 3) Å, ``cell`` (n_frames, 3, 3) Å.

    See :class:`RDFAccumulator` for the parameters and the module docstring for conventions.
    """
    positions = as_frames("positions", positions)
    cell = as_cells(cell, positions.shape[0])
    acc = RDFAccumulator(numbers, rmax, nbins, pbc, slab_thickness)
    for block in frame_blocks(positions.shape[0], block_frames):
        acc.update(positions[block], cell[block])
    return acc.result()
