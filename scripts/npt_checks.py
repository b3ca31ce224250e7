"""Constant-pressure checks of a model against reference NPT (issue #17): thermal expansion and
melting on heating.

Both subcommands generate the reference NPT trajectories of a recipe (resumable), roll the model
out at the recipe's pressure with the same barostat (``flashmd md --ensemble npt``, resumable,
into ``--out``), and print a markdown table.

``expansion`` (default recipe ``data/cu-thermal-expansion.yaml``): the model starts from each
reference trajectory's first frame; the mean volume per atom over the last 90 % of each run
(standard errors from 10 blocks) against temperature, and the linear expansion coefficient
``α = (1/3V) dV/dT`` of a straight line through V(T), at the middle temperature; a figure.

``melting`` (default ``data/cu-melting.yaml``): both sides start from the recipe's crystal at
every temperature (the reference after its short equilibration, the model from Maxwell-Boltzmann
momenta); a run has melted when the atoms' mean squared displacement over its second half, centre
of mass removed, exceeds ``--melted-msd-A2``. The melting temperature on heating is the lowest
temperature that melted (a periodic crystal superheats, on both sides alike)::

    python scripts/npt_checks.py expansion --model runs/train/emt-metals-stress/best.pt \\
        --figure docs/thermal-expansion-cu.png
    python scripts/npt_checks.py melting --model runs/train/emt-metals-stress/best.pt
    python scripts/npt_checks.py expansion --model emt-metals --symplectic midpoint --strides 600
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flashmd.cli_parser import add_symplectic_option
from flashmd.data.generate import generate
from flashmd.data.recipes import Recipe, load_recipe
from flashmd.data.store import TrajectoryReader, TrajectoryStore
from flashmd.md.batch import MDSettings, run_md


def trajectory_at(location: str, temperature_K: float) -> TrajectoryReader:
    """The store's trajectory at ``temperature_K``."""
    store = TrajectoryStore.open(location)
    for traj_id in store.ids():
        if store[traj_id].attrs.get("temperature_K") == temperature_K:
            return store[traj_id]
    raise KeyError(f"no trajectory at {temperature_K:g} K in {location}")


def volumes_per_atom(reader: TrajectoryReader) -> np.ndarray:
    """Cell volume per atom (n_frames,) Å³."""
    cells = reader.read(0, reader.n_frames, keys=("cell",))["cell"]
    return np.abs(np.linalg.det(cells)) / len(reader.numbers)


