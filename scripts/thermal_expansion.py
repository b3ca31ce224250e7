"""Thermal expansion at constant pressure: a model's NPT rollouts against reference NPT (issue #17).

For every temperature of the reference recipe (default ``data/cu-thermal-expansion.yaml``) it
generates the reference NPT trajectory (resumable), rolls the model out at the same pressure with
the same barostat from the reference's first frame (``flashmd md --ensemble npt``, resumable),
and fits the mean volume per atom against temperature over the second 90 % of each run (the first
10 % settles). The linear expansion coefficient is ``α = (1/3V) dV/dT`` at the middle temperature.
Prints a markdown table (volumes with their standard errors from 10 blocks, α of both sides and
their ratio) and draws the figure::

    python scripts/thermal_expansion.py --model runs/train/emt-metals-stress/best.pt \\
        --figure docs/thermal-expansion-cu.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.md.batch import MDSettings, run_md


def volumes_per_atom(location: str, temperature_K: float) -> np.ndarray:
    """Cell volume per atom (n_frames,) Å³ of the store's trajectory at ``temperature_K``."""
    store = TrajectoryStore.open(location)
    for traj_id in store.ids():
        reader = store[traj_id]
        if reader.attrs.get("temperature_K") == temperature_K:
            cells = reader.read(0, reader.n_frames, keys=("cell",))["cell"]
            return np.abs(np.linalg.det(cells)) / len(reader.numbers)
    raise KeyError(f"no trajectory at {temperature_K:g} K in {location}")


def mean_and_error(values: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean of the last 90 % and its standard error from ``blocks`` block means."""
    kept = values[len(values) // 10 :]
    means = np.array([b.mean() for b in np.array_split(kept, blocks)])
    return float(kept.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def expansion_coefficient(temperatures: np.ndarray, volumes: np.ndarray) -> float:
    """Linear expansion coefficient (1/K) from a straight line through V(T), at the middle T."""
    slope, intercept = np.polyfit(temperatures, volumes, 1)
    middle = 0.5 * (temperatures.min() + temperatures.max())
    return float(slope / (3 * (intercept + slope * middle)))


def figure(path: str, temperatures, reference, rollout, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (means, errors), name, marker in ((reference, "reference", "o"), (rollout, label, "s")):
        ax.errorbar(temperatures, means, yerr=errors, marker=marker, ls="", capsize=3, label=name)
        slope, intercept = np.polyfit(temperatures, means, 1)
        ax.plot(temperatures, intercept + slope * temperatures, lw=0.8)
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("volume per atom (Å³)")
    ax.set_title("Thermal expansion at 0 GPa")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint path or shipped name")
    parser.add_argument("--recipe", default="data/cu-thermal-expansion.yaml")
    parser.add_argument("--reference", default="runs/expansion/reference.zarr")
    parser.add_argument("--out", default="runs/expansion", help="folder of the rollouts")
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--strides", type=int, default=1500)
    parser.add_argument("--figure", help="PNG of V(T) for both sides")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    pressure = recipe.ensemble.pressure_GPa
    if recipe.ensemble.production != "npt" or pressure is None:
        parser.error(f"{args.recipe}: the reference must be npt (ensemble.production: npt)")
    generate(recipe, args.reference, progress=True)
    temperatures = np.array(sorted({t for task in recipe.tasks() for t in [task.temperature_K]}))
    reference, rollout = [], []
    for temperature in temperatures:
        location = str(Path(args.out) / f"rollout-{temperature:g}K.zarr")
        settings = MDSettings(
            model=args.model,
            start_from=args.reference,
            ensemble="npt",
            temperature_K=float(temperature),
            stride_fs=args.stride_fs,
            strides=args.strides,
            friction_per_fs=recipe.ensemble.friction_per_fs,
            pressure_GPa=pressure,
            barostat_tau_fs=recipe.ensemble.barostat_tau_fs,
            compressibility_per_GPa=recipe.ensemble.compressibility_per_GPa,
        )
        run_md(settings, location, device=args.device)
        reference.append(mean_and_error(volumes_per_atom(args.reference, temperature)))
        rollout.append(mean_and_error(volumes_per_atom(location, temperature)))
    ref_means, run_means = (np.array([m for m, _ in side]) for side in (reference, rollout))
    alpha_ref = expansion_coefficient(temperatures, ref_means)
    alpha_run = expansion_coefficient(temperatures, run_means)
    print(f"| T K | reference V Å³/atom | {Path(args.model).name} V Å³/atom | difference |")
    print("|---|---|---|---|")
    for t, (rm, re), (om, oe) in zip(temperatures, reference, rollout, strict=True):
        print(
            f"| {t:g} | {rm:.4f} ± {re:.4f} | {om:.4f} ± {oe:.4f} | {100 * (om / rm - 1):+.2f} % |"
        )
    print()
    print(
        f"linear expansion coefficient: reference {alpha_ref:.3e} /K, model {alpha_run:.3e} /K, "
        f"ratio {alpha_run / alpha_ref:.3f}"
    )
    if args.figure:
        sides = [tuple(np.array(side).T) for side in (reference, rollout)]
        figure(args.figure, temperatures, *sides, "flashmd")
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
