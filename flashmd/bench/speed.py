"""``flashmd bench speed``: simulated picoseconds per wall-clock second, flashmd against MD.

Rows of each block (one block per system size and device):

- flashmd at each stride, NVE with the energy filter, through the batched engine
  (:class:`~flashmd.md.stepper.Stepper`); strides the filter rejects are redone as half strides
  or by velocity Verlet, which is part of the honest cost, so the fraction of timed strides that
  fell back is reported next to the speed;
- velocity Verlet at 2 fs on the same checkpoint's energy model (the like-for-like ML potential),
  through the same torch path as the fallback (skin neighbour lists, one force evaluation per
  step);
- the reference calculator's MD: ASE ``VelocityVerlet`` at 2 fs with asap3 EMT (ASE's own EMT,
  named as such, only when asap3 is not installed), or the calculator ``reference`` names (any
  name a recipe takes, e.g. ``sevennet-0`` for a model trained on SevenNet-0 data). It runs on
  the CPU whatever the block's device. Each row's speed is given against velocity Verlet on the
  energy model and against this reference.

The system is an fcc crystal of one element, ``cells`` cubic cells per side (3: 108 atoms, 6: 864),
equilibrated with a Langevin run of the reference calculator so every rollout starts from a
thermal state. Each row is warmed up, then its chunk count (strides, or 64 fs of Verlet) is chosen
from a calibration run so that one timed run lasts about ``seconds``; the ``repeats`` timed runs
of all rows are interleaved, so load from other processes affects every row alike, and the median
is reported. Trajectories continue across runs (warm-up and calibration excluded from the counts).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers, chemical_symbols
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from flashmd.data.calculators import EMT_ELEMENTS, make_calculator
from flashmd.data.mlip import MLIPS
from flashmd.data.recipes import CalculatorSpec, CrystalSystem
from flashmd.data.reference import centred_langevin
from flashmd.data.systems import build_system
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import ModelPotential
from flashmd.md.splitting import VELOCITY_VERLET, splitting_steps
from flashmd.md.state import MDState, state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.md.symplectic import (
    SolverConfig,
    SymplecticPropagator,
    generating_kind,
    model_propagator,
)
from flashmd.models.compiled import compile_model
from flashmd.models.io import load_model
from flashmd.models.model import FlashMDModel

#: Timestep (fs) of both velocity-Verlet baselines and of the equilibration.
TIMESTEP_FS = 2.0
#: Simulated time (fs) of one velocity-Verlet chunk (one ``velocity_verlet`` call or ``run``).
CHUNK_FS = 64.0
#: Langevin friction of the equilibration, 1/fs (as in the training recipes).
FRICTION_PER_FS = 0.02
#: Speed-up over velocity Verlet on the energy model that the issue asks for, by stride (fs).
TARGETS = {32.0: 10.0, 64.0: 20.0}
BASELINE = "VV on energy model"
#: Speed-up over MD with a machine-learned reference that issue #15 asks for, by stride (fs).
MLIP_TARGETS = {32.0: 300.0}


@dataclass(frozen=True)
class Reference:
    """The reference calculator: a factory (one fresh instance per use) and its row label.

    Attributes:
        make: a fresh calculator; name: the row label; key: the recipe name of the calculator;
        chunk_steps: velocity-Verlet steps per timed chunk (one for an expensive MLIP, whose
            single step takes about as long as a whole timed run of the other rows).
    """

    make: Callable[[], Calculator]
    name: str
    key: str
    chunk_steps: int = round(CHUNK_FS / TIMESTEP_FS)

    @property
    def is_mlip(self) -> bool:
        return self.key in MLIPS


def reference_calculator(name: str | None = None) -> Reference:
    """The calculator a recipe calls ``name``; None: asap3 EMT, or ASE's EMT (a different
    parameterisation, so named) without asap3.

    An unknown name, or a package that is not installed, raises ``RecipeError`` (saying which
    extra to install) at the first ``make()``: the equilibration, before anything is timed.
    """
    if name is None:
        try:
            from asap3 import EMT as AsapEMT
        except ImportError:
            from ase.calculators.emt import EMT

            return Reference(EMT, "ASE EMT (asap3 not installed)", "emt")
        return Reference(AsapEMT, "asap3 EMT", "asap3-emt")
    spec = CalculatorSpec(name=name)
    if name in MLIPS:
        return Reference(lambda: make_calculator(spec), name, name, chunk_steps=1)
    return Reference(lambda: make_calculator(spec), name, name)


def check_element(model: FlashMDModel, element: str, reference: Reference) -> None:
    """Raise ``ValueError`` unless ``element`` is known, in the model's species and the reference's.

    Args:
        model: the checkpoint to benchmark.
        element: chemical symbol of the crystal, e.g. ``"Cu"``.
        reference: the reference calculator that equilibrates the crystal and runs the MD row.
    """
    if element not in atomic_numbers:
        raise ValueError(f"unknown element {element!r}; give a chemical symbol such as 'Cu'")
    species = [chemical_symbols[z] for z in model.species]
    if atomic_numbers[element] not in model.species:
        raise ValueError(
            f"the model does not support {element}: its species are {', '.join(species)}; "
            "pass --element with one of them or a model trained on this element"
        )
    supported = EMT_ELEMENTS.get(reference.key)
    if supported is not None and element not in supported:
        raise ValueError(
            f"the reference calculator {reference.name} has no parameters for {element}; "
            f"it supports {', '.join(sorted(supported))}"
        )


def equilibrated_crystal(
    element: str,
    cells: int,
    temperature_K: float,
    equilibration_fs: float,
    reference: Reference,
    seed: int = 0,
    lattice_a: float | None = None,
) -> Atoms:
    """fcc ``element``, ``cells`` cubic cells per side (4·cells³ atoms), thermalised.

    ``lattice_a`` (Å): the cubic lattice constant (None: ASE's experimental one).
    Maxwell-Boltzmann momenta at ``temperature_K`` (no centre-of-mass motion), then Langevin at
    ``TIMESTEP_FS`` with the reference calculator for ``equilibration_fs``. Seeded by ``seed``.

    Returns:
        The equilibrated atoms (positions Å, momenta set), without a calculator.
    """
    rng = np.random.default_rng(seed)
    spec = CrystalSystem(
        builder="crystal", element=element, supercell=(cells, cells, cells), a=lattice_a
    )
    atoms = build_system(spec, rng, label=f"{element} fcc")
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    atoms.calc = reference.make()
    dynamics = centred_langevin(
        atoms, TIMESTEP_FS * units.fs, temperature_K, FRICTION_PER_FS / units.fs, rng
    )
    dynamics.run(math.ceil(equilibration_fs / TIMESTEP_FS))
    atoms.set_constraint()
    atoms.calc = None
    return atoms


class _Method(Protocol):
    """One row: advances its own trajectory by ``chunk_fs`` per :meth:`advance`."""

    label: str
    step_fs: float
    chunk_fs: float

    def advance(self) -> None: ...

    def counts(self) -> tuple[int, int] | None:
        """(fallbacks, strides) so far, or None for a method without a filter."""
        ...

    def solver_iterations(self) -> float | None:
        """Solver iterations per stride so far (symplectic strides), else None."""
        ...


class _FlashMD:
    """The batched engine at one stride, NVE with the energy filter; direct or symplectic."""

    def __init__(
        self,
        model: FlashMDModel,
        stride_fs: float,
        atoms: Atoms,
        symplectic: bool | str = False,
        corrector_iterations: int | None = None,
    ) -> None:
        generating = generating_kind(symplectic)
        kind = {None: "flashmd", "learned": "flashmd symplectic"}.get(
            generating, f"flashmd {generating}"
        )
        solver = None
        if corrector_iterations is not None:
            kind += f" corrector {corrector_iterations}"
            solver = SolverConfig(max_iterations=corrector_iterations, corrector=True)
        self.label, self.step_fs, self.chunk_fs = f"{kind} (energy filter)", stride_fs, stride_fs
        self.propagator = model_propagator(model, symplectic, solver)
        self.stepper = Stepper(self.propagator, stride_fs, potential=ModelPotential(model))
        self.state = self.stepper.prepare(state_from_atoms(atoms, device=model.device))

    def advance(self) -> None:
        self.state, _ = self.stepper.step(self.state)

    def counts(self) -> tuple[int, int] | None:
        return self.stepper.fallbacks, self.stepper.strides

    def solver_iterations(self) -> float | None:
        if isinstance(self.propagator, SymplecticPropagator):
            return self.propagator.mean_iterations
        return None


class _ModelVerlet:
    """Velocity Verlet at ``TIMESTEP_FS`` on the model's energy model, ``CHUNK_FS`` per call.

    The fallback's integrator (:func:`~flashmd.md.splitting.splitting_steps` with
    :data:`~flashmd.md.splitting.VELOCITY_VERLET`) with the forces and the
    neighbour list carried over between calls, so every step costs exactly one force evaluation.
    """

    def __init__(self, model: FlashMDModel, atoms: Atoms) -> None:
        self.label, self.step_fs, self.chunk_fs = BASELINE, TIMESTEP_FS, CHUNK_FS
        self.potential = ModelPotential(model)
        self.cache = NeighborCache(model.cutoff, skin=1.0)
        self.state = state_from_atoms(atoms, device=model.device)
        self.energy, self.forces = self._evaluate(self.state)

    def _evaluate(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        return self.potential.energy_and_forces(state, self.cache.edges(state))

    def advance(self) -> None:
        self.state, self.energy, self.forces = splitting_steps(
            self.state,
            self.forces,
            self.energy,
            self._evaluate,
            TIMESTEP_FS,
            round(CHUNK_FS / TIMESTEP_FS),
            VELOCITY_VERLET,
        )

    def counts(self) -> tuple[int, int] | None:
        return None

    def solver_iterations(self) -> float | None:
        return None


class _ReferenceVerlet:
    """ASE ``VelocityVerlet`` at ``TIMESTEP_FS`` with the reference calculator (on the CPU)."""

    def __init__(self, reference: Reference, atoms: Atoms, on_cpu: bool) -> None:
        where = "" if on_cpu else ", CPU"
        self.label = f"{reference.name} (reference{where})"
        self.steps = reference.chunk_steps
        self.step_fs, self.chunk_fs = TIMESTEP_FS, self.steps * TIMESTEP_FS
        self.atoms = atoms.copy()
        self.atoms.calc = reference.make()
        self.dynamics = VelocityVerlet(self.atoms, TIMESTEP_FS * units.fs)

    def advance(self) -> None:
        self.dynamics.run(self.steps)

    def counts(self) -> tuple[int, int] | None:
        return None

    def solver_iterations(self) -> float | None:
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(method: _Method, chunks: int, device: torch.device) -> float:
    """Wall seconds of ``chunks`` calls of ``method.advance`` (device synchronised)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(chunks):
        method.advance()
    _sync(device)
    return time.perf_counter() - start


