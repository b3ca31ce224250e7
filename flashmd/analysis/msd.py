r"""Mean-squared displacement and diffusion coefficients.

.. math:: \mathrm{MSD}_a(\tau) = \frac{1}{T - \tau} \sum_{t=0}^{T-\tau-1}
          \frac{1}{N_g} \sum_{i \in g} \left(x_{i,a}(t+\tau) - x_{i,a}(t)\right)^2

per Cartesian axis a and group g (a species, or all atoms), averaged over all T - tau time
origins by FFT, from unwrapped positions. With ``remove_com`` the centre-of-mass displacement of
all atoms is subtracted from every atom first (removes a drift of the whole system).

The diffusion coefficient comes from a least-squares line ``MSD = 2 d D t + c`` fitted over a
window of lags, d being the number of axes used (3 for bulk, 2 for lateral diffusion in a slab).
It is returned in Å^2/fs and cm^2/s (1 Å^2/fs = 0.1 cm^2/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flashmd.analysis._common import (
    DEFAULT_BLOCK_FRAMES,
    as_frames,
    as_masses,
    check_positive,
    frame_blocks,
    group_weights,
    species_groups,
    sum_over_atoms,
)
from flashmd.analysis._lagsums import LagSums

#: 1 Å^2/fs in cm^2/s: (1e-8 cm)^2 / 1e-15 s.
CM2_PER_S_PER_A2_PER_FS: float = 0.1


@dataclass(frozen=True)
class MSDResult:
    """MSD per species and axis.

    ``lag_fs`` (n_lags,) fs; ``species`` (n_species,) atomic numbers; ``per_axis``
    (n_lags, n_species + 1, 3) Å^2, group ``k`` for ``species[k]`` and the last for all atoms.
    """

    lag_fs: np.ndarray
    species: np.ndarray
    per_axis: np.ndarray

    def group(self, number: int | None = None) -> int:
        """Column of ``per_axis`` for atomic number ``number`` (None: all atoms)."""
        if number is None:
            return self.species.size
        found = np.flatnonzero(self.species == number)
        if found.size == 0:
            raise KeyError(f"no atoms with atomic number {number}")
        return int(found[0])

    @property
    def total(self) -> np.ndarray:
        """Three-dimensional MSD (n_lags,) Å^2 of all atoms."""
        return self.per_axis[:, -1].sum(axis=1)

    def of_species(self, number: int) -> np.ndarray:
        """Three-dimensional MSD (n_lags,) Å^2 of the atoms with atomic number ``number``."""
        return self.per_axis[:, self.group(number)].sum(axis=1)


class MSDAccumulator:
    """Streaming MSD for lags 0..``max_lag`` frames: :meth:`update` positions, then :meth:`result`.

    Parameters
    ----------
    numbers
        (n_atoms,) atomic numbers.
    dt_fs
        Interval between frames in fs.
    max_lag
        Largest lag in frames.
    masses
        (n_atoms,) amu; needed only with ``remove_com``.
    remove_com
        Subtract the centre-of-mass displacement of all atoms.
    """

    def __init__(
        self,
        numbers: np.ndarray,
        dt_fs: float,
        max_lag: int,
        masses: np.ndarray | None = None,
        remove_com: bool = False,
    ):
        self.species, index = species_groups(numbers)
        self.n_atoms = index.size
        self.dt_fs = check_positive("dt_fs", dt_fs)
        self._com_weights: np.ndarray | None = None
        if remove_com:
            if masses is None:
                raise ValueError("remove_com needs the masses")
            checked = as_masses(masses, self.n_atoms)
            self._com_weights = checked / checked.sum()
        weights = group_weights(index, self.species.size, np.ones(self.n_atoms))
        self._sums = LagSums(max_lag, weights, squares=True)
        self._reference: np.ndarray | None = None

    def update(self, positions: np.ndarray) -> None:
        """Add frames: ``positions`` (n_frames, n_atoms, 3) Å, unwrapped."""
        positions = as_frames("positions", positions, self.n_atoms)
        if self._com_weights is not None:
            weighted = positions * self._com_weights[None, :, None]
            com = sum_over_atoms(weighted, np.zeros(self.n_atoms, dtype=np.int64), 1)[:, -1]
            positions = positions - com[:, None, :]
        if self._reference is None and positions.shape[0] > 0:
            # displacements from the first frame keep the sums small (less cancellation)
            self._reference = positions[0].copy()
        self._sums.update(positions - self._reference)

    def result(self) -> MSDResult:
        """MSD over lags 0..min(max_lag, n_frames - 1)."""
        sums = self._sums.sums()
        n_lags = int(np.count_nonzero(sums.count))
        if n_lags == 0:
            raise ValueError("no frames were added to the MSD accumulator")
        squared = sums.late + sums.early - 2.0 * sums.cross
        per_axis = np.maximum(squared[:n_lags], 0.0) / sums.count[:n_lags, None, None]
        per_axis[0] = 0.0
        lag_fs = np.arange(n_lags) * self.dt_fs
        return MSDResult(lag_fs, self.species, per_axis)


def msd(
    positions: np.ndarray,
    numbers: np.ndarray,
    dt_fs: float,
    max_lag: int | None = None,
    masses: np.ndarray | None = None,
    remove_com: bool = False,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> MSDResult:
    """MSD of whole arrays: ``positions`` (n_frames, n_atoms, 3) Å unwrapped.

    ``max_lag`` defaults to n_frames - 1 (every lag). See :class:`MSDAccumulator`.
    """
    positions = as_frames("positions", positions)
    n_frames = positions.shape[0]
    max_lag = n_frames - 1 if max_lag is None else max_lag
    acc = MSDAccumulator(numbers, dt_fs, max_lag, masses, remove_com)
    for block in frame_blocks(n_frames, block_frames):
        acc.update(positions[block])
    return acc.result()


@dataclass(frozen=True)
class DiffusionFit:
    """Line ``MSD = 2 d D t + intercept`` fitted over lags ``fit_start_fs``..``fit_end_fs``."""

    D_A2_per_fs: float
    intercept_A2: float
    fit_start_fs: float
    fit_end_fs: float
    n_dims: int

    @property
    def D_cm2_per_s(self) -> float:
        """Diffusion coefficient in cm^2/s."""
        return self.D_A2_per_fs * CM2_PER_S_PER_A2_PER_FS


def diffusion_coefficient(
    result: MSDResult,
    fit_start_fs: float,
    fit_end_fs: float,
    species: int | None = None,
    axes: Sequence[int] = (0, 1, 2),
) -> DiffusionFit:
    """Fit the MSD of ``species`` (atomic number; None: all atoms) summed over ``axes``.

    Uses every lag with ``fit_start_fs <= lag <= fit_end_fs`` (fs), at least two.
    """
    axes = sorted(set(axes))
    if not axes or not set(axes) <= {0, 1, 2}:
        raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes}")
    tolerance = 1e-9 * float(result.lag_fs[-1] if result.lag_fs.size > 1 else 1.0)
    window = (result.lag_fs >= fit_start_fs - tolerance) & (result.lag_fs <= fit_end_fs + tolerance)
    if np.count_nonzero(window) < 2:
        raise ValueError(
            f"the fit window [{fit_start_fs}, {fit_end_fs}] fs holds fewer than two lags "
            f"(lags run from 0 to {result.lag_fs[-1]} fs)"
        )
    y = result.per_axis[window][:, result.group(species)][:, axes].sum(axis=1)
    slope, intercept = np.polyfit(result.lag_fs[window], y, 1)
    n_dims = len(axes)
    return DiffusionFit(
        float(slope) / (2 * n_dims),
        float(intercept),
        float(fit_start_fs),
        float(fit_end_fs),
        n_dims,
    )
