"""Figures of the evaluation report: reference (blue) against rollout (orange), PNG files.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas: no display,
no pyplot state, nothing changed for the caller's own plots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flashmd.analysis.metrics import DiffusionComparison
from flashmd.analysis.pooled import Pooled
from flashmd.analysis.vacf import vibrational_dos

REFERENCE, ROLLOUT = "C0", "C1"
SIDES = (("reference", REFERENCE), ("rollout", ROLLOUT))
DPI = 110


def _figure(n_panels: int, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z)


def gamma_temperature_pdf(temperature: np.ndarray, target_K: float, dof: float) -> np.ndarray:
    """Canonical density (1/K) of the kinetic temperature: T ~ Gamma(dof / 2, 2 target / dof)."""
    shape, scale = 0.5 * dof, 2.0 * target_K / dof
    t = np.maximum(np.asarray(temperature, dtype=np.float64), 1e-300)
    log_pdf = (shape - 1.0) * np.log(t) - t / scale - math.lgamma(shape) - shape * math.log(scale)
    return np.exp(log_pdf)


def spectrum_extent(spectra: list[tuple[np.ndarray, np.ndarray]], weight: float = 0.999) -> float:
    """Frequency (THz) below which every spectrum (frequency, density) holds ``weight`` of its
    area, with a 30 % margin, capped at the highest frequency available."""
    extent = 0.0
    for freq, dos in spectra:
        cumulative = np.cumsum(np.abs(dos))
        inside = int(np.searchsorted(cumulative, weight * cumulative[-1]))
        extent = max(extent, 1.3 * float(freq[min(inside, freq.size - 1)]))
    return min(extent, max(float(f[-1]) for f, _ in spectra)) or 1.0


def rdf_figure(reference: Pooled, rollout: Pooled) -> Figure | None:
    """Total g(r) and, with several species, every partial."""
    ref, run = reference.rdf, rollout.rdf
    if ref is None or run is None:
        return None
    curves = [("total", ref.total, run.total)]
    if len(ref.partial) > 1:
        curves += [
            (f"{_symbol(a)}–{_symbol(b)}", ref.partial[(a, b)], run.partial[(a, b)])
            for a, b in ref.partial
        ]
    fig, axes = _figure(len(curves), width=4.2)
    for ax, (title, a, b) in zip(axes, curves, strict=True):
        ax.plot(ref.r, a, color=REFERENCE, label=f"reference ({ref.n_frames} frames)")
        ax.plot(run.r, b, color=ROLLOUT, ls="--", label=f"rollout ({run.n_frames} frames)")
        ax.set(xlabel="r (Å)", ylabel="g(r)", title=f"RDF {title}")
    axes[0].legend()
    return fig


def vacf_figure(reference: Pooled, rollout: Pooled) -> Figure:
    """Normalised VACF of all atoms and its spectrum (vibrational density of states)."""
    fig, (left, right) = _figure(2)
    spectra = []
    for (label, color), side in zip(SIDES, (reference, rollout), strict=True):
        vacf = side.vacf
        left.plot(vacf.lag_fs, vacf.total / vacf.total[0], color=color, label=label)
        if vacf.total.size > 1:
            freq, dos = vibrational_dos(vacf.total, side.first.dt_fs)
            spectra.append((freq, dos))
            right.plot(freq, dos, color=color, label=f"{label} (Δt {side.first.dt_fs:g} fs)")
    if spectra:
        right.set_xlim(0.0, spectrum_extent(spectra))
    left.axhline(0.0, color="0.6", lw=0.8)
    left.set(xlabel="lag (fs)", ylabel="C(t) / C(0)", title="velocity autocorrelation")
    right.set(xlabel="frequency (THz)", ylabel="VDOS (1/THz)", title="vibrational spectrum")
    left.legend()
    right.legend()
    return fig


def msd_figure(reference: Pooled, rollout: Pooled, diffusion: DiffusionComparison | None) -> Figure:
    """MSD of all atoms (centre of mass removed), with the fitted lines when there are fits."""
    fig, (ax,) = _figure(1, width=5.5)
    fits = (diffusion.reference, diffusion.rollout) if diffusion is not None else (None, None)
    for (label, color), side, fit in zip(SIDES, (reference, rollout), fits, strict=True):
        ax.plot(side.msd.lag_fs, side.msd.total, color=color, label=label)
        if fit is not None:
            t = np.array([fit.fit_start_fs, fit.fit_end_fs])
            line = 2 * fit.n_dims * fit.D_A2_per_fs * t + fit.intercept_A2
            ax.plot(
                t, line, color=color, ls=":", lw=2, label=f"fit D = {fit.D_cm2_per_s:.3g} cm²/s"
            )
    ax.set(xlabel="lag (fs)", ylabel="MSD (Å²)", title="mean-squared displacement")
    ax.legend()
    return fig


def _replicas(n: int) -> str:
    return f"{n} replica{'s' if n != 1 else ''}"


def temperature_figure(reference: Pooled, rollout: Pooled, set_K: float | None) -> Figure:
    """Temperature traces of every replica, and the histogram against the canonical law at the
    reference's mean temperature (``set_K``: the thermostat or initial temperature, if known)."""
    fig, (trace, hist) = _figure(2)
    for (label, color), side in zip(SIDES, (reference, rollout), strict=True):
        for k, traj in enumerate(side.trajectories):
            trace.plot(
                traj.energy.time_fs * 1e-3,
                traj.temperature.total,
                color=color,
                lw=0.8,
                alpha=0.7,
                label=f"{label} ({_replicas(len(side.trajectories))})" if k == 0 else None,
            )
        values = np.concatenate([t.temperature.total for t in side.trajectories])
        hist.hist(
            values,
            bins=int(np.clip(np.sqrt(values.size), 10, 60)),
            density=True,
            histtype="step",
            color=color,
            lw=1.5,
            label=f"{label}, mean {values.mean():.1f} K",
        )
    mean_K, dof = reference.temperature, float(reference.first.temperature.dof[-1])
    grid = np.linspace(*hist.get_xlim(), 300)
    hist.plot(
        grid,
        gamma_temperature_pdf(grid, mean_K, dof),
        color="k",
        ls="--",
        label=f"canonical at {mean_K:.1f} K ({dof:g} dof)",
    )
    if set_K is not None:
        trace.axhline(set_K, color="k", ls="--", lw=0.8, label=f"set {set_K:g} K")
    trace.set(xlabel="time (ps)", ylabel="kinetic temperature (K)", title="temperature")
    hist.set(
        xlabel="kinetic temperature (K)", ylabel="density (1/K)", title="temperature distribution"
    )
    trace.legend()
    hist.legend()
    return fig


