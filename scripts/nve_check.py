"""NVE check of rollout stores: drift of the stored total energy, kinetic temperature and its
per-species split, against a reference trajectory's.

For each trajectory of each rollout store prints, over frames ``--skip`` onwards: the drift of
``V + K`` (``V`` the stored potential energy, the energy model's for ``flashmd md``) in
eV/atom/ps with its residual fluctuation, the mean kinetic temperature and each species' mean
kinetic temperature relative to the reference trajectory's (``--reference STORE:ID_SUBSTRING``),
the fraction of strides redone and the solver's iterations per stride:

    python scripts/nve_check.py runs/sym/cu-nve-nofilter.zarr runs/sym/cu-nve-direct.zarr \
        --reference runs/heldout/reference.zarr:Cu-750

A thermostatted reference's mean temperature is the canonical one; an NVE run from one of its
frames keeps that frame's total energy, which in a 108-atom cell lies a few per cent off the
canonical mean (750 K Cu: its first frame gives 735 K). ``--exact-nve STORE`` compares with what
exact NVE from the same frame gives instead: velocity Verlet with STORE's reference calculator
(its recipe's calculator and timestep) from each rollout's first frame, as long as the rollout
(run once into ``<rollout>.exact-nve.zarr`` beside it, resumable).
"""

from __future__ import annotations

import argparse

import ase
import numpy as np
from ase.data import chemical_symbols

from flashmd.analysis.energy import nve_drift
from flashmd.analysis.temperature import kinetic_energy, kinetic_temperature
from flashmd.analysis.vacf import mean_frequency, vacf, vibrational_dos
from flashmd.data.continuations import Continuation, label_states, reference_settings
from flashmd.data.store import TrajectoryReader, TrajectoryStore, open_trajectory


def temperatures(momenta: np.ndarray, reader: TrajectoryReader) -> dict[str, float]:
    """Mean kinetic temperature (K) of all atoms ("all") and of each species over ``momenta``
    (frames, atoms, 3) of ``reader``'s atoms (centre-of-mass motion removed)."""
    result = kinetic_temperature(momenta, reader.masses, reader.numbers, fixed_com=True)
    out = {"all": float(np.mean(result.total))}
    for z in result.species:
        out[chemical_symbols[int(z)]] = float(np.mean(result.of_species(int(z))))
    return out


def vibrational_frequency(
    momenta: np.ndarray, time_fs: np.ndarray, masses: np.ndarray, max_lag_fs: float = 2000.0
) -> float:
    """Mean vibrational frequency (THz): first moment of the VACF spectrum of ``momenta``
    (frames, atoms, 3) at times ``time_fs`` (frames,), lags up to ``max_lag_fs``, up to the
    frames' Nyquist frequency."""
    dt_fs = float(time_fs[1] - time_fs[0])
    max_lag = min(len(time_fs) - 1, round(max_lag_fs / dt_fs))
    correlation = vacf(momenta, masses, dt_fs, max_lag=max_lag).total
    frequency, dos = vibrational_dos(correlation, dt_fs)
    return mean_frequency(frequency, dos, float(frequency[-1]))


def observables(reader: TrajectoryReader, skip: int) -> dict[str, float]:
    """Temperatures (:func:`temperatures`) and the mean vibrational frequency ("ν") over frames
    ``skip:``, from one read of the store."""
    data = reader.read(skip, reader.n_frames, ("momenta", "time_fs"))
    return {
        **temperatures(data["momenta"], reader),
        "ν": vibrational_frequency(data["momenta"], data["time_fs"], reader.masses),
    }


def reference_temperatures(spec: str) -> dict[str, float]:
    reader = open_trajectory(spec)
    return temperatures(reader.read(0, reader.n_frames, ("momenta",))["momenta"], reader)