def second_half_msd(reader: TrajectoryReader) -> float:
    """Mean squared displacement (Å²) of the atoms from the middle frame to the last, with the
    centre of mass removed (positions are unwrapped)."""
    middle, last = reader.frame(reader.n_frames // 2), reader.frame(reader.n_frames - 1)
    moved = last["positions"] - middle["positions"]
    moved -= moved.mean(axis=0)
    return float(np.mean(np.sum(moved**2, axis=1)))


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


def rollouts(args: argparse.Namespace, recipe: Recipe, from_reference: bool) -> dict[float, str]:
    """Generate the reference and roll the model out at every temperature; temperature -> store
    of the rollout."""
    spec = recipe.ensemble
    if spec.production != "npt" or spec.pressure_GPa is None:
        raise SystemExit(f"{args.recipe}: the reference must be npt (ensemble.production: npt)")
    generate(recipe, args.reference, progress=True)
    temperatures = sorted({task.temperature_K for task in recipe.tasks()})
    found = {}
    for temperature in temperatures:
        source = {"start_from": args.reference} if from_reference else {"recipe": args.recipe}
        settings = MDSettings(
            model=args.model,
            ensemble="npt",
            temperature_K=float(temperature),
            stride_fs=args.stride_fs,
            strides=args.strides or round(recipe.production_fs / args.stride_fs),
            friction_per_fs=spec.friction_per_fs,
            pressure_GPa=spec.pressure_GPa,
            barostat_tau_fs=spec.barostat_tau_fs,
            compressibility_per_GPa=spec.compressibility_per_GPa,
            symplectic=args.symplectic or False,
            **source,
        )
        location = str(Path(args.out) / f"rollout-{temperature:g}K.zarr")
        run_md(settings, location, device=args.device)
        found[float(temperature)] = location
    return found


def expansion(args: argparse.Namespace) -> None:
    recipe = load_recipe(args.recipe)
    stores = rollouts(args, recipe, from_reference=True)
    temperatures = np.array(list(stores))
    reference = [
        mean_and_error(volumes_per_atom(trajectory_at(args.reference, t))) for t in temperatures
    ]
    rollout = [mean_and_error(volumes_per_atom(trajectory_at(s, t))) for t, s in stores.items()]
    ref_means, run_means = (np.array([m for m, _ in side]) for side in (reference, rollout))
    alpha_ref = expansion_coefficient(temperatures, ref_means)
    alpha_run = expansion_coefficient(temperatures, run_means)
    print("| T K | reference V Å³/atom | model V Å³/atom | difference |")
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
        expansion_figure(args.figure, temperatures, *sides)
        print(f"figure: {args.figure}")


def expansion_figure(path: str, temperatures: np.ndarray, reference, rollout) -> None:
    """V(T) of both sides, ``(means, errors)`` each, with their straight lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (means, errors), name, marker in ((reference, "reference", "o"), (rollout, "flashmd", "s")):
        points = ax.errorbar(
            temperatures, means, yerr=errors, marker=marker, ls="", capsize=3, label=name
        )
        slope, intercept = np.polyfit(temperatures, means, 1)
        color = points.lines[0].get_color()
        ax.plot(temperatures, intercept + slope * temperatures, lw=0.8, color=color)
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("volume per atom (Å³)")
    ax.set_title("Thermal expansion at 0 GPa")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def melting(args: argparse.Namespace) -> None:
    recipe = load_recipe(args.recipe)
    stores = rollouts(args, recipe, from_reference=False)
    print("| T K | reference MSD Å² | melted | V Å³/atom | model MSD Å² | melted | V Å³/atom |")
    print("|---|---|---|---|---|---|---|")
    melted: dict[str, list[float]] = {"reference": [], "model": []}
    for temperature, location in stores.items():
        cells = []
        for side, where in (("reference", args.reference), ("model", location)):
            reader = trajectory_at(where, temperature)
            msd = second_half_msd(reader)
            volume = volumes_per_atom(reader)[-(reader.n_frames // 4) :].mean()
            liquid = msd > args.melted_msd_A2
            if liquid:
                melted[side].append(temperature)
            cells += [f"{msd:.2f}", "yes" if liquid else "no", f"{volume:.3f}"]
        print(f"| {temperature:g} | " + " | ".join(cells) + " |")
    print()
    for side, temperatures in melted.items():
        first = f"{min(temperatures):g} K" if temperatures else "none of the temperatures"
        print(f"{side}: melts on heating at {first}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, recipe in (
        ("expansion", "data/cu-thermal-expansion.yaml"),
        ("melting", "data/cu-melting.yaml"),
    ):
        command = commands.add_parser(name)
        command.add_argument("--model", required=True, help="checkpoint path or shipped name")
        command.add_argument("--recipe", default=recipe, help="reference NPT recipe")
        command.add_argument("--reference", default=f"runs/{name}/reference.zarr")
        command.add_argument("--out", default=f"runs/{name}", help="folder of the rollouts")
        command.add_argument("--stride-fs", type=float, default=32.0)
        command.add_argument(
            "--strides", type=int, help="strides per rollout (default: the reference's length)"
        )
        add_symplectic_option(
            command, "symplectic strides of this kind (as flashmd md --symplectic; default: direct)"
        )
        command.add_argument("--device", default="cpu")
    commands.choices["expansion"].add_argument("--figure", help="PNG of V(T) for both sides")
    commands.choices["melting"].add_argument(
        "--melted-msd-A2", type=float, default=2.0, help="second-half MSD above which it melted"
    )
    args = parser.parse_args()
    {"expansion": expansion, "melting": melting}[args.command](args)


if __name__ == "__main__":
    main()
