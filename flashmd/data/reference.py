"""Run one reference trajectory of a recipe with an ASE calculator, frame by frame into a sink.

The trajectory is fixed by the recipe and its task index: its structure and its thermostat noise
come from ``SeedSequence(recipe.seed, spawn_key=(index,))``.

A resumed trajectory equals the uninterrupted one bit for bit. Calculators that keep a neighbour
list between calls sum forces in an order set by the list's history, so a calculator made afresh
at a resume point would drift off in the last bits (1e-12 Å at first, growing). The production
therefore restarts itself every :data:`RESTART_EVERY_FRAMES` frames exactly as a resumed run
starts: a fresh calculator and fresh dynamics at the frame's stored state, the restart's RNG state
committed with the frames (:class:`Restarts`). A resumed run goes back to the latest committed
restart and recomputes the frames after it, checking each against the stored one
(:class:`StoredFrames`), before it appends new frames. Calculators without such state (the MLIPs)
keep their calculator and restart at every frame, which costs nothing; their equilibration (many
minutes with an MLIP) is committed too, as the trajectory's ``equilibration`` attribute, and an
interrupted one continues from there (:func:`equilibrate`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.constraints import FixCom
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from flashmd.data.calculators import attach_calculator, keeps_state, make_calculator, provenance
from flashmd.data.claims import Claim
from flashmd.data.recipes import CalculatorSpec, Recipe, RecipeError, TrajectoryTask, system_name
from flashmd.data.store import (
    COMMIT_INTERVAL_S,
    TrajectoryReader,
    TrajectoryStore,
    TrajectoryWriter,
)
from flashmd.data.systems import build_system
from flashmd.units import FS


class FrameSink(Protocol):
    """Where frames go: a :class:`~flashmd.data.store.TrajectoryWriter` or a null sink."""

    n_frames: int

    def append(self, frame: dict, commit_attrs: dict | None = None) -> None: ...


#: Frames between the production's restarts when the calculator keeps state between calls: a
#: fresh asap3 EMT costs about two MD steps, so with 8 steps per frame restarts cost ~1.5 % and a
#: resumed run recomputes at most 15 frames.
RESTART_EVERY_FRAMES = 16


@dataclass
class Restarts:
    """How the production restarts itself, so that a resumed run equals an uninterrupted one.

    Attributes:
        every_frames: a restart at every frame whose index is a multiple of this.
        new_calculator: makes a fresh calculator; ``None`` keeps the one attached (it keeps no
            state between calls).
        new_dynamics: the dynamics on the atoms, given the timesteps the production has taken.
    """

    every_frames: int
    new_calculator: Callable[[], Calculator] | None
    new_dynamics: Callable[[int], MolecularDynamics]

    @classmethod
    def of_calculator(
        cls, spec: CalculatorSpec, new_dynamics: Callable[[int], MolecularDynamics]
    ) -> Restarts:
        """Every :data:`RESTART_EVERY_FRAMES` frames with a fresh calculator when the calculator
        keeps state between calls (:func:`~flashmd.data.calculators.keeps_state`), else every
        frame keeping it."""
        if not keeps_state(spec):
            return cls(1, None, new_dynamics)
        return cls(RESTART_EVERY_FRAMES, lambda: make_calculator(spec), new_dynamics)


def restarts_for(
    recipe: Recipe, atoms: Atoms, temperature_K: float, rng: np.random.Generator
) -> Restarts:
    """The production restarts of a recipe's trajectory on ``atoms``."""

    def dynamics(steps_taken: int) -> MolecularDynamics:
        return make_dynamics(
            atoms, recipe.ensemble.production, recipe, temperature_K, rng, steps_taken
        )

    return Restarts.of_calculator(recipe.calculator, dynamics)


