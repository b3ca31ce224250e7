"""One streaming pass over a stored trajectory: every observable the evaluation report needs.

The trajectory is read in blocks of whole chunks (:attr:`TrajectoryReader.chunk_frames`), so
memory holds one block plus per-frame traces, whatever the length of the trajectory. Frames up to
the first one holding a non-finite value are analysed; the non-finite values of all frames are
counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flashmd.analysis._common import frame_interval_fs
from flashmd.analysis._geometry import triple_product
from flashmd.analysis.distances import MinDistanceAccumulator
from flashmd.analysis.energy import EnergyAccumulator, EnergyResult
from flashmd.analysis.msd import MSDAccumulator, MSDResult
from flashmd.analysis.rdf import RDFAccumulator, RDFResult
from flashmd.analysis.temperature import TemperatureAccumulator, TemperatureResult
from flashmd.analysis.tolerances import AnalysisSettings
from flashmd.analysis.vacf import VACFAccumulator, VACFResult
from flashmd.data.store import TrajectoryReader

#: (positions (F, A, 3) Å, cell (F, 3, 3) Å) -> potential energies (F,) eV, replacing stored ones.
EnergyFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Per-frame arrays of rollout stores with the energy filter's statistics.
FILTER_KEYS = ("filter_scale", "filter_fallback")
#: Arrays whose non-finite values are counted.
CHECKED_KEYS = ("positions", "momenta", "cell", "energy")
#: Frames read at once, at least (rounded up to whole chunks).
BLOCK_FRAMES = 1024
#: |total momentum| / sqrt(sum |p_i|^2) below which the centre of mass counts as fixed.
FIXED_COM_RATIO = 1e-6


@dataclass(frozen=True)
class TrajectoryObservables:
    """Observables of one trajectory over its ``n_frames`` analysed frames.

    ``min_distance`` (n_frames,) Å closest pair per frame; ``filter_scale`` and
    ``filter_fallback`` (n_frames,) or None when the store has no filter statistics;
    ``solver_iterations`` the symplectic solver's mean iterations per stride, or None (direct
    strides, or a store without them); ``uncertainty`` (n_frames,) Å the largest stride
    uncertainty of an atom per frame (``flashmd md --uncertainty``), or None;
    ``declined_fraction`` the fraction of strides an adaptive stride declined, or None (fixed);
    ``acceptance`` the fraction of strides a Metropolis chain accepted, or None (no chain);
    ``rdf`` is None for geometries without a periodic volume; ``ensemble`` is the production
    ensemble ("nve", "langevin", "bussi", "npt", "metropolis", or "?"); ``volume_per_atom``
    (n_frames,) Å³ the cell volume per atom of fully periodic systems, else None;
    ``friction_per_fs`` the Langevin friction (1/fs) of a Langevin or constant-pressure run that
    records it, else None; ``timestep_fs`` the run's timestep (a rollout's: its stride), fs.
    """

    traj_id: str
    numbers: np.ndarray
    masses: np.ndarray
    pbc: np.ndarray
    temperature_K: float | None
    ensemble: str
    dt_fs: float
    n_stored: int
    n_frames: int
    nan_count: int
    fixed_com: bool
    temperature: TemperatureResult
    energy: EnergyResult
    vacf: VACFResult
    msd: MSDResult
    rdf: RDFResult | None
    min_distance: np.ndarray
    filter_scale: np.ndarray | None
    filter_fallback: np.ndarray | None
    solver_iterations: float | None = None
    uncertainty: np.ndarray | None = None
    declined_fraction: float | None = None
    acceptance: float | None = None
    volume_per_atom: np.ndarray | None = None
    friction_per_fs: float | None = None
    timestep_fs: float | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.size)


def production_ensemble(attrs: dict) -> str:
    """ "nve", "langevin", "bussi", "metropolis" from a reference (dict) or rollout (str)
    ``ensemble`` attr."""
    value = attrs.get("ensemble")
    if isinstance(value, dict):
        value = value.get("production")
    return str(value).lower() if value else "?"


def langevin_friction(attrs: dict) -> float | None:
    """The Langevin friction (1/fs) of a reference (``ensemble.friction_per_fs``) or rollout
    (``friction_per_fs``) whose production ensemble is Langevin or constant pressure, else
    None."""
    if production_ensemble(attrs) not in ("langevin", "npt"):
        return None
    ensemble = attrs.get("ensemble")
    value = ensemble.get("friction_per_fs") if isinstance(ensemble, dict) else None
    value = attrs.get("friction_per_fs", value)
    return None if value is None else float(value)


def largest_rdf_rmax(reader: TrajectoryReader) -> float | None:
    """Half the smallest periodic width of the cell over every frame, Å (None: not periodic);
    at constant pressure the cell changes, and the RDF must fit in its smallest frame."""
    from flashmd.analysis._geometry import perpendicular_widths

    pbc = np.asarray(reader.attrs.get("pbc", [True] * 3), dtype=bool)
    if pbc.sum() < 2 or reader.n_frames == 0:
        return None
    cells = reader.read(0, reader.n_frames, ("cell",))["cell"]
    finite = np.isfinite(cells).all(axis=(1, 2))
    return 0.5 * float(perpendicular_widths(cells[finite], pbc).min())


def _has_fixed_com(momenta: np.ndarray) -> bool:
    total = np.linalg.norm(momenta.sum(axis=1), axis=-1)
    scale = np.sqrt(np.sum(momenta * momenta, axis=(1, 2)))
    return bool(np.all(total <= FIXED_COM_RATIO * scale))


def _first_bad(block: dict[str, np.ndarray]) -> tuple[int | None, int]:
    """Index of the first frame of ``block`` with a non-finite value, and their count."""
    bad_frames = np.zeros(len(block["energy"]), dtype=bool)
    count = 0
    for key in CHECKED_KEYS:
        bad = ~np.isfinite(block[key])
        count += int(bad.sum())
        bad_frames |= bad.reshape(bad.shape[0], -1).any(axis=1)
    found = np.flatnonzero(bad_frames)
    return (int(found[0]) if found.size else None), count


class _Accumulators:
    """All accumulators of one trajectory, created from its first block."""

    def __init__(
        self,
        reader: TrajectoryReader,
        settings: AnalysisSettings,
        dt_fs: float,
        rdf_rmax: float | None,
        momenta: np.ndarray,
    ):
        numbers, masses = reader.numbers, reader.masses
        self.pbc = np.asarray(reader.attrs.get("pbc", [True] * 3), dtype=bool)
        last_lag = reader.n_frames - 1
        self.fixed_com = _has_fixed_com(momenta)
        self.temperature = TemperatureAccumulator(masses, numbers, self.fixed_com)
        self.energy = EnergyAccumulator(masses)
        vacf_lag = min(last_lag, max(1, round(settings.vacf_max_lag_fs / dt_fs)))
        msd_lag = min(last_lag, max(1, round(settings.msd_max_lag_fs / dt_fs)))
        self.vacf = VACFAccumulator(masses, dt_fs, vacf_lag, numbers)
        self.msd = MSDAccumulator(numbers, dt_fs, msd_lag, masses, remove_com=True)
        self.min_distance = MinDistanceAccumulator(self.pbc)
        self.rdf = (
            None
            if rdf_rmax is None
            else RDFAccumulator(numbers, rdf_rmax, settings.rdf_nbins, self.pbc)
        )
        self.rdf_every = -(-reader.n_frames // settings.rdf_max_frames)
        self.volumes: list[np.ndarray] | None = [] if self.pbc.all() else None
        self.n_atoms = len(numbers)

    def update(self, start: int, block: dict[str, np.ndarray]) -> None:
        positions, momenta, cell = block["positions"], block["momenta"], block["cell"]
        self.temperature.update(momenta)
        self.energy.update(block["time_fs"], block["energy"], momenta)
        self.vacf.update(momenta)
        self.msd.update(positions)
        self.min_distance.update(positions, cell)
        if self.volumes is not None:
            self.volumes.append(np.abs(triple_product(cell)) / self.n_atoms)
        if self.rdf is not None:
            take = slice((-start) % self.rdf_every, None, self.rdf_every)
            if positions[take].shape[0]:
                self.rdf.update(positions[take], cell[take])


def observe(
    reader: TrajectoryReader,
    settings: AnalysisSettings,
    rdf_rmax: float | None,
    energy: EnergyFunction | None = None,
) -> TrajectoryObservables:
    """Read ``reader`` block by block and compute its observables.

    ``rdf_rmax`` Å is the RDF's largest distance (None: no RDF). ``energy`` (positions (F, A, 3)
    Å, cell (F, 3, 3) Å) -> (F,) eV replaces the stored potential energies (e.g. the reference
    calculator's, :mod:`flashmd.analysis.reference_energy`).

    Raises:
        ValueError: fewer than two analysable frames, or a non-uniform frame interval.
    """
    time_fs = reader.read(keys=("time_fs",))["time_fs"]
    dt_fs = frame_interval_fs(time_fs[np.isfinite(time_fs)])
    filters = FILTER_KEYS if all(k in reader.group for k in FILTER_KEYS) else ()
    keys = (*CHECKED_KEYS, "time_fs", *filters)
    step = reader.chunk_frames * max(1, -(-BLOCK_FRAMES // reader.chunk_frames))
    acc: _Accumulators | None = None
    analysed, nan_count = 0, 0
    stats: dict[str, list[np.ndarray]] = {k: [] for k in filters}
    for start in range(0, reader.n_frames, step):
        block = reader.read(start, min(start + step, reader.n_frames), keys)
        bad, count = _first_bad(block)
        nan_count += count
        if analysed < start:
            continue  # a bad frame came earlier: only count
        good = {k: v[:bad] for k, v in block.items()}
        if energy is not None and len(good["energy"]):
            good["energy"] = energy(good["positions"], good["cell"])
        if acc is None and len(good["energy"]):
            acc = _Accumulators(reader, settings, dt_fs, rdf_rmax, good["momenta"])
        if acc is not None and len(good["energy"]):
            acc.update(start, good)
            for key in filters:
                stats[key].append(good[key])
        analysed += len(good["energy"])
    if acc is None or analysed < 2:
        raise ValueError(
            f"{reader.name}: {analysed} frames before the first non-finite value; at least two "
            "are needed to evaluate a trajectory"
        )
    return TrajectoryObservables(
        traj_id=reader.group.basename,
        numbers=reader.numbers,
        masses=reader.masses,
        pbc=acc.pbc,
        temperature_K=reader.attrs.get("temperature_K"),
        ensemble=production_ensemble(reader.attrs),
        dt_fs=dt_fs,
        n_stored=reader.n_frames,
        n_frames=analysed,
        nan_count=nan_count,
        fixed_com=acc.fixed_com,
        temperature=acc.temperature.result(),
        energy=acc.energy.result(),
        vacf=acc.vacf.result(),
        msd=acc.msd.result(),
        rdf=None if acc.rdf is None else acc.rdf.result(),
        min_distance=acc.min_distance.result().distance,
        filter_scale=np.concatenate(stats["filter_scale"]) if filters else None,
        filter_fallback=np.concatenate(stats["filter_fallback"]) if filters else None,
        solver_iterations=_solver_iterations(reader, analysed),
        uncertainty=_uncertainty(reader, analysed),
        declined_fraction=_declined_fraction(reader, analysed),
        acceptance=_acceptance(reader, analysed),
        volume_per_atom=None if acc.volumes is None else np.concatenate(acc.volumes),
        friction_per_fs=langevin_friction(reader.attrs),
        timestep_fs=reader.attrs.get("timestep_fs"),
    )


def _acceptance(reader: TrajectoryReader, n_frames: int) -> float | None:
    """Fraction of strides over frames ``1..n_frames-1`` a Metropolis chain accepted (each
    frame holds the fraction since the previous one); None for other ensembles."""
    if production_ensemble(reader.attrs) != "metropolis" or "stride_accepted" not in reader.group:
        return None
    if n_frames < 2:
        return None
    return float(np.mean(reader.group["stride_accepted"][1:n_frames]))


def _declined_fraction(reader: TrajectoryReader, n_frames: int) -> float | None:
    """Fraction of frames ``1..n_frames-1`` whose stride the adaptive stride declined; None when
    not stored or none declined (a fixed stride)."""
    if "stride_declined" not in reader.group or n_frames < 2:
        return None
    values = np.asarray(reader.group["stride_declined"][1:n_frames], dtype=np.float64)
    if not np.isfinite(values).all() or not values.any():
        return None
    return float(values.mean())


def _uncertainty(reader: TrajectoryReader, n_frames: int) -> np.ndarray | None:
    """(n_frames,) Å the largest atom's stride uncertainty per frame, or None (not stored)."""
    if "uncertainty" not in reader.group:
        return None
    return np.asarray(reader.group["uncertainty"][:n_frames], dtype=np.float64).max(axis=1)


def _solver_iterations(reader: TrajectoryReader, n_frames: int) -> float | None:
    """Mean solver iterations per stride over frames ``1..n_frames-1`` of a rollout store's
    ``solver_iterations`` (each frame sums the strides since the previous one); None when
    absent or all zero (direct strides)."""
    if "solver_iterations" not in reader.group or n_frames < 2:
        return None
    per_frame = np.asarray(reader.group["solver_iterations"][1:n_frames], dtype=np.float64)
    stride = reader.attrs.get("timestep_fs")
    interval = reader.attrs.get("sample_interval_fs")
    strides_per_frame = round(interval / stride) if stride and interval else 1
    if not np.isfinite(per_frame).all() or not per_frame.any():
        return None
    return float(per_frame.mean()) / max(1, strides_per_frame)