def exact_nve_temperatures(
    rollout: str, traj_id: str, reference_store: str, skip: int = 0
) -> dict[str, float]:
    """:func:`observables` (frames ``skip:``, as for the rollout) of velocity Verlet with
    ``reference_store``'s calculator from the first frame of the rollout's trajectory, over the
    rollout's duration and at its frame interval."""
    reader = TrajectoryStore.open(rollout)[traj_id]
    times = reader.read(0, reader.n_frames, ("time_fs",))["time_fs"]
    return exact_nve_observables(
        reader.to_atoms(0),
        traj_id,
        reference_store,
        duration_fs=float(times[-1] - times[0]),
        interval_fs=float(times[1] - times[0]),
        location=f"{rollout.rstrip('/')}.exact-nve.zarr",
        origin=rollout,
        skip=skip,
    )


def exact_nve_observables(
    atoms: ase.Atoms,
    traj_id: str,
    reference_store: str,
    duration_fs: float,
    interval_fs: float,
    location: str,
    origin: str,
    skip: int = 0,
) -> dict[str, float]:
    """:func:`observables` (frames ``skip:``) of velocity Verlet with ``reference_store``'s
    calculator and timestep from ``atoms`` (positions and momenta), ``duration_fs`` long and
    sampled every ``interval_fs``; run once into trajectory ``traj_id`` of the store at
    ``location`` (resumable; a second call reads it back). ``origin`` names what it is the exact
    NVE of."""
    settings = reference_settings(
        TrajectoryStore.open(reference_store),
        duration_fs=duration_fs,
        sample_interval_fs=interval_fs,
        store_forces=False,
    )
    start = Continuation(traj_id, atoms, {"origin": "exact-nve", "rollout": origin})
    label_states(settings, [start], location, {"exact_nve_of": origin}, progress=False)
    return observables(TrajectoryStore.open(location)[traj_id], skip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rollouts", nargs="+", help="rollout stores")
    parser.add_argument("--reference", help="STORE:ID_SUBSTRING of the reference trajectory")
    parser.add_argument("--skip", type=int, default=0, help="frames skipped at the start")
    parser.add_argument(
        "--exact-nve",
        metavar="STORE",
        help="compare temperatures with exact NVE from each rollout's first frame, run with "
        "STORE's reference calculator (see the module docstring)",
    )
    args = parser.parse_args()
    if args.exact_nve and args.reference:
        parser.error("--reference and --exact-nve are two references: pass one")
    reference = reference_temperatures(args.reference) if args.reference else {}
    print(
        "| store | trajectory | strides | drift eV/atom/ps | residual std eV/atom | ν THz | "
        "T K (relative to reference) | redone | iterations |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for location in args.rollouts:
        store = TrajectoryStore.open(location)
        for traj_id in store.ids():
            reader = store[traj_id]
            data = reader.read(args.skip, reader.n_frames, ("momenta", "energy", "time_fs"))
            total = data["energy"] + kinetic_energy(data["momenta"], reader.masses)
            fit = nve_drift(data["time_fs"], total, len(reader.numbers))
            found = temperatures(data["momenta"], reader)
            nu = vibrational_frequency(data["momenta"], data["time_fs"], reader.masses)
            if args.exact_nve:
                reference = exact_nve_temperatures(location, traj_id, args.exact_nve, args.skip)
            split = ", ".join(
                f"{s} {t:.0f}" + (f" ({t / reference[s] - 1:+.3f})" if s in reference else "")
                for s, t in found.items()
            )
            nu_text = f"{nu:.3f}" + (
                f" ({nu / reference['ν'] - 1:+.3f})" if "ν" in reference else ""
            )
            group = reader.group
            redone = (
                float(np.mean(group["filter_fallback"][1:])) if "filter_fallback" in group else 0
            )
            iterations = (
                float(np.mean(group["solver_iterations"][1:]))
                if "solver_iterations" in group
                else 0.0
            )
            print(
                f"| {location} | {traj_id} | {reader.n_frames - 1} | "
                f"{fit.drift_eV_per_atom_per_ps:.2e} | {fit.residual_std_eV_per_atom:.2e} | "
                f"{nu_text} | {split} | {redone:.4f} | {iterations:.1f} |"
            )


if __name__ == "__main__":
    main()
