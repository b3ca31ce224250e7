"""Observables of several replicas (one side of a condition) pooled into one set.

Averages over frames weight every frame equally, whichever replica it comes from. Time
correlations (VACF, MSD) are averaged lag by lag over the lags all replicas cover, each replica
weighted by its number of time origins at that lag (n_frames - lag), which is what one long
average over all origins of all replicas gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from flashmd.analysis.msd import MSDResult
from flashmd.analysis.observables import TrajectoryObservables
from flashmd.analysis.rdf import RDFResult
from flashmd.analysis.sampling import pooled_standard_error
from flashmd.analysis.vacf import VACFResult


def _lag_average(curves: Sequence[np.ndarray], n_frames: Sequence[int]) -> np.ndarray:
    """Lag-by-lag average of ``curves`` (n_lags_k, ...) weighted by n_frames_k - lag."""
    n_lags = min(len(c) for c in curves)
    lags = np.arange(n_lags)
    weights = np.stack([np.maximum(n - lags, 0) for n in n_frames]).astype(np.float64)
    trailing = (slice(None), slice(None), *([None] * (curves[0].ndim - 1)))
    stacked = np.stack([c[:n_lags] for c in curves])
    return np.sum(weights[trailing] * stacked, axis=0) / weights.sum(axis=0)[trailing[1:]]


@dataclass(frozen=True)
class Pooled:
    """Replicas of one side (reference or rollout) of a condition, pooled on demand."""

    trajectories: tuple[TrajectoryObservables, ...]

    def __post_init__(self) -> None:
        if not self.trajectories:
            raise ValueError("nothing to pool: no trajectories")

    @property
    def first(self) -> TrajectoryObservables:
        return self.trajectories[0]

    @property
    def n_atoms(self) -> int:
        return self.first.n_atoms

    @property
    def species(self) -> np.ndarray:
        """(n_species,) atomic numbers, the columns of the per-species arrays."""
        return self.first.temperature.species

    @property
    def n_frames(self) -> int:
        """Analysed frames of all replicas."""
        return sum(t.n_frames for t in self.trajectories)

    @cached_property
    def temperature_per_group(self) -> np.ndarray:
        """Mean temperature (n_species + 1,) K over all frames: species columns, then all atoms."""
        return np.concatenate([t.temperature.per_group for t in self.trajectories]).mean(axis=0)

    @property
    def temperature(self) -> float:
        """Mean kinetic temperature of all atoms, K."""
        return float(self.temperature_per_group[-1])

    @cached_property
    def temperature_standard_error(self) -> float:
        """Standard error of :attr:`temperature`, K, from each replica's autocorrelation."""
        return pooled_standard_error([t.temperature.total for t in self.trajectories])

    @cached_property
    def potential_standard_error(self) -> float:
        """Standard error of :attr:`potential_per_atom`, eV/atom."""
        series = [t.energy.potential / self.n_atoms for t in self.trajectories]
        return pooled_standard_error(series)

    @cached_property
    def potential_per_atom(self) -> float:
        """Mean potential energy per atom, eV/atom."""
        energies = np.concatenate([t.energy.potential for t in self.trajectories])
        return float(energies.mean()) / self.n_atoms

    @property
    def equipartition_spread(self) -> float:
        """Largest |T_s - T| / T over species of the mean temperatures (0 for one species)."""
        per_group = self.temperature_per_group
        return float(np.max(np.abs(per_group[:-1] - per_group[-1]))) / float(per_group[-1])

    @cached_property
    def equipartition_standard_error(self) -> float:
        """Standard error of :attr:`equipartition_spread` (relative), from each replica's
        autocorrelation of its series ``(T_s - T) / T`` for the species ``s`` that sets the
        spread. A global thermostat (Bussi) or NVE leaves equipartition to the dynamics, which
        exchange energy between species slowly: 32 ps of the demo's 108 atoms, exact map,
        spread 2.5-3.2 % under Bussi against 0.6-0.9 % under Langevin 0.01/fs."""
        per_group = self.temperature_per_group
        worst = int(np.argmax(np.abs(per_group[:-1] - per_group[-1])))
        series = [
            (t.temperature.per_group[:, worst] - t.temperature.total) / float(per_group[-1])
            for t in self.trajectories
        ]
        return pooled_standard_error(series)

    @property
    def is_nve(self) -> bool:
        return all(t.ensemble == "nve" for t in self.trajectories)

    @property
    def worst_drift(self) -> float:
        """The NVE drift (eV/atom/ps) of largest magnitude over the replicas, with its sign."""
        drifts = [t.energy.fit.drift_eV_per_atom_per_ps for t in self.trajectories]
        return max(drifts, key=abs)

    @property
    def nan_count(self) -> int:
        return sum(t.nan_count for t in self.trajectories)

    @cached_property
    def min_distances(self) -> np.ndarray:
        """Closest pair (n_frames,) Å of every analysed frame of every replica."""
        return np.concatenate([t.min_distance for t in self.trajectories])

    def overlap_frames(self, threshold: float) -> int:
        """Frames whose closest pair is nearer than ``threshold`` Å."""
        return int(np.count_nonzero(self.min_distances < threshold))

    @cached_property
    def volumes_per_atom(self) -> np.ndarray | None:
        """Cell volume per atom (n_frames,) Å³ of every analysed frame of every replica, or None
        when the systems are not fully periodic."""
        if any(t.volume_per_atom is None for t in self.trajectories):
            return None
        return np.concatenate([t.volume_per_atom for t in self.trajectories])

    @cached_property
    def volume_standard_error(self) -> float | None:
        """Standard error of the mean of :attr:`volumes_per_atom`, Å³/atom, from each replica's
        autocorrelation (a liquid's volume at constant pressure decorrelates over picoseconds),
        or None when not periodic."""
        if self.volumes_per_atom is None:
            return None
        return pooled_standard_error([t.volume_per_atom for t in self.trajectories])

    @cached_property
    def volume_std_standard_error(self) -> float | None:
        """Standard error of the standard deviation of :attr:`volumes_per_atom`, Å³/atom: that
        of the mean squared deviation (each replica's series of ``(V - <V>)²``, its own
        autocorrelation) divided by ``2 σ_V``; 0 for a constant volume, None when not periodic."""
        volumes = self.volumes_per_atom
        if volumes is None:
            return None
        spread = float(volumes.std())
        if not spread > 0:
            return 0.0
        mean = volumes.mean()
        squares = [(t.volume_per_atom - mean) ** 2 for t in self.trajectories]
        return pooled_standard_error(squares) / (2.0 * spread)

    @property
    def at_constant_pressure(self) -> bool:
        return any(t.ensemble == "npt" for t in self.trajectories)

    @property
    def has_filter(self) -> bool:
        return all(t.filter_fallback is not None for t in self.trajectories)

    @property
    def uncertainty(self) -> np.ndarray | None:
        """Largest atom's stride uncertainty per frame (Å) of every trajectory, or None when
        a trajectory has none stored."""
        values = [t.uncertainty for t in self.trajectories]
        if any(v is None for v in values):
            return None
        return np.concatenate(values)

    @property
    def declined_fraction(self) -> float | None:
        """Fraction of strides adaptive strides declined, over the trajectories (None: none
        recorded)."""
        values = [t.declined_fraction for t in self.trajectories if t.declined_fraction is not None]
        return float(np.mean(values)) if values else None

    @property
    def acceptance(self) -> float | None:
        """Fraction of strides Metropolis chains accepted, over the trajectories (None: no
        chain)."""
        values = [t.acceptance for t in self.trajectories if t.acceptance is not None]
        return float(np.mean(values)) if values else None

    @property
    def solver_iterations(self) -> float | None:
        """Mean symplectic-solver iterations per stride over the trajectories (None: direct)."""
        values = [t.solver_iterations for t in self.trajectories]
        if any(v is None for v in values):
            return None
        return float(np.mean(values))

    @property
    def fallback_fraction(self) -> float:
        """Fraction of strides (frames after the first) that the energy filter rejected and
        that were redone (as half strides, or by velocity Verlet where none is served)."""
        flags = [t.filter_fallback[1:] for t in self.trajectories if t.filter_fallback is not None]
        strides = sum(f.size for f in flags)
        return float(sum(f.sum() for f in flags)) / strides if strides else 0.0

    @cached_property
    def rdf(self) -> RDFResult | None:
        """g(r) averaged over every RDF frame of every replica (None without a periodic volume)."""
        results = [t.rdf for t in self.trajectories if t.rdf is not None]
        if len(results) < len(self.trajectories):
            return None
        frames = np.array([r.n_frames for r in results], dtype=np.float64)

        def average(curves: list[np.ndarray]) -> np.ndarray:
            return np.tensordot(frames, np.stack(curves), axes=1) / frames.sum()

        first = results[0]
        partial = {k: average([r.partial[k] for r in results]) for k in first.partial}
        total = average([r.total for r in results])
        return RDFResult(first.r, first.edges, total, partial, int(frames.sum()))

    @cached_property
    def vacf(self) -> VACFResult:
        """VACF over the lags every replica covers."""
        values = _lag_average(
            [t.vacf.values for t in self.trajectories], [t.n_frames for t in self.trajectories]
        )
        first = self.first.vacf
        return VACFResult(first.lag_fs[: len(values)], first.species, values, first.mass_weighted)

    @cached_property
    def msd(self) -> MSDResult:
        """MSD over the lags every replica covers."""
        per_axis = _lag_average(
            [t.msd.per_axis for t in self.trajectories], [t.n_frames for t in self.trajectories]
        )
        first = self.first.msd
        return MSDResult(first.lag_fs[: len(per_axis)], first.species, per_axis)