def _calibrate(method: _Method, seconds: float, device: torch.device) -> int:
    """Chunks per timed run so that it lasts about ``seconds``: one warm-up chunk (first
    neighbour list, allocator, autograd graph), then chunks until a quarter of ``seconds``."""
    _run(method, 1, device)
    chunks, elapsed = 0, 0.0
    while chunks == 0 or elapsed < 0.25 * seconds:
        elapsed += _run(method, 1, device)
        chunks += 1
    return max(1, round(seconds * chunks / elapsed))


@dataclass(frozen=True)
class Row:
    """One measured row.

    Attributes:
        label: the method; step_fs: its timestep or stride, fs.
        ps_per_s: median simulated ps per wall-clock second over the repeats.
        timed_ps: simulated ps of one timed run.
        fallback: fraction of timed strides that fell back to velocity Verlet (None: no filter).
        iterations: solver iterations per stride of symplectic strides (None: direct strides).
    """

    label: str
    step_fs: float
    ps_per_s: float
    timed_ps: float
    fallback: float | None
    iterations: float | None = None


def measure(
    methods: Sequence[_Method], seconds: float, repeats: int, device: torch.device
) -> list[Row]:
    """Calibrate every method, then ``repeats`` interleaved timed runs; one :class:`Row` each."""
    chunks = [_calibrate(m, seconds, device) for m in methods]
    times: list[list[float]] = [[] for _ in methods]
    fallbacks, strides = [0] * len(methods), [0] * len(methods)
    for _ in range(repeats):
        for k, (method, count) in enumerate(zip(methods, chunks, strict=True)):
            before = method.counts()
            times[k].append(_run(method, count, device))
            after = method.counts()
            if before is not None and after is not None:
                fallbacks[k] += after[0] - before[0]
                strides[k] += after[1] - before[1]
    rows = []
    for k, method in enumerate(methods):
        timed_ps = chunks[k] * method.chunk_fs / 1000.0
        fraction = fallbacks[k] / strides[k] if method.counts() is not None else None
        rows.append(
            Row(
                method.label,
                method.step_fs,
                timed_ps / float(np.median(times[k])),
                timed_ps,
                fraction,
                method.solver_iterations(),
            )
        )
    return rows


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with padded columns: the first row is the header, the first column is
    left-aligned and the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths))
    return "\n".join([line(rows[0]), rule + "|", *(line(row) for row in rows[1:])])


