"""NVE check of rollout stores: drift of the stored total energy, kinetic temperature and its
per-species split, against a reference trajectory's.

For each trajectory of each rollout store prints, over frames ``--skip`` onwards: the drift of
``V + K`` (``V`` the stored potential energy, the energy model's for ``flashmd md``) in
eV/atom/ps with its residual fluctuation, the mean kinetic temperature and each species' mean
kinetic temperature relative to the reference trajectory's (``--reference STORE:ID_SUBSTRING``),
the fraction of strides redone and the solver's iterations per stride:

    python scripts/nve_check.py runs/sym/cu-nve-nofilter.zarr runs/sym/cu-nve-direct.zarr \
        --reference runs/heldout/reference.zarr:Cu-750
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.data import chemical_symbols

from flashmd.analysis.energy import nve_drift
from flashmd.analysis.temperature import kinetic_energy, kinetic_temperature
from flashmd.data.store import TrajectoryReader, TrajectoryStore, open_trajectory


def temperatures(reader: TrajectoryReader, skip: int) -> dict[str, float]:
    """Mean kinetic temperature (K) of all atoms ("all") and of each species over frames
    ``skip:`` (centre-of-mass motion removed)."""
    momenta = reader.read(skip, reader.n_frames, ("momenta",))["momenta"]
    result = kinetic_temperature(momenta, reader.masses, reader.numbers, fixed_com=True)
    out = {"all": float(np.mean(result.total))}
    for z in result.species:
        out[chemical_symbols[int(z)]] = float(np.mean(result.of_species(int(z))))
    return out


def reference_temperatures(spec: str) -> dict[str, float]:
    return temperatures(open_trajectory(spec), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rollouts", nargs="+", help="rollout stores")
    parser.add_argument("--reference", help="STORE:ID_SUBSTRING of the reference trajectory")
    parser.add_argument("--skip", type=int, default=0, help="frames skipped at the start")
    args = parser.parse_args()
    reference = reference_temperatures(args.reference) if args.reference else {}
    print(
        "| store | trajectory | strides | drift eV/atom/ps | residual std eV/atom | "
        "T K (relative to reference) | redone | iterations |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for location in args.rollouts:
        store = TrajectoryStore.open(location)
        for traj_id in store.ids():
            reader = store[traj_id]
            data = reader.read(args.skip, reader.n_frames, ("momenta", "energy", "time_fs"))
            total = data["energy"] + kinetic_energy(data["momenta"], reader.masses)
            fit = nve_drift(data["time_fs"], total, len(reader.numbers))
            found = temperatures(reader, args.skip)
            split = ", ".join(
                f"{s} {t:.0f}" + (f" ({t / reference[s] - 1:+.3f})" if s in reference else "")
                for s, t in found.items()
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
                f"{split} | {redone:.4f} | {iterations:.1f} |"
            )


if __name__ == "__main__":
    main()
