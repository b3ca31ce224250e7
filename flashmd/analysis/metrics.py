"""Summary metrics of a rollout against its reference, each judged against a tolerance.

Every metric has a reference value, a rollout value, their difference (in the metric's unit,
or relative where the tolerance is relative), the tolerance and a status: ``pass``, ``fail``, or
``skip`` when it does not apply (the note says why). Skipped metrics never fail an evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from flashmd.analysis.msd import DiffusionFit, diffusion_coefficient
from flashmd.analysis.pooled import Pooled
from flashmd.analysis.tolerances import EvaluationConfig
from flashmd.analysis.vacf import mean_frequency, vibrational_dos

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Metric:
    """One row of the summary table.

    ``key`` is a stable identifier; ``unit`` applies to ``reference`` and ``rollout``;
    ``difference`` is in ``difference_unit``; ``tolerance`` is the limit as text; ``noise`` is
    two standard errors of the difference (both sides' statistical noise, from each replica's
    autocorrelation time), in ``difference_unit``, where it is estimated (else None).
    """

    key: str
    name: str
    unit: str
    reference: float | None
    rollout: float | None
    difference: float | None
    difference_unit: str
    tolerance: str
    status: Status
    note: str = ""
    noise: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _judge(ok: bool) -> Status:
    return "pass" if ok else "fail"


def rdf_mean_abs_difference(reference: Pooled, rollout: Pooled) -> float | None:
    """Largest mean |Δg(r)| over the total and the partials (None if either has no RDF)."""
    ref, run = reference.rdf, rollout.rdf
    if ref is None or run is None:
        return None
    curves = [(ref.total, run.total)] + [(ref.partial[k], run.partial[k]) for k in ref.partial]
    return max(float(np.mean(np.abs(a - b))) for a, b in curves)


@dataclass(frozen=True)
class DiffusionComparison:
    """Diffusion fits of both sides over one window, and the MSD (Å^2, all atoms, centre of mass
    removed) of each side at the end of that window; ``diffusive``: the reference diffuses
    (always True with ``diffusion: always``)."""

    reference: DiffusionFit
    rollout: DiffusionFit
    diffusive: bool
    reference_msd_A2: float
    rollout_msd_A2: float


def _msd_at(pooled: Pooled, lag_fs: float, axes: tuple[int, ...]) -> float:
    msd = pooled.msd
    at = int(np.argmin(np.abs(msd.lag_fs - lag_fs)))
    return float(msd.per_axis[at, -1, list(axes)].sum())


def _periodic_axes(pooled: Pooled) -> tuple[int, ...]:
    """Axes a diffusion coefficient is fitted over: the periodic ones (all three if none)."""
    return tuple(int(a) for a in np.flatnonzero(pooled.first.pbc)) or (0, 1, 2)


def compare_diffusion(
    reference: Pooled, rollout: Pooled, config: EvaluationConfig
) -> DiffusionComparison | str:
    """Fit both MSDs over the common window, or say (a string) why that is impossible."""
    largest = min(float(reference.msd.lag_fs[-1]), float(rollout.msd.lag_fs[-1]))
    start, end = (f * largest for f in config.analysis.diffusion_fit)
    axes = _periodic_axes(reference)
    try:
        fits = [diffusion_coefficient(p.msd, start, end, axes=axes) for p in (reference, rollout)]
    except ValueError as error:
        return f"no diffusion fit: {error}"
    ref_msd, run_msd = _msd_at(reference, end, axes), _msd_at(rollout, end, axes)
    mode = config.analysis.diffusion
    diffusive = mode == "always" or (mode == "auto" and ref_msd >= config.analysis.diffusive_msd_A2)
    return DiffusionComparison(fits[0], fits[1], diffusive, ref_msd, run_msd)


def _relative(name: str, key: str, unit: str, ref: float, run: float, tol: float) -> Metric:
    rel = (run - ref) / ref if ref != 0 else float("inf")
    return Metric(
        key, name, unit, ref, run, rel, "relative", f"|rel| ≤ {tol:g}", _judge(abs(rel) <= tol)
    )


def _with_noise(
    row: Metric,
    noise: float,
    limit: float,
    judged: float | None = None,
    reference_noise: float | None = None,
) -> Metric:
    """``row`` with its noise (2σ of the judged value: the difference, or ``judged`` where the
    tolerance bounds another value) and, where that value lies within the noise of the tolerance
    (the verdict could go either way), a note that the runs are too short to judge it. When the
    reference's own share of the noise (``reference_noise``, 2σ) reaches the tolerance, no
    rollout can settle the row, and the note says how much longer the reference must be."""
    note = row.note
    value = row.difference if judged is None else judged
    if value is not None and abs(abs(value) - limit) < noise:
        note = f"within the runs' own noise (2σ = {noise:.3g}) of the tolerance: too short to judge"
        if reference_noise is not None and limit > 0 and reference_noise >= limit:
            note += (
                f"; the reference alone has 2σ = {reference_noise:.3g}, so about "
                f"{(reference_noise / limit) ** 2:.1f}x its length would bring it below the "
                "tolerance (generate more and pool it: --reference A B)"
            )
    return Metric(**{**row.as_dict(), "noise": noise, "note": note})


def _temperature_row(reference: Pooled, rollout: Pooled, tol: float) -> Metric:
    ref, run = reference.temperature, rollout.temperature
    row = _relative("mean kinetic temperature", "temperature", "K", ref, run, tol)
    errors = np.hypot(reference.temperature_standard_error, rollout.temperature_standard_error)
    scale = 2 / ref if ref else float("inf")
    own = scale * reference.temperature_standard_error
    return _with_noise(row, scale * float(errors), tol, reference_noise=own)


def _potential_row(reference: Pooled, rollout: Pooled, limit: float) -> Metric:
    ref_v, run_v = reference.potential_per_atom, rollout.potential_per_atom
    dv = 1e3 * (run_v - ref_v)
    row = Metric(
        "potential_energy",
        "mean potential energy",
        "eV/atom",
        ref_v,
        run_v,
        dv,
        "meV/atom",
        f"|Δ| ≤ {limit:g} meV/atom",
        _judge(abs(dv) <= limit),
    )
    errors = np.hypot(reference.potential_standard_error, rollout.potential_standard_error)
    return _with_noise(
        row, 2e3 * float(errors), limit, reference_noise=2e3 * reference.potential_standard_error
    )


def compare(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> list[Metric]:
    """Every summary metric of ``rollout`` against ``reference``."""
    tol = config.tolerances
    rows = [
        _temperature_row(reference, rollout, tol.temperature_rel),
        _potential_row(reference, rollout, tol.potential_energy_meV_per_atom),
    ]
    mad = rdf_mean_abs_difference(reference, rollout)
    rows.append(
        Metric(
            "rdf",
            "RDF mean |Δg(r)|",
            "",
            None,
            None,
            mad,
            "",
            f"≤ {tol.rdf_mean_abs:g}",
            "skip" if mad is None else _judge(mad <= tol.rdf_mean_abs),
            "no periodic volume" if mad is None else "largest over the total and the partials",
        )
    )
    rows.append(_diffusion_row(reference, rollout, config))
    rows.append(_frequency_row(reference, rollout, config))
    rows.append(_equipartition_row(reference, rollout, config))
    rows.append(_drift_row(reference, rollout, config))
    rows.append(_overlap_row(reference, rollout, config))
    rows.append(
        Metric(
            "nan_count",
            "non-finite values",
            "count",
            reference.nan_count,
            rollout.nan_count,
            rollout.nan_count - reference.nan_count,
            "count",
            f"rollout ≤ {tol.nan_count}",
            _judge(rollout.nan_count <= tol.nan_count),
        )
    )
    rows.append(_fallback_row(rollout, config))
    if reference.at_constant_pressure or rollout.at_constant_pressure:
        rows.extend(_volume_rows(reference, rollout, config))
    if rollout.solver_iterations is not None:  # symplectic strides: shown, not judged
        rows.append(_solver_row(rollout.solver_iterations))
    if rollout.declined_fraction is not None:  # adaptive strides: shown, not judged
        rows.append(_declined_row(rollout.declined_fraction))
    if rollout.acceptance is not None:  # a Metropolis chain: shown, not judged
        rows.append(_acceptance_row(rollout.acceptance))
    if rollout.uncertainty is not None:  # shown, not judged
        rows.append(_uncertainty_row(rollout.uncertainty))
    return rows


def _volume_rows(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> list[Metric]:
    """Mean volume and its standard deviation (constant pressure), relative to the reference."""
    tol = config.tolerances
    ref, run = reference.volumes_per_atom, rollout.volumes_per_atom
    if ref is None or run is None:
        return [
            Metric(key, name, "Å³/atom", None, None, None, "relative", "—", "skip", "not periodic")
            for key, name in (("volume", "mean volume"), ("volume_std", "volume fluctuation"))
        ]
    mean = _relative("mean volume", "volume", "Å³/atom", ref.mean(), run.mean(), tol.volume_rel)
    spread = _relative(
        "volume fluctuation (standard deviation)",
        "volume_std",
        "Å³/atom",
        float(ref.std()),
        float(run.std()),
        tol.volume_fluctuation_rel,
    )
    mean = _with_noise(
        mean,
        _relative_noise(reference.volume_standard_error, rollout.volume_standard_error, ref.mean()),
        tol.volume_rel,
    )
    spread = _with_noise(
        spread,
        _relative_noise(
            reference.volume_std_standard_error, rollout.volume_std_standard_error, float(ref.std())
        ),
        tol.volume_fluctuation_rel,
    )
    if not spread.note:
        spread = Metric(
            **{**spread.as_dict(), "note": "σ_V² = kT <V> κ_T: the isothermal compressibility"}
        )
    return [mean, spread]


def _relative_noise(
    reference_error: float | None, rollout_error: float | None, scale: float
) -> float:
    """2σ of a relative difference from both sides' standard errors (inf when unknown)."""
    if reference_error is None or rollout_error is None or scale == 0:
        return float("inf")
    return 2.0 * float(np.hypot(reference_error, rollout_error)) / abs(scale)


