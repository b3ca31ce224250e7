"""Reference continuations: NVE reference MD continued from given states (the "label" step).

Active learning picks states (positions *and* momenta) that a learned model visited and needs
reference dynamics from exactly those states. :func:`label_states` runs velocity Verlet with a
recipe's calculator from each :class:`Continuation` and stores the result as an ordinary trajectory
(same schema and attributes as ``flashmd generate`` writes), tagged with the continuation's
provenance (``origin``, ``iteration``, ``start_from``, ...). Frame 0 is the given state itself;
there is no equilibration and no thermalisation.

Runs are resumable like generation: complete trajectories are skipped, partial ones continue from
their last committed frame (NVE is deterministic, so the result equals an uninterrupted run up to
force-summation round-off when the calculator rebuilds its neighbour list).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from ase import Atoms
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list
from tqdm.auto import tqdm

from flashmd.data.calculators import (
    attach_calculator,
    check_same_weights,
    make_calculator,
    provenance,
)
from flashmd.data.generate import GenerateReport, check_workers, run_pool
from flashmd.data.recipes import CalculatorSpec, Recipe, RecipeError, whole_multiple
from flashmd.data.reference import Restarts, produce, resume_at_restart, snapshot
from flashmd.data.store import TrajectoryStore
from flashmd.units import FS

#: Atoms closer than this (Å, minimum image) are an overlap: the state is refused.
MIN_DISTANCE = 0.5

#: Trajectory attributes the labeller owns; a continuation's ``attrs`` may not set them.
RESERVED_ATTRS = frozenset(
    {
        "calculator",
        "ensemble",
        "timestep_fs",
        "sample_interval_fs",
        "equilibration_fs",
        "system",
        "pbc",
        "n_frames",
        "status",
        "rng_state",
        "restart",
        "wall_time_s",
    }
)


@dataclass(frozen=True)
class Continuation:
    """One reference continuation: its trajectory id, the start state and provenance.

    Attributes:
        id: trajectory id (group name) in the store.
        atoms: the start state: positions (Å), momenta (amu·Å/ASE time), cell (Å), pbc, numbers
            and masses (``atoms.get_masses()``, amu). A copy is kept (without calculator).
        attrs: JSON-able provenance merged into the trajectory's attributes, e.g.
            ``origin="learn"``, ``iteration``, ``start_from={store, trajectory, frame}``,
            ``temperature_K`` (K; default: the start state's kinetic temperature).
    """

    id: str
    atoms: Atoms
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        atoms = self.atoms.copy()  # positions, momenta, masses, cell, pbc; no calculator
        atoms.calc = None
        object.__setattr__(self, "atoms", atoms)
        object.__setattr__(self, "attrs", _plain(self.attrs, f"continuation {self.id!r}: attrs"))


@dataclass(frozen=True)
class ContinuationSettings:
    """How every continuation is run: calculator and sampling (times in fs).

    Frames are stored at ``0, sample_interval_fs, ..., duration_fs`` (inclusive), so a trajectory
    has ``duration_fs / sample_interval_fs + 1`` frames.
    """

    calculator: CalculatorSpec
    timestep_fs: float = 2.0
    sample_interval_fs: float = 8.0
    duration_fs: float = 128.0
    store_forces: bool = True
    store_stress: bool = False

    def __post_init__(self) -> None:
        for name in ("timestep_fs", "sample_interval_fs", "duration_fs"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of fs, got {value!r}")
        whole_multiple(
            self.sample_interval_fs, self.timestep_fs, "sample_interval_fs", "timestep_fs"
        )
        whole_multiple(
            self.duration_fs, self.sample_interval_fs, "duration_fs", "sample_interval_fs"
        )

    @property
    def steps_per_sample(self) -> int:
        """Velocity Verlet steps between stored frames."""
        return round(self.sample_interval_fs / self.timestep_fs)

    @property
    def frames_per_trajectory(self) -> int:
        """Stored frames per continuation, including the start state at t = 0."""
        return round(self.duration_fs / self.sample_interval_fs) + 1


def reference_settings(
    store: TrajectoryStore,
    duration_fs: float,
    sample_interval_fs: float | None = None,
    store_forces: bool | None = None,
) -> ContinuationSettings:
    """Continuations with the reference that made ``store``: its recipe's calculator and
    timestep; ``sample_interval_fs`` and ``store_forces`` default to the recipe's too, and
    ``duration_fs`` is rounded up to whole sample intervals.

    Raises:
        RecipeError: the store was not made by ``flashmd generate`` (its recipe names no
            calculator or timestep).
    """
    recipe = store.recipe
    if "calculator" not in recipe or "timestep_fs" not in recipe:
        raise RecipeError(
            f"{store.location} was not made by flashmd generate (its recipe names no "
            "calculator): continuations need the reference that made it"
        )
    interval = sample_interval_fs or float(recipe["sample_interval_fs"])
    if store_forces is None:
        store_forces = bool(recipe.get("store_forces", True))
    return ContinuationSettings(
        calculator=CalculatorSpec.model_validate(recipe["calculator"]),
        timestep_fs=float(recipe["timestep_fs"]),
        sample_interval_fs=interval,
        duration_fs=math.ceil(duration_fs / interval - 1e-9) * interval,
        store_forces=store_forces,
    )


def _plain(value: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A JSON round trip of ``value``: NumPy scalars and arrays become numbers and lists."""

    def convert(item: Any) -> Any:
        if isinstance(item, np.generic | np.ndarray):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON-serialisable")

    try:
        return json.loads(json.dumps(dict(value), default=convert))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label}: {error}") from None