class StoredFrames:
    """Checks the frames a resumed run recomputes after its restart against the stored ones.

    A difference (another library version or machine than the one that wrote the store) is
    warned about once; the stored frames are kept and the run goes on from its own state.
    """

    def __init__(self, reader: TrajectoryReader) -> None:
        self.reader = reader
        #: Å or eV·fs/Å, the largest difference of positions or momenta seen
        self.largest_difference = 0.0

    def __call__(self, index: int, frame: dict) -> None:
        stored = self.reader.frame(index)
        difference = max(
            float(np.max(np.abs(stored[key] - frame[key]))) for key in ("positions", "momenta")
        )
        if difference > 0 and self.largest_difference == 0:
            warnings.warn(
                f"trajectory {self.reader.name!r}: frame {index} recomputed after the restart "
                f"differs from the stored one by {difference:.1e} (another ASE, calculator or "
                "machine than the one that wrote it?); the stored frames are kept and the "
                "trajectory continues from the recomputed state",
                stacklevel=2,
            )
        self.largest_difference = max(self.largest_difference, difference)


class NullSink:
    """Collects frames exactly like the writer does, then drops them (for the storage benchmark)."""

    def __init__(self) -> None:
        self.n_frames = 0

    def append(self, frame: dict, commit_attrs: dict | None = None) -> None:
        self.n_frames += 1


def rngs_for(
    recipe: Recipe, task: TrajectoryTask
) -> tuple[np.random.Generator, np.random.Generator]:
    """(structure rng, dynamics rng) of one trajectory, independent of workers and shards."""
    structure, dynamics = np.random.SeedSequence(recipe.seed, spawn_key=(task.index,)).spawn(2)
    return np.random.default_rng(structure), np.random.default_rng(dynamics)