def _diffusion_row(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> Metric:
    tol = config.tolerances.diffusion_rel
    name, unit = "diffusion coefficient", "Å²/fs"
    found = (
        "a Metropolis chain's time correlations are not dynamics"
        if rollout.acceptance is not None
        else compare_diffusion(reference, rollout, config)
    )
    if isinstance(found, str) or config.analysis.diffusion == "never":
        note = found if isinstance(found, str) else "diffusion: never"
        return Metric(
            "diffusion", name, unit, None, None, None, "relative", f"|rel| ≤ {tol:g}", "skip", note
        )
    ref_d = found.reference.D_A2_per_fs
    row = _relative(name, "diffusion", unit, ref_d, found.rollout.D_A2_per_fs, tol)
    if found.diffusive:
        errors = [_replica_spread(side, found.reference) for side in (reference, rollout)]
        if None in errors or ref_d == 0:
            return row
        return _with_noise(row, 2 * float(np.hypot(*errors)) / abs(ref_d), tol)
    threshold = config.analysis.diffusive_msd_A2
    at = f"at {found.reference.fit_end_fs:g} fs"
    if found.rollout_msd_A2 >= threshold:  # a solid that flows in the rollout (melting)
        note = (
            f"the rollout diffuses (MSD {found.rollout_msd_A2:.3g} Å² {at}) where the reference "
            f"does not (MSD {found.reference_msd_A2:.3g} Å² < {threshold:g} Å²)"
        )
        return Metric(**{**row.as_dict(), "status": "fail", "note": note})
    note = f"neither side diffuses: MSD below {threshold:g} Å² {at}"
    return Metric(**{**row.as_dict(), "status": "skip", "note": note})


def _replica_spread(side: Pooled, window: DiffusionFit) -> float | None:
    """Standard error of a side's diffusion coefficient (Å²/fs) from the scatter of its
    replicas' own fits over ``window``'s lags, or None with fewer than two replicas (one
    trajectory's MSD has no error estimate here)."""
    if len(side.trajectories) < 2:
        return None
    axes = _periodic_axes(side)
    start, end = window.fit_start_fs, window.fit_end_fs
    values = [
        diffusion_coefficient(t.msd, start, end, axes=axes).D_A2_per_fs for t in side.trajectories
    ]
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _frequency_row(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> Metric:
    """Mean vibrational frequency of each side's VACF spectrum within the band both resolve.

    Where one side's frames are an integer multiple ``k`` of the other's apart, the finer side's
    VACF is taken at every ``k``-th lag (all time origins kept), so both spectra come from the
    same interval and fold what lies above its Nyquist frequency alike: a Langevin-broadened
    spectrum of Cu read 2 % higher from 32 fs frames than from 8 fs frames of the same run."""
    key, name = "vibrational_frequency", "mean vibrational frequency"
    sides = [(side.vacf.total, side.first.dt_fs) for side in (reference, rollout)]
    sides, common_dt = _common_interval(sides)
    spectra = []
    for correlation, dt_fs in sides:
        if correlation.size < 4 or not correlation[0] > 0:
            return Metric(
                key,
                name,
                "THz",
                None,
                None,
                None,
                "relative",
                "—",
                "skip",
                "fewer than four VACF lags",
            )
        spectra.append(vibrational_dos(correlation, dt_fs))
    band = min(frequency[-1] for frequency, _ in spectra)
    ref, run = (mean_frequency(frequency, dos, band) for frequency, dos in spectra)
    row = _relative(name, key, "THz", ref, run, config.tolerances.vibrational_frequency_rel)
    note = f"VACF spectrum's mean up to {band:.1f} THz"
    if common_dt is not None:
        note += f", both sides' VACF every {common_dt:g} fs"
    split = _thermostat_splitting(rollout)
    if split is not None and split >= SPLITTING_NOTE:
        note += (
            f"; Langevin friction × stride = {split:.2g}: the thermostat, applied in half-strides,"
            " moves this row by itself (the exact map reads Cu 4 % low at 0.32), so judge"
            " frequencies under Bussi or a gentler friction (0.001/fs)"
        )
    return Metric(**{**row.as_dict(), "note": note})


#: Friction × stride from which the frequency row says the thermostat moves it.
SPLITTING_NOTE = 0.1


def _thermostat_splitting(side: Pooled) -> float | None:
    """Langevin friction (1/fs) times the interval between thermostat applications (the
    stride, fs) of ``side``'s first trajectory, or None when it has no recorded friction."""
    first = side.first
    if first.friction_per_fs is None or first.timestep_fs is None:
        return None
    return first.friction_per_fs * float(first.timestep_fs)


def _common_interval(
    sides: list[tuple[np.ndarray, float]],
) -> tuple[list[tuple[np.ndarray, float]], float | None]:
    """``(correlation (n_lags,), dt_fs)`` of both sides, the finer one decimated to the coarser
    interval when that is an integer multiple of it (and the common interval), else unchanged
    (and None)."""
    intervals = [dt for _, dt in sides]
    coarse, fine = max(intervals), min(intervals)
    factor = round(coarse / fine)
    if factor < 2 or abs(coarse - factor * fine) > 1e-6 * coarse:
        return sides, None
    decimated = [(c[::factor], dt * factor) if dt == fine else (c, dt) for c, dt in sides]
    return decimated, coarse


def _equipartition_row(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> Metric:
    tol = config.tolerances.equipartition_rel
    ref, run = reference.equipartition_spread, rollout.equipartition_spread
    several = rollout.species.size > 1
    row = Metric(
        "equipartition",
        "per-species temperature spread",
        "relative",
        ref,
        run,
        run - ref,
        "relative",
        f"rollout ≤ {tol:g}",
        _judge(run <= tol) if several else "skip",
        "" if several else "one species",
    )
    if not several:
        return row
    return _with_noise(row, 2 * rollout.equipartition_standard_error, tol, judged=run)


def _drift_row(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> Metric:
    tol = config.tolerances.nve_drift_eV_per_atom_per_ps
    ref = reference.worst_drift if reference.is_nve else None
    run = rollout.worst_drift
    nve = rollout.is_nve
    return Metric(
        "nve_drift",
        "NVE energy drift",
        "eV/atom/ps",
        ref,
        run,
        None if ref is None else run - ref,
        "eV/atom/ps",
        f"|rollout| ≤ {tol:g}",
        _judge(abs(run) <= tol) if nve else "skip",
        "worst replica" if nve else f"rollout ensemble {rollout.first.ensemble}, not NVE",
    )


def _overlap_row(reference: Pooled, rollout: Pooled, config: EvaluationConfig) -> Metric:
    tol = config.tolerances.overlap_frames
    closest = float(reference.min_distances.min())
    name = "overlapping frames"
    if not np.isfinite(closest):
        return Metric(
            "overlaps",
            name,
            "frames",
            None,
            None,
            None,
            "frames",
            f"≤ {tol}",
            "skip",
            "the reference has no atom pairs",
        )
    threshold = config.analysis.overlap_fraction * closest
    ref, run = reference.overlap_frames(threshold), rollout.overlap_frames(threshold)
    note = (
        f"closest pair below {threshold:.3g} Å ({config.analysis.overlap_fraction:g} × "
        f"reference minimum {closest:.3g} Å); rollout minimum "
        f"{float(rollout.min_distances.min()):.3g} Å"
    )
    return Metric(
        "overlaps",
        name,
        "frames",
        ref,
        run,
        run - ref,
        "frames",
        f"rollout ≤ {tol}",
        _judge(run <= tol),
        note,
    )


def _recorded_row(key: str, name: str, unit: str, value: float, note: str = "") -> Metric:
    """A rollout's statistic shown in the table but not judged."""
    note = f"recorded, not judged: {note}" if note else "recorded, not judged"
    return Metric(key, name, unit, None, value, None, unit, "—", "skip", note)


def _solver_row(iterations: float) -> Metric:
    return _recorded_row(
        "solver_iterations", "symplectic solver iterations per stride", "count", iterations
    )


def _acceptance_row(fraction: float) -> Metric:
    note = "exact at any rate; a low one means long correlations"
    return _recorded_row("acceptance", "strides accepted (metropolis)", "fraction", fraction, note)


def _declined_row(fraction: float) -> Metric:
    note = "taken as half strides before the filter"
    name = "strides declined as unsure (adaptive)"
    return _recorded_row("declined_fraction", name, "fraction", fraction, note)


def _uncertainty_row(per_frame: np.ndarray) -> Metric:
    note = f"95th percentile {np.percentile(per_frame, 95):.3f} Å, largest {per_frame.max():.3f} Å"
    name = "stride uncertainty, largest atom (median)"
    return _recorded_row("uncertainty", name, "Å", float(np.median(per_frame)), note)


def _fallback_row(rollout: Pooled, config: EvaluationConfig) -> Metric:
    tol = config.tolerances.fallback_fraction
    has = rollout.has_filter
    run = rollout.fallback_fraction if has else None
    return Metric(
        "fallback_fraction",
        "filter fallback fraction",
        "fraction",
        None,
        run,
        run,
        "fraction",
        f"≤ {tol:g}",
        _judge(run <= tol) if run is not None else "skip",
        "" if has else "the rollout store has no filter statistics",
    )