def trajectory_attrs(
    settings: ContinuationSettings, continuation: Continuation, calculator: Any
) -> dict[str, Any]:
    """The trajectory attributes of one continuation (those ``flashmd generate`` writes that mean
    something here, then the continuation's own ``attrs``)."""
    atoms = continuation.atoms
    return {
        "calculator": provenance(settings.calculator, calculator),
        "ensemble": {"production": "nve"},
        "temperature_K": float(atoms.get_temperature()),
        "timestep_fs": settings.timestep_fs,
        "sample_interval_fs": settings.sample_interval_fs,
        "equilibration_fs": 0.0,
        "system": {"formula": atoms.get_chemical_formula("metal")},
        "pbc": [bool(p) for p in atoms.pbc],
        **continuation.attrs,
    }


def check_state(continuation: Continuation) -> None:
    """Raise ValueError when the start state is unusable: a bad id, non-finite or missing
    positions, momenta, cell or masses, a degenerate periodic cell, reserved attributes, or atoms
    closer than 0.5 Å (minimum image)."""
    label = f"continuation {continuation.id!r}"
    if not continuation.id or "/" in continuation.id or continuation.id.startswith("."):
        raise ValueError(f"{label}: a trajectory id must be non-empty, without '/' or leading '.'")
    clash = sorted(RESERVED_ATTRS & set(continuation.attrs))
    if clash:
        raise ValueError(f"{label}: attrs may not set {', '.join(clash)} (set by the labeller)")
    atoms = continuation.atoms
    if len(atoms) == 0:
        raise ValueError(f"{label}: the state has no atoms")
    arrays = {
        "positions": atoms.get_positions(),
        "momenta": atoms.get_momenta(),
        "cell": atoms.cell.array,
        "masses": atoms.get_masses(),
    }
    for name, array in arrays.items():
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"{label}: {name} hold {int(bad.sum())} NaN or infinite values")
    if (arrays["masses"] <= 0).any():
        raise ValueError(f"{label}: masses must be positive")
    periodic = arrays["cell"][atoms.pbc]
    if len(periodic) and np.linalg.matrix_rank(periodic) < len(periodic):
        raise ValueError(
            f"{label}: pbc is {atoms.pbc.tolist()} but those cell vectors are degenerate"
        )
    i, j, d = neighbor_list("ijd", atoms, MIN_DISTANCE)
    if len(d):
        k = int(np.argmin(d))
        raise ValueError(
            f"{label}: atoms {i[k]} and {j[k]} are {d[k]:.3f} Å apart (minimum image); "
            f"{len(d) // 2 or 1} pair(s) closer than {MIN_DISTANCE} Å overlap"
        )


def preflight(settings: ContinuationSettings, continuations: Sequence[Continuation]) -> None:
    """Check every start state and evaluate the calculator once per distinct species set, so that
    bad input stops the run before anything is written.

    Raises:
        ValueError: duplicate ids, an unusable state (see :func:`check_state`); RecipeError (a
            ValueError) when the calculator lacks an element or fails on a state.
    """
    ids = [c.id for c in continuations]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"continuation ids must be unique; repeated: {', '.join(duplicates)}")
    seen: set[frozenset[str]] = set()
    for continuation in continuations:
        check_state(continuation)
        species = frozenset(continuation.atoms.get_chemical_symbols())
        if species in seen:
            continue
        seen.add(species)
        label = f"continuation {continuation.id!r}"
        atoms = continuation.atoms.copy()
        attach_calculator(settings.calculator, atoms, label)
        try:
            energy = atoms.get_potential_energy()
        except Exception as error:
            raise RecipeError(
                f"{label} ({atoms.get_chemical_formula()}): calculator {settings.calculator.name} "
                f"failed on it: {type(error).__name__}: {error}"
            ) from None
        if not np.isfinite(energy):
            raise ValueError(f"{label}: calculator {settings.calculator.name} gave energy {energy}")