def encode_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state with its 128-bit integers as strings (JSON-safe)."""
    state = rng.bit_generator.state
    return {**state, "state": {k: str(v) for k, v in state["state"].items()}}


def restore_rng_state(rng: np.random.Generator, encoded: dict[str, Any]) -> None:
    rng.bit_generator.state = {**encoded, "state": {k: int(v) for k, v in encoded["state"].items()}}


def centred_langevin(
    atoms: Atoms,
    timestep: float,
    temperature_K: float,
    friction: float,
    rng: np.random.Generator,
) -> Langevin:
    """ASE's ``Langevin`` with the centre of mass held by a ``FixCom`` constraint on ``atoms``
    (``timestep`` and ``friction`` in ASE units), the one way flashmd runs it.

    Not ASE's ``fixcm=True``: that removes the mean of the random kicks and rescales them by
    ``√(N / (N - 1))``, which heats the ``3N - 3`` free modes by ``N / (N - 1)`` (+0.9 % for
    108 atoms; it put a reference's mean ``V`` about 1 meV/atom high).
    """
    atoms.set_constraint(FixCom())
    return Langevin(
        atoms, timestep, temperature_K=temperature_K, friction=friction, fixcm=False, rng=rng
    )


def make_dynamics(
    atoms: Atoms,
    kind: str,
    recipe: Recipe,
    temperature_K: float,
    rng: np.random.Generator,
    steps_taken: int = 0,
) -> MolecularDynamics:
    """ASE dynamics for ``kind`` in ``{"nve", "langevin", "bussi", "npt"}`` at the recipe's
    timestep; ``steps_taken`` continues the barostat's rescaling phase (npt).

    Langevin and Bussi get a ``FixCom`` constraint on ``atoms``; the other kinds clear
    constraints (they keep a zero centre-of-mass momentum by themselves). Bussi needs it for its
    degrees of freedom, not for the momentum: ASE's ``Bussi`` targets ``N_f kB T / 2`` with
    ``N_f = atoms.get_number_of_degrees_of_freedom()``, which is ``3N`` without the constraint,
    while a zero total momentum leaves ``3N - 3``: the run would read ``3N / (3N - 3)`` too hot
    (+0.9 % for 108 atoms, +3 % for 32), as measured on the demo's alloy (705 K for 700).
    """
    atoms.set_constraint()
    timestep = recipe.timestep_fs * FS
    if kind == "nve":
        return VelocityVerlet(atoms, timestep)
    if kind == "langevin":
        return centred_langevin(
            atoms, timestep, temperature_K, recipe.ensemble.friction_per_fs / FS, rng
        )
    if kind == "bussi":
        atoms.set_constraint(FixCom())
        return Bussi(
            atoms, timestep, temperature_K=temperature_K, taut=recipe.ensemble.taut_fs * FS, rng=rng
        )
    if kind == "npt":
        return _npt(atoms, recipe, temperature_K, rng, steps_taken)
    raise ValueError(f"unknown ensemble {kind!r}")


def _npt(
    atoms: Atoms,
    recipe: Recipe,
    temperature_K: float,
    rng: np.random.Generator,
    steps_taken: int,
) -> MolecularDynamics:
    """Langevin with the stochastic cell rescaling of the recipe's ensemble."""
    from flashmd.ase.reference_npt import LangevinSCR
    from flashmd.md.barostats import GPA, StochasticCellRescaling

    spec = recipe.ensemble
    assert spec.pressure_GPa is not None  # the recipe's validation asks for it
    barostat = StochasticCellRescaling(
        pressure=spec.pressure_GPa * GPA,
        temperature_K=temperature_K,
        tau=spec.barostat_tau_fs * FS,
        compressibility=spec.compressibility_per_GPa / GPA,
        mask=spec.cell_mask,
    )
    return LangevinSCR(
        atoms,
        recipe.timestep_fs * FS,
        temperature_K=temperature_K,
        friction=spec.friction_per_fs / FS,
        barostat=barostat,
        barostat_every=spec.barostat_every,
        rng=rng,
        steps_taken=steps_taken,
    )


def snapshot(
    atoms: Atoms,
    time_fs: float,
    with_forces: bool,
    energy: float | None = None,
    with_stress: bool = False,
) -> dict[str, np.ndarray | float]:
    """One frame in store units; the calculator's cached results are reused, never recomputed.

    ``energy`` (eV), when given, is the potential energy already known for these positions;
    ``with_stress`` adds the (3, 3) stress in eV/Å³.
    """
    frame: dict[str, np.ndarray | float] = {
        "positions": atoms.get_positions(),
        "momenta": atoms.get_momenta(),
        "cell": atoms.cell.array.copy(),
        "energy": atoms.get_potential_energy() if energy is None else energy,
        "time_fs": time_fs,
    }
    if with_forces:
        frame["forces"] = atoms.get_forces()
    if with_stress:
        frame["stress"] = atoms.get_stress(voigt=False)
    return frame


class EnergyBeforeForces:
    """Calculator proxy that, when armed, asks for the energy just before the next new forces.

    asap3's EMT computes the potential energy in a pass of its own when it is asked after the
    forces (about 40 µs for 108 atoms, a third of an MD step) but for about 10 µs when asked
    before them. :func:`produce` arms the proxy for the last step before each stored frame, so the
    frame's energy costs a quarter as much; the energy is kept in :attr:`energy` (asking asap3
    again would cost another 10 µs). Calculators that compute both together (ASE's, most MLIPs)
    are unaffected: the forces then come from the same cached calculation.

    Everything else is forwarded to the wrapped calculator.
    """

    def __init__(self, calc: Any) -> None:
        self.calc = calc
        self.armed = False
        #: eV, the energy taken by the last armed force evaluation (None: not taken).
        self.energy: float | None = None
        self._knows_cache = hasattr(calc, "calculation_required")

    def arm(self) -> None:
        """Take the energy with the next force evaluation at new positions."""
        self.armed, self.energy = True, None

    def get_forces(self, atoms: Atoms | None = None) -> np.ndarray:
        if self.armed and self._knows_cache and self.calc.calculation_required(atoms, ["forces"]):
            self.armed = False
            self.energy = float(self.calc.get_potential_energy(atoms))
        return self.calc.get_forces(atoms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.calc, name)


def produce(
    atoms: Atoms,
    restarts: Restarts,
    recipe: Recipe,
    sink: FrameSink,
    rng: np.random.Generator,
    on_frames: Callable[[int], None] = lambda n: None,
    report_every: int = 16,
    first_frame: int | None = None,
    replayed: Callable[[int, dict], None] | None = None,
) -> None:
    """Step the production dynamics from frame ``first_frame - 1`` (the state ``atoms`` hold;
    default: the sink's last frame), taking a frame every ``sample_interval_fs`` until the sink
    holds ``recipe.frames_per_trajectory`` frames. Frames the sink already holds are handed to
    ``replayed(index, frame)`` instead of the sink. The loop is the same with or without storage.

    Every commit carries the RNG state after its last frame (``rng_state``) and the latest restart
    (``restart``: its frame index and RNG state), from which a resumed run starts.
    """
    steps = recipe.steps_per_sample
    start = sink.n_frames if first_frame is None else first_frame
    unreported = 0
    calc = atoms.calc
    dynamics = proxy = restart = None
    try:
        for frame_index in range(start, recipe.frames_per_trajectory):
            if dynamics is None or (frame_index - 1) % restarts.every_frames == 0:
                if restarts.new_calculator is not None:
                    calc = restarts.new_calculator()
                atoms.calc = proxy = EnergyBeforeForces(calc)
                dynamics = restarts.new_dynamics((frame_index - 1) * steps)
                restart = {"frame": frame_index - 1, "rng_state": encode_rng_state(rng)}
            for _ in range(steps - 1):
                dynamics.step()
            proxy.arm()
            dynamics.step()
            time_fs = frame_index * recipe.sample_interval_fs
            frame = snapshot(atoms, time_fs, recipe.store_forces, proxy.energy, recipe.store_stress)
            if frame_index < sink.n_frames:
                if replayed is not None:
                    replayed(frame_index, frame)
                continue
            sink.append(
                frame, commit_attrs={"rng_state": encode_rng_state(rng), "restart": restart}
            )
            unreported += 1
            if unreported == report_every:
                on_frames(unreported)
                unreported = 0
    finally:
        atoms.calc = calc
    on_frames(unreported)


def resume_at_restart(
    atoms: Atoms, reader: TrajectoryReader, rng: np.random.Generator
) -> tuple[int, StoredFrames]:
    """Set ``atoms`` and ``rng`` to the latest committed restart of a partial trajectory (in
    stores written before restarts were recorded: its last frame); returns the first frame to
    produce from there and the check of the frames recomputed up to the stored ones."""
    restart = reader.attrs.get("restart")
    if restart is None or restart["frame"] >= reader.n_frames:
        restart = {"frame": reader.n_frames - 1, "rng_state": reader.attrs["rng_state"]}
    frame = reader.frame(int(restart["frame"]))
    atoms.set_cell(frame["cell"])
    atoms.set_positions(frame["positions"])
    atoms.set_momenta(frame["momenta"])
    restore_rng_state(rng, restart["rng_state"])
    return int(restart["frame"]) + 1, StoredFrames(reader)


def prepare(recipe: Recipe, task: TrajectoryTask) -> tuple[Atoms, np.random.Generator, dict]:
    """Build the trajectory's atoms with a calculator attached, its dynamics rng, and its attrs."""
    spec = recipe.systems[task.system_index]
    structure_rng, dynamics_rng = rngs_for(recipe, task)
    label = f"systems.{task.system_index}"
    atoms = build_system(spec, structure_rng, label=label)
    if recipe.store_stress and not all(atoms.pbc):
        raise RecipeError(
            f"{label} ({system_name(spec)}) is not periodic in every direction, so it has "
            "no stress: leave it out of a recipe with store_stress: true, or store no stress"
        )
    attach_calculator(recipe.calculator, atoms, label)
    attrs = {
        "calculator": provenance(recipe.calculator, atoms.calc),
        "ensemble": recipe.stored()["ensemble"],
        "temperature_K": task.temperature_K,
        "timestep_fs": recipe.timestep_fs,
        "sample_interval_fs": recipe.sample_interval_fs,
        "equilibration_fs": _equilibration_fs(recipe, task),
        "seed": {"recipe_seed": recipe.seed, "spawn_key": [task.index]},
        "system": {**spec.model_dump(mode="json"), "formula": atoms.get_chemical_formula("metal")},
        "pbc": [bool(p) for p in atoms.pbc],
        "replica": task.replica,
    }
    return atoms, dynamics_rng, attrs


def _equilibration_fs(recipe: Recipe, task: TrajectoryTask) -> float:
    override = recipe.systems[task.system_index].equilibration_fs
    return recipe.equilibration_fs if override is None else override


def equilibration_phases(recipe: Recipe, task: TrajectoryTask) -> list[tuple[float, int]]:
    """(temperature K, MD steps) of each phase of a trajectory's equilibration: the system's
    melting first when it has one (``melt_K``, ``melt_fs``), then the trajectory's temperature."""
    spec = recipe.systems[task.system_index]
    phases = []
    if spec.melt_K is not None:
        phases.append((spec.melt_K, round(spec.melt_fs / recipe.timestep_fs)))
    steps = round(_equilibration_fs(recipe, task) / recipe.timestep_fs)
    return [*phases, (task.temperature_K, steps)]


def _equilibration_steps(recipe: Recipe, task: TrajectoryTask) -> int:
    return sum(steps for _, steps in equilibration_phases(recipe, task))


def trajectory_steps(recipe: Recipe, task: TrajectoryTask, frames: int | None = None) -> int:
    """MD steps of the reference that a trajectory holding ``frames`` frames took (None: the
    whole trajectory): its equilibration once it has a first frame, then ``steps_per_sample``
    per further frame. The unit of the generator's progress bar."""
    frames = recipe.frames_per_trajectory if frames is None else frames
    if frames == 0:
        return 0
    return _equilibration_steps(recipe, task) + (frames - 1) * recipe.steps_per_sample


def equilibrate(
    atoms: Atoms,
    recipe: Recipe,
    task: TrajectoryTask,
    rng: np.random.Generator,
    on_steps: Callable[[int], None] = lambda n: None,
    report_every: int = 64,
    checkpoint: Callable[[int], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> None:
    """Maxwell-Boltzmann velocities without centre-of-mass motion, then the thermostat through
    the :func:`equilibration_phases` (melting first, where the system asks for it);
    ``on_steps(n)`` every ``report_every`` steps and at the end.

    ``checkpoint(steps_taken)`` is called after every step (it stores the state when a commit
    is due: :func:`equilibration_state`); ``resume`` (such a stored state) continues from it
    instead of starting over, exactly when the calculator keeps no state between calls.
    """
    phases = equilibration_phases(recipe, task)
    if resume is None:
        thermalize_momenta(atoms, temperature_K=phases[0][0], rng=rng)
        Stationary(atoms)
        start = 0
    else:
        start = restore_equilibration(atoms, rng, resume)
        on_steps(start)  # done before the interruption; the bar starts trajectories at 0
    n_steps = sum(steps for _, steps in phases)
    taken, phase_end, unreported = start, 0, 0
    for temperature_K, steps in phases:
        phase_end += steps
        if taken >= phase_end:
            continue
        kind = recipe.ensemble.equilibration
        dynamics = make_dynamics(atoms, kind, recipe, temperature_K, rng, taken)
        while taken < phase_end:
            dynamics.step()
            taken, unreported = taken + 1, unreported + 1
            if unreported == report_every:
                on_steps(unreported)
                unreported = 0
            if checkpoint is not None and taken < n_steps:
                checkpoint(taken)
    on_steps(unreported)


def equilibration_state(atoms: Atoms, rng: np.random.Generator, steps_taken: int) -> dict:
    """``{"equilibration": ...}``: an equilibration's state as JSON-safe trajectory attrs
    (positions Å, momenta amu·Å/ASE-time, cell Å, RNG state, steps taken); floats
    round-trip exactly through JSON."""
    return {
        "equilibration": {
            "steps_taken": steps_taken,
            "positions": atoms.get_positions().tolist(),
            "momenta": atoms.get_momenta().tolist(),
            "cell": atoms.cell.array.tolist(),
            "rng_state": encode_rng_state(rng),
        }
    }


def restore_equilibration(atoms: Atoms, rng: np.random.Generator, state: dict) -> int:
    """Set ``atoms`` and ``rng`` to a stored :func:`equilibration_state`; returns its steps."""
    atoms.set_cell(np.asarray(state["cell"], dtype=np.float64))
    atoms.set_positions(np.asarray(state["positions"], dtype=np.float64))
    atoms.set_momenta(np.asarray(state["momenta"], dtype=np.float64))
    restore_rng_state(rng, state["rng_state"])
    return int(state["steps_taken"])


def run_trajectory(
    recipe: Recipe,
    task: TrajectoryTask,
    store_location: str,
    commit_interval_s: float | None = COMMIT_INTERVAL_S,
    on_progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Generate (or resume, or skip when complete or claimed by another writer, see
    :mod:`flashmd.data.claims`) one trajectory; returns frames written now. Frames are
    committed every chunk and at least every ``commit_interval_s`` seconds; ``on_progress(n)``
    reports MD steps taken (:func:`trajectory_steps`), replayed ones after a resume excepted."""
    store = TrajectoryStore.open(store_location, mode="a")
    if task.id in store and store[task.id].status == "complete":
        return 0
    held = store.claim(task.id)
    if isinstance(held, str):
        return 0  # another writer is on it
    with held:
        return _write_trajectory(recipe, task, store, held, on_progress, commit_interval_s)


def _equilibrate_into(
    writer: TrajectoryWriter,
    atoms: Atoms,
    recipe: Recipe,
    task: TrajectoryTask,
    rng: np.random.Generator,
    on_steps: Callable[[int], None],
    resume: dict[str, Any] | None,
) -> None:
    """Equilibrate a trajectory that has no frame yet. With a calculator that keeps no state
    between calls (the MLIPs, whose equilibration can take many minutes) the state is committed
    to the trajectory's attrs as often as frames are (``equilibration``), and an interrupted
    equilibration resumes from there (``resume``: the state found before the writer opened)
    exactly; cheap calculators with state start it over."""
    if keeps_state(recipe.calculator):
        equilibrate(atoms, recipe, task, rng, on_steps)
        return

    def checkpoint(steps_taken: int) -> None:
        writer.commit_attrs(lambda: equilibration_state(atoms, rng, steps_taken), when_due=True)

    if resume is not None:  # the writer made the frameless trajectory anew: keep the state
        writer.commit_attrs(lambda: {"equilibration": resume})
    equilibrate(atoms, recipe, task, rng, on_steps, checkpoint=checkpoint, resume=resume)


def _write_trajectory(
    recipe: Recipe,
    task: TrajectoryTask,
    store: TrajectoryStore,
    held: Claim,
    on_steps: Callable[[int], None],
    commit_interval_s: float | None,
) -> int:
    atoms, rng, attrs = prepare(recipe, task)
    started = time.perf_counter()
    # read before the writer opens: it makes a trajectory without frames anew
    equilibrated_so_far = store[task.id].attrs.get("equilibration") if task.id in store else None
    with store.writer(
        task.id,
        atoms.numbers,
        atoms.get_masses(),
        attrs,
        with_forces=recipe.store_forces,
        capacity=recipe.frames_per_trajectory,
        commit_interval_s=commit_interval_s,
        with_stress=recipe.store_stress,
    ) as writer:
        writer.before_commit.append(held.refresh)
        already = writer.n_frames
        first, replayed = None, None
        if already:
            first, replayed = resume_at_restart(atoms, store[task.id], rng)
        else:
            _equilibrate_into(writer, atoms, recipe, task, rng, on_steps, equilibrated_so_far)
            writer.append(
                snapshot(atoms, 0.0, recipe.store_forces, with_stress=recipe.store_stress),
                commit_attrs={"rng_state": encode_rng_state(rng), "equilibration": None},
            )
        restarts = restarts_for(recipe, atoms, task.temperature_K, rng)

        def on_frames(frames: int) -> None:
            on_steps(frames * recipe.steps_per_sample)

        produce(
            atoms, restarts, recipe, writer, rng, on_frames, first_frame=first, replayed=replayed
        )
        writer.close(complete=True, attrs={"wall_time_s": time.perf_counter() - started})
    return writer.n_frames - already