def equipartition_figure(reference: Pooled, rollout: Pooled) -> Figure:
    """Mean temperature of every species and of all atoms."""
    fig, (ax,) = _figure(1, width=max(4.0, 1.4 * (reference.species.size + 2)))
    names = [_symbol(int(z)) for z in reference.species] + ["all"]
    x = np.arange(len(names))
    for k, ((label, color), side) in enumerate(zip(SIDES, (reference, rollout), strict=True)):
        ax.bar(
            x + (k - 0.5) * 0.38,
            side.temperature_per_group,
            width=0.38,
            color=color,
            label=label,
        )
    mean_K = reference.temperature
    ax.axhline(mean_K, color="k", ls="--", lw=0.8, label=f"reference mean {mean_K:.1f} K")
    ax.set_xticks(x, names)
    top = max(float(np.max(s.temperature_per_group)) for s in (reference, rollout))
    ax.set_ylim(0.0, 1.3 * top)
    ax.set(ylabel="mean kinetic temperature (K)", title="equipartition: temperature per species")
    ax.legend(loc="upper center", ncols=3, fontsize="small")
    return fig


def energy_figure(reference: Pooled, rollout: Pooled) -> Figure:
    """Total energy per atom relative to its first frame (drift), and potential energy per atom."""
    fig, (total, potential) = _figure(2)
    for (label, color), side in zip(SIDES, (reference, rollout), strict=True):
        for k, traj in enumerate(side.trajectories):
            e, n = traj.energy, traj.n_atoms
            time_ps = e.time_fs * 1e-3
            first = k == 0
            total.plot(
                time_ps,
                1e3 * (e.total - e.total[0]) / n,
                color=color,
                lw=0.8,
                label=f"{label} ({side.first.ensemble}), worst drift "
                f"{side.worst_drift:.2g} eV/atom/ps"
                if first
                else None,
            )
            potential.plot(
                time_ps, e.potential / n, color=color, lw=0.8, label=label if first else None
            )
    total.set(xlabel="time (ps)", ylabel="E_total − E_total(0) (meV/atom)", title="total energy")
    potential.set(xlabel="time (ps)", ylabel="potential energy (eV/atom)", title="potential energy")
    total.legend()
    potential.legend()
    return fig


def filter_figure(rollout: Pooled) -> Figure | None:
    """Energy-filter factor of every stride and the running count of strides the filter
    rejected and redid (as two half strides, or by velocity Verlet where no half is served)."""
    if not rollout.has_filter:
        return None
    fig, (scale, fallbacks) = _figure(2)
    for traj in rollout.trajectories:
        if traj.filter_scale is None or traj.filter_fallback is None:
            continue
        time_ps = traj.energy.time_fs * 1e-3
        scale.plot(time_ps, traj.filter_scale, lw=0.8, label=traj.traj_id)
        fallbacks.plot(time_ps, np.cumsum(traj.filter_fallback), lw=1.2, label=traj.traj_id)
    scale.axhline(1.0, color="0.6", lw=0.8)
    scale.set(xlabel="time (ps)", ylabel="filter factor α", title="energy-filter rescaling")
    # a rejected stride is redone from the state before it as two filtered half strides
    # (velocity Verlet only where the model serves no half stride): flashmd.md.stepper
    fallbacks.set(
        xlabel="time (ps)",
        ylabel="strides redone so far",
        title="strides the filter rejected, redone as half strides",
    )
    if len(rollout.trajectories) <= 8:
        scale.legend(fontsize="small")
    return fig


def save_figures(
    directory: Path,
    prefix: str,
    reference: Pooled,
    rollout: Pooled,
    diffusion: DiffusionComparison | None,
    set_K: float | None,
) -> dict[str, Path]:
    """Draw every figure that applies and write ``directory/prefix_<name>.png``; name -> path."""
    makers: dict[str, Callable[[], Figure | None]] = {
        "rdf": lambda: rdf_figure(reference, rollout),
        "vacf": lambda: vacf_figure(reference, rollout),
        "msd": lambda: msd_figure(reference, rollout, diffusion),
        "temperature": lambda: temperature_figure(reference, rollout, set_K),
        "equipartition": lambda: equipartition_figure(reference, rollout),
        "energy": lambda: energy_figure(reference, rollout),
        "filter": lambda: filter_figure(rollout),
    }
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, make in makers.items():
        fig = make()
        if fig is None:
            continue
        path = directory / f"{prefix}_{name}.png"
        fig.savefig(path, dpi=DPI)
        written[name] = path
    return written
