"""Potential, kinetic and total energy traces; NVE drift and fluctuations.

The drift is the slope of a least-squares line through the total energy against time, per atom,
in eV/atom/ps. Two fluctuation measures are reported, both per atom: the standard deviation of
the total energy, and the standard deviation of its residual about the fitted line (the noise
left once the drift is removed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flashmd.analysis._common import as_masses
from flashmd.analysis.temperature import kinetic_energy


@dataclass(frozen=True)
class DriftFit:
    """Line fitted to the total energy: slope in eV/atom/ps, fluctuations in eV/atom."""

    drift_eV_per_atom_per_ps: float
    intercept_eV: float
    std_eV_per_atom: float
    residual_std_eV_per_atom: float


def nve_drift(time_fs: np.ndarray, total_energy: np.ndarray, n_atoms: int) -> DriftFit:
    """Fit ``total_energy`` (n_frames,) eV against ``time_fs`` (n_frames,) fs; ``n_atoms`` atoms."""
    time_fs = np.asarray(time_fs, dtype=np.float64)
    total_energy = np.asarray(total_energy, dtype=np.float64)
    if time_fs.ndim != 1 or time_fs.shape != total_energy.shape:
        raise ValueError(
            f"time_fs and total_energy must be 1-D of equal length, got {time_fs.shape} "
            f"and {total_energy.shape}"
        )
    if time_fs.size < 2 or np.ptp(time_fs) == 0:
        raise ValueError("a drift needs at least two frames at different times")
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be positive, got {n_atoms}")
    time_ps = time_fs * 1e-3
    slope, intercept = np.polyfit(time_ps, total_energy, 1)
    residual = total_energy - (slope * time_ps + intercept)
    return DriftFit(
        float(slope) / n_atoms,
        float(intercept),
        float(np.std(total_energy)) / n_atoms,
        float(np.std(residual)) / n_atoms,
    )


@dataclass(frozen=True)
class EnergyResult:
    """Energy traces (n_frames,) in eV at ``time_fs`` (n_frames,) fs, and the drift fit."""

    time_fs: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    total: np.ndarray
    fit: DriftFit


class EnergyAccumulator:
    """Energy traces from blocks of frames; keeps only (n_frames,) arrays.

    ``masses`` (n_atoms,) amu.
    """

    def __init__(self, masses: np.ndarray):
        self.masses = as_masses(masses)
        self._time: list[np.ndarray] = []
        self._potential: list[np.ndarray] = []
        self._kinetic: list[np.ndarray] = []

    def update(self, time_fs: np.ndarray, energy: np.ndarray, momenta: np.ndarray) -> None:
        """Add frames: ``time_fs`` (n_frames,) fs, ``energy`` (n_frames,) eV (potential),
        ``momenta`` (n_frames, n_atoms, 3) amu·Å/(ASE time)."""
        time_fs = np.asarray(time_fs, dtype=np.float64)
        energy = np.asarray(energy, dtype=np.float64)
        kinetic = kinetic_energy(momenta, self.masses)
        if time_fs.shape != kinetic.shape or energy.shape != kinetic.shape:
            raise ValueError(
                f"time_fs {time_fs.shape}, energy {energy.shape} and momenta "
                f"({kinetic.shape[0]} frames) must cover the same frames"
            )
        self._time.append(time_fs)
        self._potential.append(energy)
        self._kinetic.append(kinetic)

    def result(self) -> EnergyResult:
        """Traces of every frame added so far and the drift fit over all of them."""
        if not self._time:
            raise ValueError("no frames were added to the energy accumulator")
        time_fs, potential, kinetic = (
            np.concatenate(a) for a in (self._time, self._potential, self._kinetic)
        )
        total = potential + kinetic
        fit = nve_drift(time_fs, total, self.masses.size)
        return EnergyResult(time_fs, potential, kinetic, total, fit)


def energy_traces(
    time_fs: np.ndarray, energy: np.ndarray, momenta: np.ndarray, masses: np.ndarray
) -> EnergyResult:
    """Traces and drift of whole arrays (shapes as in :meth:`EnergyAccumulator.update`)."""
    acc = EnergyAccumulator(masses)
    acc.update(time_fs, energy, momenta)
    return acc.result()
