r"""Velocity autocorrelation function and vibrational density of states.

.. math:: C(\tau) = \frac{1}{T - \tau} \sum_{t=0}^{T-\tau-1} \sum_i w_i \, v_i(t) \cdot v_i(t+\tau)

averaged over all T - tau time origins, by FFT. Weights are 1/N_g (plain) or m_i / M_g
(mass-weighted), normalised within each group g (a species, or all atoms), so C is in
(Å/fs)^2 either way and C(0) is the mean (mass-weighted) squared speed of the group.
The spectrum is the cosine transform of C, with the frequency axis in THz.
"""

from __future__ import annotations

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
    velocities_A_per_fs,
)
from flashmd.analysis._lagsums import LagSums


@dataclass(frozen=True)
class VACFResult:
    """VACF per species and for all atoms.

    ``lag_fs`` (n_lags,) fs; ``species`` (n_species,) atomic numbers; ``values``
    (n_lags, n_species + 1) (Å/fs)^2, column ``k`` for ``species[k]`` and the last for all atoms.
    """

    lag_fs: np.ndarray
    species: np.ndarray
    values: np.ndarray
    mass_weighted: bool

    @property
    def total(self) -> np.ndarray:
        """VACF (n_lags,) (Å/fs)^2 of all atoms."""
        return self.values[:, -1]

    def of_species(self, number: int) -> np.ndarray:
        """VACF (n_lags,) (Å/fs)^2 of the atoms with atomic number ``number``."""
        found = np.flatnonzero(self.species == number)
        if found.size == 0:
            raise KeyError(f"no atoms with atomic number {number}")
        return self.values[:, int(found[0])]


class VACFAccumulator:
    """Streaming VACF for lags 0..``max_lag`` frames: :meth:`update` momenta, then :meth:`result`.

    Parameters
    ----------
    masses
        (n_atoms,) amu.
    numbers
        (n_atoms,) atomic numbers; default all atoms one species (0).
    dt_fs
        Interval between frames in fs.
    max_lag
        Largest lag in frames.
    mass_weighted
        Weight atoms by mass within each group.
    """

    def __init__(
        self,
        masses: np.ndarray,
        dt_fs: float,
        max_lag: int,
        numbers: np.ndarray | None = None,
        mass_weighted: bool = False,
    ):
        self.masses = as_masses(masses)
        numbers = np.zeros(self.masses.size, dtype=int) if numbers is None else numbers
        self.species, index = species_groups(numbers)
        if index.size != self.masses.size:
            raise ValueError("numbers and masses must have the same length")
        self.dt_fs = check_positive("dt_fs", dt_fs)
        self.mass_weighted = mass_weighted
        weights = self.masses if mass_weighted else np.ones_like(self.masses)
        self._sums = LagSums(max_lag, group_weights(index, self.species.size, weights))

    def update(self, momenta: np.ndarray) -> None:
        """Add frames: ``momenta`` (n_frames, n_atoms, 3) amu·Å/(ASE time)."""
        momenta = as_frames("momenta", momenta, self.masses.size)
        self._sums.update(velocities_A_per_fs(momenta, self.masses))

    def result(self) -> VACFResult:
        """VACF over lags 0..min(max_lag, n_frames - 1)."""
        sums = self._sums.sums()
        n_lags = int(np.count_nonzero(sums.count))
        if n_lags == 0:
            raise ValueError("no frames were added to the VACF accumulator")
        values = sums.cross[:n_lags].sum(axis=2) / sums.count[:n_lags, None]
        lag_fs = np.arange(n_lags) * self.dt_fs
        return VACFResult(lag_fs, self.species, values, self.mass_weighted)


def vacf(
    momenta: np.ndarray,
    masses: np.ndarray,
    dt_fs: float,
    numbers: np.ndarray | None = None,
    max_lag: int | None = None,
    mass_weighted: bool = False,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> VACFResult:
    """VACF of whole arrays: ``momenta`` (n_frames, n_atoms, 3) ASE units, ``masses`` (n_atoms,).

    ``max_lag`` defaults to n_frames - 1 (every lag). See :class:`VACFAccumulator`.
    """
    momenta = as_frames("momenta", momenta)
    n_frames = momenta.shape[0]
    max_lag = n_frames - 1 if max_lag is None else max_lag
    acc = VACFAccumulator(masses, dt_fs, max_lag, numbers, mass_weighted)
    for block in frame_blocks(n_frames, block_frames):
        acc.update(momenta[block])
    return acc.result()


def vibrational_dos(
    correlation: np.ndarray, dt_fs: float, window: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    r"""Vibrational density of states from a VACF.

    The VACF ``correlation`` (n_lags,) at lags ``k * dt_fs`` is extended evenly to negative
    lags, optionally multiplied by a Hann window that falls to zero at the last lag (smooths the
    spectrum, leaves C(0) and hence the normalisation unchanged) and Fourier transformed:
    :math:`S(\nu) = \int C(t) \cos(2\pi\nu t)\,dt`. The spectrum is scaled to unit area over
    :math:`\nu \ge 0` (trapezoid rule on the returned grid is exactly 1).

    Returns ``frequency_THz`` (n_lags,) spaced by 1 / (2 (n_lags - 1) dt) and ``dos``
    (n_lags,) in 1/THz.
    """
    correlation = np.asarray(correlation, dtype=np.float64)
    if correlation.ndim != 1 or correlation.size < 2:
        raise ValueError(f"correlation must be 1-D with at least two lags, got {correlation.shape}")
    if correlation[0] <= 0:
        raise ValueError("correlation at zero lag must be positive")
    dt_ps = check_positive("dt_fs", dt_fs) * 1e-3
    n_half = correlation.size - 1
    if window:
        correlation = correlation * 0.5 * (1.0 + np.cos(np.pi * np.arange(n_half + 1) / n_half))
    even = np.concatenate([correlation, correlation[-2:0:-1]])
    spectrum = np.fft.rfft(even).real * dt_ps
    frequency = np.fft.rfftfreq(even.size, d=dt_ps)
    # sum over the full DFT period times the spacing 1/(2 M dt) is C(0): half of it for nu >= 0
    return frequency, 2.0 * spectrum / correlation[0]


def mean_frequency(frequency_THz: np.ndarray, dos: np.ndarray, band_THz: float) -> float:
    """First moment ``∫ν S(ν) dν / ∫S(ν) dν`` in THz of a vibrational density of states
    (:func:`vibrational_dos`: ``frequency_THz`` and ``dos``, both (n,)) over ``[0, band_THz]``,
    where two spectra sampled at different intervals are compared within the band both resolve
    (the coarser one's Nyquist frequency). A long stride that slows the vibrations (as the
    implicit midpoint rule does, by ``atan(hω/2) / (hω/2)``) lowers it."""
    frequency_THz, dos = np.asarray(frequency_THz), np.asarray(dos)
    inside = frequency_THz <= check_positive("band_THz", band_THz) * (1 + 1e-12)
    if inside.sum() < 2:
        raise ValueError(f"fewer than two frequencies of the spectrum lie below {band_THz} THz")
    f, s = frequency_THz[inside], dos[inside]
    return float(np.trapezoid(f * s, f) / np.trapezoid(s, f))