def check_existing(
    store: TrajectoryStore, settings: ContinuationSettings, continuations: Sequence[Continuation]
) -> None:
    """Refuse to resume or skip a stored trajectory that another start state or sampling made."""
    present = set(store.ids())
    for continuation in continuations:
        if continuation.id not in present:
            continue
        reader = store[continuation.id]
        if reader.n_frames == 0:
            continue
        first = reader.frame(0)
        atoms = continuation.atoms
        same = (
            np.array_equal(reader.numbers, atoms.numbers)
            and np.array_equal(first["positions"], atoms.get_positions())
            and np.array_equal(first["momenta"], atoms.get_momenta())
            and reader.attrs.get("timestep_fs") == settings.timestep_fs
            and reader.attrs.get("sample_interval_fs") == settings.sample_interval_fs
            and reader.has_forces == settings.store_forces
        )
        if not same:
            raise ValueError(
                f"{store.location} already holds trajectory {continuation.id!r} started from "
                "another state or with other sampling; use a new id or store (nothing written)"
            )


def run_continuation(
    settings: ContinuationSettings,
    continuation: Continuation,
    location: str,
    on_progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Run (or resume, or skip when complete) one continuation; returns frames written now."""
    store = TrajectoryStore.open(location, mode="a")
    if continuation.id in store and store[continuation.id].status == "complete":
        return 0
    atoms = continuation.atoms.copy()
    atoms.set_constraint()
    atoms.calc = make_calculator(settings.calculator)
    attrs = trajectory_attrs(settings, continuation, atoms.calc)
    started = time.perf_counter()
    with store.writer(
        continuation.id,
        atoms.numbers,
        atoms.get_masses(),
        attrs,
        with_forces=settings.store_forces,
        capacity=settings.frames_per_trajectory,
    ) as writer:
        already = writer.n_frames
        # produce() reads only the sampling fields a Recipe and these settings share; NVE draws no
        # random numbers, so the RNG states it commits are those of an unused generator.
        rng = np.random.default_rng(0)
        first, replayed = None, None
        if already:
            first, replayed = resume_at_restart(atoms, store[continuation.id], rng)
        else:
            writer.append(snapshot(atoms, 0.0, settings.store_forces))
            on_progress(1)
        restarts = Restarts.of_calculator(
            settings.calculator,
            lambda steps_taken: VelocityVerlet(atoms, settings.timestep_fs * FS),
        )
        produce(
            atoms,
            restarts,
            cast(Recipe, settings),
            writer,
            rng,
            on_progress,
            first_frame=first,
            replayed=replayed,
        )
        writer.close(complete=True, attrs={"wall_time_s": time.perf_counter() - started})
    return writer.n_frames - already


def label_states(
    settings: ContinuationSettings,
    continuations: Sequence[Continuation],
    location: str,
    store_recipe: Mapping[str, Any],
    workers: int = 1,
    progress: bool = True,
) -> GenerateReport:
    """Run NVE reference continuations from the given states into the store at ``location``.

    Args:
        settings: calculator, timestep and sampling shared by all continuations.
        continuations: start states with their ids and provenance.
        location: a local path or fsspec URL; the store is created or reopened.
        store_recipe: what the store belongs to (e.g. the learn run's recipe, as a JSON-able
            mapping); a store made from another recipe is refused.
        workers: processes; more than one runs continuations in parallel (not on ``memory://``).
        progress: show a progress bar in frames.

    Raises:
        ValueError: bad settings or states, or an id already used for another start (nothing is
            written); RecipeError (a ValueError) for an unusable calculator.
        StoreError: ``location`` holds something else, or a store from another recipe.
    """
    check_workers(location, workers)
    started = time.perf_counter()
    continuations = list(continuations)
    preflight(settings, continuations)
    if not continuations:
        return GenerateReport(0, 0, 0, time.perf_counter() - started)
    store = TrajectoryStore.create(location, store_recipe)
    check_same_weights(settings.calculator, store)
    check_existing(store, settings, continuations)
    done = {tid for tid in store.ids() if store[tid].status == "complete"}
    todo = [c for c in continuations if c.id not in done]
    committed = sum(store[c.id].n_frames for c in todo if c.id in store)
    per_trajectory = settings.frames_per_trajectory
    total = len(continuations) * per_trajectory
    bar = tqdm(
        total=total,
        initial=total - len(todo) * per_trajectory + committed,
        unit="frame",
        desc="label",
        disable=not progress,
        smoothing=0.05,
    )
    written = 0
    try:
        if workers == 1 or len(todo) <= 1:
            for continuation in todo:
                written += run_continuation(settings, continuation, location, bar.update)
        else:
            jobs = [(settings, continuation, location) for continuation in todo]
            written = run_pool(run_continuation, jobs, workers, bar)
    finally:
        bar.close()
    return GenerateReport(
        len(continuations), len(continuations) - len(todo), written, time.perf_counter() - started
    )