def _targets(rows: Sequence[Row], baseline: float, goals: dict[float, float]) -> list[str]:
    """``"<stride> fs >= <goal>x: <ratio>x (met|NOT met)"`` of each direct flashmd row."""
    lines = []
    for r in rows:
        direct = r.fallback is not None and r.iterations is None
        goal = goals.get(r.step_fs) if direct else None
        if goal is not None:
            ratio = r.ps_per_s / baseline
            verdict = "met" if ratio >= goal else "NOT met"
            lines.append(f"{r.step_fs:g} fs >= {goal:g}x: {ratio:.1f}x ({verdict})")
    return lines


def _ratio(ratio: float) -> str:
    """``"12.3x"``; two significant digits below 1 (``"0.037x"``: a reference far slower)."""
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2g}x"


def format_block(
    title: str, rows: Sequence[Row], reference_targets: dict[float, float] | None = None
) -> str:
    """``title``, a markdown table of ``rows`` with speed-ups against :data:`BASELINE` and the
    reference (the last row), and lines with the targets (:data:`TARGETS` against the baseline,
    ``reference_targets`` against the reference) for the flashmd strides measured."""
    baseline = next(r.ps_per_s for r in rows if r.label == BASELINE)
    reference = rows[-1].ps_per_s
    table = [
        (
            "method",
            "step fs",
            "sim ps / wall s",
            f"vs {BASELINE}",
            "vs reference",
            "fallbacks",
            "iterations",
            "timed ps",
        )
    ]
    for r in rows:
        fallback = "-" if r.fallback is None else f"{100 * r.fallback:.1f} %"
        table.append(
            (
                r.label,
                f"{r.step_fs:g}",
                f"{r.ps_per_s:.3g}",
                _ratio(r.ps_per_s / baseline),
                f"{r.ps_per_s / reference:.3g}x",
                fallback,
                "-" if r.iterations is None else f"{r.iterations:.1f}",
                f"{r.timed_ps:.3g}",
            )
        )
    footer = []
    against = ((BASELINE, baseline, TARGETS), (rows[-1].label, reference, reference_targets or {}))
    for label, speed, goals in against:
        lines = _targets(rows, speed, goals)
        if lines:
            footer += ["", f"targets vs {label}: " + "; ".join(lines)]
    return "\n".join([title, "", markdown_table(table), *footer])


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def bench_speed(
    model: str = "emt-metals",
    element: str = "Cu",
    cells: Sequence[int] = (3, 6),
    strides_fs: Sequence[float] = (16.0, 32.0, 64.0),
    temperature_K: float = 600.0,
    seconds: float = 3.0,
    repeats: int = 3,
    devices: Sequence[str] = (),
    equilibration_fs: float = 1000.0,
    seed: int = 0,
    symplectic: bool | str = False,
    reference: str | None = None,
    lattice_a: float | None = None,
    corrector_iterations: Sequence[int] = (),
    compiled: bool = False,
) -> str:
    """The speed table: simulated ps per wall-clock second of flashmd and of MD, as text.

    Args:
        model: a shipped model name (``flashmd/pretrained``) or a checkpoint path; it needs a
            predictor for ``strides_fs`` and an energy model, and ``element`` in its species.
        element: chemical symbol of the fcc crystal.
        cells: cubic cells per side of each system size (3: 108 atoms, 6: 864 atoms).
        strides_fs: flashmd strides, fs.
        temperature_K: equilibration temperature, K.
        seconds: wall-clock seconds one timed run of each row should last.
        repeats: interleaved timed runs of each row; the median is reported.
        devices: torch devices of the model rows (default: ``cpu``, and ``cuda`` when available).
        equilibration_fs: Langevin time with the reference calculator before timing, fs.
        seed: seed of the initial momenta and the Langevin noise.
        symplectic: add rows of symplectic strides with their solver iterations per stride:
            True or "learned" from the model's generating function (it needs one), "midpoint"
            or "modified" from its energy model (:data:`~flashmd.md.symplectic.GENERATING_KINDS`).
        corrector_iterations: add rows of corrector strides of these numbers of solver
            iterations from the predictor's stride (``SolverConfig(corrector=True)``), of the
            ``symplectic`` kind (default "learned").
        reference: the reference calculator by its recipe name (e.g. ``sevennet-0``); None:
            asap3 EMT. An MLIP costs about 0.5 s per step for 32 atoms on one core: keep
            ``equilibration_fs`` short and the cells small.
        lattice_a: cubic lattice constant of the crystal, Å (None: ASE's experimental one; give
            the reference's own, e.g. SevenNet-0's Au 4.170, for a crystal at rest under it).
        compiled: also time every model row with the model compiled
            (:func:`~flashmd.models.compiled.compile_model`), interleaved with the eager rows in
            the same run, in a second table per size and device (its own velocity-Verlet
            baseline compiled too; the reference row is shared). The first strides, which
            compile, are outside the timed runs.

    Raises:
        ValueError: bad sizes or settings, an element the model or the reference cannot do, or a
            stride the model does not support.
        FileNotFoundError: no such model.
    """
    if not cells or min(cells) < 1 or not strides_fs or min(strides_fs) <= 0:
        raise ValueError(f"need positive cells and strides, got cells={cells} strides={strides_fs}")
    if not seconds > 0 or repeats < 1 or equilibration_fs < 0:
        raise ValueError("need seconds > 0, repeats >= 1 and equilibration_fs >= 0")
    if corrector_iterations and min(corrector_iterations) < 1:
        raise ValueError(f"corrector iterations must be >= 1, got {list(corrector_iterations)}")
    corrected = (symplectic or "learned") if corrector_iterations else False  # their kind
    names = list(devices) or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    calculator = reference_calculator(reference)
    models = {name: load_model(model, device=name) for name in names}
    for loaded in models.values():
        check_element(loaded, element, calculator)
        loaded.check_strides(strides_fs)
        if "learned" in (generating_kind(symplectic), generating_kind(corrected)):
            loaded.check_strides(strides_fs, symplectic=True)
    header = (
        f"speed benchmark: model {model}, fcc {element}, NVE from a {temperature_K:g} K "
        f"Langevin equilibration ({equilibration_fs:g} fs, {calculator.name}), "
        f"torch threads {torch.get_num_threads()}, median of {repeats} interleaved runs of "
        f"about {seconds:g} s each"
    )
    blocks = [header]
    variants = {name: [loaded] for name, loaded in models.items()}
    if compiled:
        for name, loaded in models.items():
            variants[name].append(compile_model(copy.deepcopy(loaded)))
    targets = MLIP_TARGETS if calculator.is_mlip else {}
    for n in cells:
        atoms = equilibrated_crystal(
            element, n, temperature_K, equilibration_fs, calculator, seed, lattice_a
        )
        for versions in variants.values():
            device = versions[0].device
            per_version = [
                _model_methods(v, atoms, strides_fs, symplectic, corrected, corrector_iterations)
                for v in versions
            ]
            methods = [m for group in per_version for m in group]
            methods.append(_ReferenceVerlet(calculator, atoms, device.type == "cpu"))
            rows = measure(methods, seconds, repeats, device)
            title = (
                f"## {len(atoms)} atoms ({element} fcc {n}x{n}x{n}), device {_device_name(device)}"
            )
            start = 0
            for k, group in enumerate(per_version):
                block_rows = [*rows[start : start + len(group)], rows[-1]]
                start += len(group)
                suffix = ", model compiled (torch.compile)" if k else ""
                blocks.append(format_block(title + suffix, block_rows, targets))
    return "\n\n".join(blocks)


def _model_methods(
    model: FlashMDModel,
    atoms: Atoms,
    strides_fs: Sequence[float],
    symplectic: bool | str,
    corrected: bool | str,
    corrector_iterations: Sequence[int],
) -> list[_Method]:
    """The rows of one model: direct strides, symplectic ones, corrector strides, and velocity
    Verlet on its energy model (the baseline, last)."""
    methods: list[_Method] = [_FlashMD(model, s, atoms) for s in strides_fs]
    if symplectic:
        methods += [_FlashMD(model, s, atoms, symplectic) for s in strides_fs]
    methods += [
        _FlashMD(model, s, atoms, corrected, k) for k in corrector_iterations for s in strides_fs
    ]
    return [*methods, _ModelVerlet(model, atoms)]


__all__ = ["Row", "bench_speed", "check_element", "equilibrated_crystal", "reference_calculator"]
