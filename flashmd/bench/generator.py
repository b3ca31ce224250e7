"""Benchmarks of the generator (``flashmd bench storage|workers``); each prints a table.

* storage: wall time of production MD written to a store, against the same MD loop that stores
  nothing (same atoms, same initial state, same number of steps), in one run, alternating repeats.
* workers: frames per second of ``generate`` with one worker and with N workers on one recipe.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

import numpy as np

from flashmd.data.generate import generate
from flashmd.data.recipes import Recipe, parse_recipe
from flashmd.data.reference import NullSink, equilibrate, prepare, produce, restarts_for
from flashmd.data.store import TrajectoryStore


def _al_recipe(
    cells: int,
    frames: int,
    trajectories: int = 1,
    timestep_fs: float = 2.0,
    sample_interval_fs: float = 4.0,
) -> Recipe:
    return parse_recipe(
        {
            "name": f"bench-al-{4 * cells**3}",
            "seed": 0,
            "calculator": {"name": "asap3-emt"},
            "systems": [{"builder": "crystal", "element": "Al", "supercell": [cells] * 3}],
            "temperatures_K": [700],
            "replicas": trajectories,
            "timestep_fs": timestep_fs,
            "sample_interval_fs": sample_interval_fs,
            "equilibration_fs": 20 * timestep_fs,
            "production_fs": (frames - 1) * sample_interval_fs,
        }
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def bench_storage(
    n_atoms_per_side: int = 3,
    frames: int = 2000,
    repeats: int = 3,
    sample_interval_fs: float = 8.0,
    commit_every_s: float = 0.1,
) -> str:
    """Storage overhead: production MD into a store against the same loop without storage.

    Variants, all from the same equilibrated state, over the same steps:

    * ``MD steps only``: the bare integrator loop, nothing sampled;
    * ``sampled, not stored``: the production loop that takes every frame (energy, copies, RNG
      state, the restarts that make a resumed run exact) and hands it to a sink that drops it:
      the MD loop with no storage;
    * ``stored``: the same loop writing to a store (trajectory creation and close included; the
      store itself is made beforehand, once per generation), committing per chunk only;
    * ``stored, commit every S s``: the same, also committing every ``commit_every_s`` seconds
      (the price of the time-based commits that bound what a killed run loses; the writers'
      default is one every :data:`~flashmd.data.store.COMMIT_INTERVAL_S` seconds).
    """
    recipe = _al_recipe(n_atoms_per_side, frames, sample_interval_fs=sample_interval_fs)
    task = next(recipe.tasks())
    atoms, rng, attrs = prepare(recipe, task)
    equilibrate(atoms, recipe, task, rng)
    state = (atoms.get_positions(), atoms.get_momenta(), rng.bit_generator.state)
    # frames after t = 0, as produce() continues from one stored frame
    production = recipe.model_copy(
        update={"production_fs": recipe.production_fs - recipe.sample_interval_fs}
    )
    n_steps = (frames - 1) * recipe.steps_per_sample

    def reset():
        atoms.set_positions(state[0])
        atoms.set_momenta(state[1])
        rng.bit_generator.state = state[2]
        return restarts_for(recipe, atoms, task.temperature_K, rng)

    def steps_only(_: str) -> float:
        dynamics = reset().new_dynamics(0)
        start = time.perf_counter()
        for _ in range(n_steps):
            dynamics.step()
        return time.perf_counter() - start

    def sampled(_: str) -> float:
        restarts = reset()
        start = time.perf_counter()
        produce(atoms, restarts, production, NullSink(), rng)
        return time.perf_counter() - start

    def stored(directory: str, commit_interval_s: float | None = None) -> float:
        restarts = reset()
        store = TrajectoryStore.create(Path(directory) / f"{time.perf_counter_ns()}.zarr")
        start = time.perf_counter()
        writer = store.writer(
            task.id, atoms.numbers, atoms.get_masses(), attrs, True, frames, commit_interval_s
        )
        produce(atoms, restarts, production, writer, rng)
        writer.close(complete=True)
        return time.perf_counter() - start

    variants = {
        "MD steps only": steps_only,
        "sampled, not stored": sampled,
        "stored": stored,
        f"stored, commit every {commit_every_s:g} s": functools.partial(
            stored, commit_interval_s=commit_every_s
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as directory:
        steps_only(directory)  # warm-up: neighbour lists, caches
        for _ in range(repeats):
            for name, run in variants.items():
                times[name].append(run(directory))
    median = {name: float(np.median(values)) for name, values in times.items()}
    rows = [("variant", "median s", "min s", "/ steps only", "/ sampled, not stored")]
    for name, values in times.items():
        rows.append(
            (
                name,
                f"{median[name]:.3f}",
                f"{min(values):.3f}",
                f"{median[name] / median['MD steps only']:.3f}",
                f"{median[name] / median['sampled, not stored']:.3f}",
            )
        )
    header = (
        f"storage overhead: Al fcc, {len(atoms)} atoms, asap3 EMT, NVE {recipe.timestep_fs} fs, "
        f"a frame (positions, momenta, forces, cell, energy) every {recipe.sample_interval_fs}"
        f" fs, {frames - 1} frames after t=0, {repeats} alternating repeats"
    )
    return header + "\n" + _table(rows)


def bench_workers(
    workers: int = 2, trajectories: int = 8, frames: int = 4000, sample_interval_fs: float = 8.0
) -> str:
    """Frames per second of ``generate`` with 1 and with ``workers`` processes."""
    recipe = _al_recipe(3, frames, trajectories=trajectories, sample_interval_fs=sample_interval_fs)
    rows = [("workers", "wall s", "frames/s", "speed-up")]
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for count in (1, workers):
            report = generate(
                recipe, str(Path(directory) / f"w{count}.zarr"), workers=count, progress=False
            )
            rates[count] = report.frames_written / report.wall_time_s
            rows.append(
                (
                    str(count),
                    f"{report.wall_time_s:.2f}",
                    f"{rates[count]:.0f}",
                    f"{rates[count] / rates[1]:.2f}",
                )
            )
    header = (
        f"worker scaling: {trajectories} trajectories of {frames} frames (one every "
        f"{sample_interval_fs} fs), Al 108 atoms, asap3 EMT, process start-up included"
    )
    return header + "\n" + _table(rows)


__all__ = ["bench_storage", "bench_workers"]


def bench_calculators(
    names: tuple[str, ...] = ("asap3-emt", "emt", "sevennet-0", "chgnet"),
    element: str = "Cu",
    cells: tuple[int, ...] = (2, 3),
    repeats: int = 3,
) -> str:
    """What a reference call costs: seconds per energy-and-forces evaluation of each named
    calculator on a rattled fcc crystal of ``element`` with ``cells`` cubic cells per side (the
    median of ``repeats`` calls after one warm-up call, which loads a network), the MD steps per
    second that allows, and the ratio to the first calculator on the same crystal, in one run.
    A calculator that cannot be made here (package not installed) gets a row saying why.
    """
    from ase.build import bulk

    from flashmd.data.calculators import make_calculator
    from flashmd.data.recipes import CalculatorSpec, RecipeError

    rows = [("calculator", "atoms", "s per call", "steps per s", f"x {names[0]}")]
    first: dict[int, float] = {}
    for name in names:
        try:
            calculator = make_calculator(CalculatorSpec(name=name))
        except RecipeError as error:
            rows.append((name, "-", "-", "-", f"not available: {error}"))
            continue
        for n in cells:
            atoms = bulk(element, "fcc", cubic=True).repeat(n)
            atoms.calc = calculator
            rng = np.random.default_rng(0)
            reference = atoms.positions.copy()
            seconds = []
            for k in range(repeats + 1):  # the first call warms up
                atoms.positions = reference + rng.normal(scale=0.05, size=reference.shape)
                started = time.perf_counter()
                atoms.get_forces()
                if k:
                    seconds.append(time.perf_counter() - started)
            median = float(np.median(seconds))
            first.setdefault(n, median)
            rows.append(
                (
                    name,
                    str(len(atoms)),
                    f"{median:.4g}",
                    f"{1 / median:.4g}",
                    f"{median / first[n]:.3g}",
                )
            )
    header = (
        f"reference calculators, energy and forces of rattled fcc {element}, median of {repeats} "
        "calls after a warm-up"
    )
    return header + "\n" + _table(rows)
