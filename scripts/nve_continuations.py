"""NVE continuations of a reference store's frames: stride pairs to validate on where the
reference itself ran under a thermostat.

A Langevin trajectory's stride pairs carry the thermostat's random kicks (with friction
0.01/fs, about sqrt(2 γ S) = 0.57 of a thermal momentum over S = 16 fs), which no deterministic
stride can predict: validating a predictor on them measures the noise. This script runs, with
the store's own calculator and timestep, NVE from every ``--every-fs`` of each trajectory
(positions and momenta as stored) for ``--duration-fs``, frames every ``--sample-interval-fs``,
into a new store (resumable; ids ``<trajectory>-f<frame>``, ``origin: nve-continuation``,
``start_from``, the source trajectory's ``temperature_K`` and its system's name as
``source_system``)::

    python scripts/nve_continuations.py runs/mlip/sevennet-cuau-heldout.zarr \
        -o runs/mlip/sevennet-cuau-heldout-nve.zarr --every-fs 800 --duration-fs 96

Use the result as a training recipe's ``validation_store``.
"""

from __future__ import annotations

import argparse

from flashmd.data.continuations import Continuation, label_states, reference_settings
from flashmd.data.store import TrajectoryStore


def continuations(location: str, every_fs: float) -> list[Continuation]:
    """One start per ``every_fs`` of every complete trajectory of the store at ``location``."""
    store = TrajectoryStore.open(location)
    starts = []
    for traj_id in store.ids():
        reader = store[traj_id]
        if reader.status != "complete":
            continue
        step = max(1, round(every_fs / float(reader.attrs["sample_interval_fs"])))
        for frame in range(0, reader.n_frames, step):
            attrs = {
                "origin": "nve-continuation",
                "start_from": {"store": str(location), "trajectory": traj_id, "frame": frame},
                "temperature_K": reader.attrs.get("temperature_K"),
                "source_system": reader.attrs.get("system", {}).get("name"),
            }
            starts.append(Continuation(f"{traj_id}-f{frame}", reader.to_atoms(frame), attrs))
    return starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="store made by flashmd generate")
    parser.add_argument("-o", "--output", required=True, help="store of the continuations")
    parser.add_argument("--every-fs", type=float, default=800.0, help="fs between starts")
    parser.add_argument("--duration-fs", type=float, default=96.0, help="length of each")
    parser.add_argument("--sample-interval-fs", type=float, default=8.0, help="between frames")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    source = TrajectoryStore.open(args.reference)
    recipe = source.recipe
    settings = reference_settings(source, args.duration_fs, args.sample_interval_fs)
    identity = {
        "name": f"{recipe.get('name', 'reference')}-nve-continuations",
        "source_recipe_sha256": str(source.root.attrs.get("recipe_sha256", "")),
        "every_fs": args.every_fs,
        "duration_fs": settings.duration_fs,
        "sample_interval_fs": settings.sample_interval_fs,
        "calculator": recipe["calculator"],
        "timestep_fs": settings.timestep_fs,
    }
    starts = continuations(args.reference, args.every_fs)
    report = label_states(
        settings, starts, args.output, identity, workers=args.workers, progress=not args.quiet
    )
    print(
        f"{len(starts)} NVE continuations of {args.reference} in {args.output}: "
        f"{report.frames_written} frames written in {report.wall_time_s:.1f} s"
    )


if __name__ == "__main__":
    main()
