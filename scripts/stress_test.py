"""Stress tests of models in rollouts: overlapping atoms and the Lindemann index at high
temperature and under compression (issue #15; the checks of ``../shared/seeds/002_*.txt``).

For every model (``LABEL=NAME_OR_PATH``) and temperature it rolls out the systems of a recipe
(``flashmd md --recipe``: compressed crystals, a slab, an alloy) under Langevin at one stride,
from Maxwell-Boltzmann momenta, into ``<out>/<label>-<T>K.zarr`` (resumable), then prints one
markdown row per system: the closest approach over the rollout (Å), the frames with a pair
closer than ``--overlap-A``, the Lindemann index of the second half (the first half equilibrates),
the strides the energy filter redid, and whether the rollout stayed finite::

    python scripts/stress_test.py pretrained=runs/learning-curve/pretrained-1/last.pt \
        scratch=runs/learning-curve/scratch-1/last.pt --recipe data/sevennet-cuau-stress.yaml \
        --temperatures 1500 2500 --strides 400
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flashmd.analysis.distances import find_overlaps, min_distance
from flashmd.analysis.lindemann import lindemann_index
from flashmd.data.recipes import load_recipe, system_name
from flashmd.data.store import TrajectoryStore
from flashmd.md.batch import MDSettings, run_md


def rows_of(
    label: str, temperature_K: float, location: str, overlap_A: float, names: list[str]
) -> list[str]:
    """One markdown row per trajectory of a rollout store (``names``: the recipe's systems)."""
    store = TrajectoryStore.open(location)
    rows = []
    for traj_id in store.ids():
        reader = store[traj_id]
        frames = reader.read(0, reader.n_frames, keys=("positions", "cell", "filter_fallback"))
        positions, cell = frames["positions"], frames["cell"]
        pbc = np.asarray(reader.attrs.get("pbc", [True] * 3), dtype=bool)
        finite = bool(np.isfinite(positions).all())
        if finite:
            closest = float(min_distance(positions, cell, pbc).distance.min())
            overlapping = int((find_overlaps(positions, cell, overlap_A, pbc).count > 0).sum())
            half = positions.shape[0] // 2
            lindemann = lindemann_index(positions[half:], cell[half:], pbc).system
        else:
            closest, overlapping, lindemann = float("nan"), -1, float("nan")
        redone = float(np.mean(frames["filter_fallback"][1:]))
        rows.append(
            f"| {label} | {temperature_K:g} | {names[int(traj_id[:5])]} | {closest:.2f} | "
            f"{overlapping}/{positions.shape[0]} | {lindemann:.3f} | {redone:.3f} | "
            f"{'yes' if finite else 'NO'} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="LABEL=NAME_OR_PATH")
    parser.add_argument("--recipe", required=True, help="recipe whose systems are rolled out")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1500.0, 2500.0])
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--strides", type=int, default=400)
    parser.add_argument("--overlap-A", type=float, default=1.5, help="closer pairs overlap")
    parser.add_argument("--out", default="runs/stress")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(args.recipe)
    names = [system_name(system) for system in recipe.systems]
    table = [
        "| model | T K | system | closest Å | frames overlapping | Lindemann | redone | finite |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in args.models:
        label, _, model = entry.partition("=")
        if not model:
            parser.error(f"{entry!r}: give models as LABEL=NAME_OR_PATH")
        for temperature in args.temperatures:
            location = str(Path(args.out) / f"{label}-{temperature:g}K.zarr")
            settings = MDSettings(
                model=model,
                recipe=args.recipe,
                ensemble="langevin",
                temperature_K=temperature,
                stride_fs=args.stride_fs,
                strides=args.strides,
            )
            run_md(settings, location, device=args.device, allow_close_contacts=True)
            table.extend(rows_of(label, temperature, location, args.overlap_A, names))
    print("\n".join(table))


if __name__ == "__main__":
    main()
