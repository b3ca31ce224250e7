"""Exact canonical sampling on held-out states: the Metropolis chain (``flashmd.md.metropolis``)
against Langevin velocity Verlet at 2 fs on the same energy model, in one run on one machine.

From the first frame of a trajectory (``STORE:ID_SUBSTRING``) it runs ASE's Langevin on the
model's energy model (``EnergyCalculator``, 2 fs) for ``--langevin-ps``, and a Metropolis chain of
``--strides`` symplectic strides for each of ``--strides-fs`` (none: ``--strides-fs`` alone), and
one of hybrid Monte Carlo for each ``--leapfrog NxFS`` (N velocity-Verlet steps of FS fs on the
energy model per proposal, :mod:`flashmd.md.leapfrog`), then prints per method: the
acceptance, the mean potential energy with its standard error (from the integrated
autocorrelation time), its difference from Langevin's in units of the two errors combined, the
RDF's mean |Δg(r)| against Langevin's (and Langevin's first half against its second half: the
run's noise floor), and the effective samples per wall-clock second of ``V`` and of a structural
order parameter (the mean nearest-neighbour distance), as ratios to Langevin's with their
standard errors (from both series' autocorrelation times, Sokal's estimate; ``--save`` keeps
every series, its wall seconds and acceptance)::

    python scripts/metropolis_check.py emt-metals runs/heldout/reference.zarr:Cu-750 \
        --strides-fs 16 32 64 --strides 200 --langevin-ps 10
    python scripts/metropolis_check.py emt-metals runs/heldout/reference.zarr:Cu-750 \
        --strides-fs --leapfrog 1x8 2x6 4x6 6x6 --strides 400 --langevin-ps 5
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from dataclasses import dataclass

import ase
import numpy as np
import torch
from ase import units
from ase.neighborlist import neighbor_list

from flashmd.analysis.local_structure import structure_fractions
from flashmd.analysis.rdf import rdf
from flashmd.analysis.sampling import autocorrelation_time_and_error
from flashmd.ase.calculator import EnergyCalculator
from flashmd.data.calculators import make_calculator
from flashmd.data.recipes import CalculatorSpec
from flashmd.data.reference import centred_langevin
from flashmd.data.store import open_trajectory
from flashmd.md.leapfrog import LeapfrogProposal, leapfrog_potential
from flashmd.md.metropolis import MetropolisConfig, MetropolisStepper
from flashmd.md.propagators import CalculatorPotential
from flashmd.md.splitting import SPLITTINGS
from flashmd.md.state import state_from_atoms
from flashmd.md.symplectic import SymplecticPropagator
from flashmd.models.compiled import compile_model
from flashmd.models.io import load_model


@dataclass
class Series:
    """What a method sampled: ``V`` (n,) eV, positions (n, atoms, 3) Å, wall seconds."""

    name: str
    energy: np.ndarray
    positions: np.ndarray
    seconds: float
    acceptance: float = float("nan")


def langevin(
    model,
    atoms: ase.Atoms,
    temperature_K: float,
    picoseconds: float,
    calculator=None,
    friction_per_fs: float = 0.01,
) -> Series:
    """Langevin VV at 2 fs with ``friction_per_fs`` (1/fs) on the energy model (or
    ``calculator``), ``V`` and positions every 16 fs."""
    atoms = atoms.copy()
    atoms.calc = EnergyCalculator(model) if calculator is None else calculator
    rng = np.random.default_rng(0)
    dynamics = centred_langevin(atoms, 2 * units.fs, temperature_K, friction_per_fs / units.fs, rng)
    energies, positions = [], []
    started = time.perf_counter()
    for _ in range(int(picoseconds * 1000 / 16)):
        dynamics.run(8)
        energies.append(atoms.get_potential_energy())
        positions.append(atoms.positions.copy())
    seconds = time.perf_counter() - started
    name = "Langevin VV 2 fs" + (
        f", friction {friction_per_fs:g}/fs" if friction_per_fs != 0.01 else ""
    )
    return Series(name, np.array(energies), np.array(positions), seconds)


def chain(
    model,
    atoms: ase.Atoms,
    temperature_K: float,
    stride_fs: float,
    strides: int,
    *,
    leapfrog_steps: int = 0,
    calculator=None,
    persistence: float = 0.0,
    learned_kick: bool = False,
    uniform_drift: float = 0.0,
    extra_chances: int = 0,
    unadjusted: bool = False,
    splitting: str = "verlet",
) -> Series:
    """``strides`` Metropolis-adjusted strides, the model's symplectic ones or, with
    ``leapfrog_steps``, that many velocity-Verlet steps per stride on the energy model (hybrid
    Monte Carlo); the chain samples the energy model's ``V``, or ``calculator``'s (one
    evaluation per stride), with momenta kept by ``persistence`` between strides (generalised
    hybrid Monte Carlo); with ``learned_kick``, the leapfrog steps move on the model's learned
    kick instead of the energy model's forces, and the accept/reject uniform carried between
    strides with ``uniform_drift`` (Neal 2020), a proposal that would be rejected continued by
    up to ``extra_chances`` strides; ``unadjusted`` accepts every proposal (not exact: a
    diagnostic of what the rejections cost); ``splitting`` splits each leapfrog step
    (:data:`flashmd.md.splitting.SPLITTINGS`); ``V`` and positions after each."""
    potential = leapfrog_potential(model, learned_kick)
    sampled = potential if calculator is None else CalculatorPotential(calculator)
    if leapfrog_steps:
        propagator = LeapfrogProposal(potential, leapfrog_steps, splitting=splitting)
        name = f"HMC {leapfrog_steps} x {stride_fs / leapfrog_steps:g} fs"
        name += f" {splitting}" if splitting != "verlet" else ""
        name += ", learned kick" if learned_kick else ""
    else:
        propagator, name = SymplecticPropagator(model), f"Metropolis {stride_fs:g} fs"
    if persistence:
        name += f", kept {persistence:g}"
    if uniform_drift:
        name += f", uniform drift {uniform_drift:g}"
    if extra_chances:
        name += f", {extra_chances} extra chance" + "s" * (extra_chances > 1)
    config = MetropolisConfig(
        temperature_K, persistence, uniform_drift=uniform_drift, extra_chances=extra_chances
    )
    stepper = MetropolisStepper(propagator, stride_fs, sampled, config)
    if unadjusted:  # every log acceptance ratio -ΔH/kT becomes 0
        stepper.kT, name = math.inf, name + ", unadjusted"
    state = stepper.prepare(state_from_atoms(atoms, device=model.device, seed=0))
    energies, positions = [], []
    started = time.perf_counter()
    for _ in range(strides):
        state, stats = stepper.step(state)
        energies.append(float(stats.potential_energy[0]))
        positions.append(state.positions.cpu().numpy().copy())
    seconds = time.perf_counter() - started
    return Series(name, np.array(energies), np.array(positions), seconds, stepper.acceptance_rate)


def nearest_neighbour_distance(atoms: ase.Atoms, positions: np.ndarray) -> np.ndarray:
    """(n,) mean distance of each atom to its nearest neighbour, per frame."""
    out = []
    for frame in positions:
        probe = atoms.copy()
        probe.positions = frame
        first, distance = neighbor_list("id", probe, 4.0)
        nearest = np.full(len(probe), np.inf)
        np.minimum.at(nearest, first, distance)
        out.append(nearest.mean())
    return np.array(out)


def phase_trace(series: Series, atoms: ase.Atoms, blocks: int = 8) -> str:
    """One table row: ``series``' mean V (meV/atom) and fraction of atoms in fcc, hcp or bcc
    environments in each of ``blocks`` consecutive blocks of its frames."""
    crystalline = structure_fractions(
        series.positions, np.array(atoms.cell), atoms.numbers, atoms.pbc
    ).crystalline
    per_atom = 1000 * series.energy / len(atoms)
    edges = np.linspace(0, len(per_atom), blocks + 1).astype(int)
    cells = [
        f"{per_atom[a:b].mean():.1f} ({crystalline[a:b].mean():.2f})"
        for a, b in itertools.pairwise(edges)
    ]
    return " | ".join([series.name, *cells])


def leapfrog_spec(text: str) -> tuple[int, float]:
    """``"4x6"`` -> (4 steps, 6.0 fs)."""
    steps, _, fs = text.partition("x")
    try:
        return int(steps), float(fs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not STEPSxFS, e.g. 4x6") from None


def sweep(
    parser: argparse.ArgumentParser, flag: str, default: float, metavar: str | None, text: str
) -> None:
    """A setting swept over one or more values (``nargs="+"``) of ``default``'s type."""
    parser.add_argument(
        flag, type=type(default), nargs="+", default=[default], metavar=metavar, help=text
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("start", help="STORE:ID_SUBSTRING, a trajectory whose first frame starts")
    parser.add_argument("--strides-fs", type=float, nargs="*", default=[16.0, 32.0, 64.0])
    parser.add_argument("--strides", type=int, default=200, help="strides per chain")
    parser.add_argument(
        "--leapfrog",
        type=leapfrog_spec,
        nargs="*",
        default=[],
        metavar="NxFS",
        help="also hybrid Monte Carlo chains proposing N velocity-Verlet steps of FS fs",
    )
    parser.add_argument(
        "--sample",
        metavar="CALCULATOR",
        help="sample this reference calculator's V instead of the energy model's (a recipe's "
        "calculator name, e.g. sevennet-0): Langevin runs on it, the chains call it once per "
        "stride and move on the model",
    )
    sweep(
        parser,
        "--persistence",
        0.0,
        None,
        "momentum persistence between strides (0: fresh momenta, hybrid Monte Carlo; "
        "near 1: generalised hybrid Monte Carlo, inertia kept); every chain runs at each",
    )
    parser.add_argument("--langevin-ps", type=float, default=10.0)
    sweep(
        parser,
        "--langevin-friction",
        0.01,
        "PER_FS",
        "Langevin frictions, 1/fs, one run each; the first is the baseline of the ratios "
        "(whether τ of V depends on the friction: a chain's reversals might act as one)",
    )
    parser.add_argument("--burn-in", type=float, default=0.1, help="fraction dropped from each")
    parser.add_argument(
        "--save", metavar="NPZ", help="write every method's V series (and positions) here"
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="also print each method's V and the fraction of atoms in crystalline (fcc, hcp, "
        "bcc) environments over 8 blocks of the run, burn-in included (a melt that froze shows "
        "as a step; flashmd.analysis.structure_fractions, needs asap3)",
    )
    parser.add_argument(
        "--learned-kick",
        action="store_true",
        help="also run each --leapfrog chain with its steps on the model's learned kick "
        "(flashmd train-kick) instead of the energy model's forces",
    )
    parser.add_argument(
        "--kick-only",
        action="store_true",
        help="with --learned-kick: run the --leapfrog chains on the learned kick alone",
    )
    sweep(
        parser,
        "--uniform-drift",
        0.0,
        "DELTA",
        "carry the accept/reject uniform between strides, moved by DELTA (Neal 2020; 0: "
        "a fresh one every stride); every chain runs at each",
    )
    sweep(
        parser,
        "--extra-chances",
        0,
        "K",
        "continue a proposal that would be rejected by up to K strides before reversing "
        "the momenta (0: the plain chain); every chain runs at each",
    )
    parser.add_argument(
        "--splitting",
        nargs="+",
        default=["verlet"],
        choices=sorted(SPLITTINGS),
        help="how the --leapfrog chains split each step (two-stage: two force evaluations per "
        "step, Blanes, Casas and Sanz-Serna 2014); every such chain runs with each",
    )
    parser.add_argument(
        "--unadjusted",
        action="store_true",
        help="also run every chain without its accept/reject test (every proposal accepted, "
        "no reversals; not exact): whether the rejections are what slows a chain",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the model (flashmd.models.compile_model) for Langevin and every chain "
        "alike, and run each once briefly before the timed runs, so compiling is not timed",
    )
    args = parser.parse_args()
    if args.kick_only and not args.learned_kick:
        parser.error("--kick-only needs --learned-kick")
    torch.set_num_threads(1)
    model = load_model(args.model)
    reader = open_trajectory(args.start)
    name, atoms = reader.group.basename, reader.to_atoms(0)
    temperature = float(reader.attrs["temperature_K"])
    calculator = None if args.sample is None else make_calculator(CalculatorSpec(name=args.sample))
    proposals = [(stride_fs, 0, False, "verlet") for stride_fs in args.strides_fs]
    for n, fs in args.leapfrog:
        kicks = [True] if args.kick_only else [False, True] if args.learned_kick else [False]
        proposals += [(n * fs, n, kick, split) for kick in kicks for split in args.splitting]
    chains = []
    for kept in args.persistence:
        adjusted = [False, True] if args.unadjusted else [False]
        settings = itertools.product(args.uniform_drift, args.extra_chances, adjusted)
        for drift, extra, unadjusted in settings:
            chains += [
                dict(
                    stride_fs=stride_fs,
                    leapfrog_steps=steps,
                    calculator=calculator,
                    persistence=kept,
                    learned_kick=kick,
                    uniform_drift=drift,
                    extra_chances=extra,
                    unadjusted=unadjusted,
                    splitting=split,
                )
                for stride_fs, steps, kick, split in proposals
            ]
    if args.compile:  # compile both sides, outside every timed run
        compile_model(model)
        langevin(model, atoms, temperature, 0.032, calculator)
        for settings in chains:
            chain(model, atoms, temperature, strides=3, **settings)
    runs = [
        langevin(model, atoms, temperature, args.langevin_ps, calculator, friction)
        for friction in args.langevin_friction
    ]
    runs += [chain(model, atoms, temperature, strides=args.strides, **s) for s in chains]
    if args.save:
        arrays = {series.name: series.energy for series in runs}
        arrays.update({f"{series.name} positions": series.positions for series in runs})
        arrays.update({f"{series.name} seconds": np.array(series.seconds) for series in runs})
        arrays.update({f"{series.name} acceptance": np.array(series.acceptance) for series in runs})
        np.savez(args.save, **arrays)
    rmax = 0.5 * float(np.min(np.linalg.norm(atoms.cell, axis=1)))
    n = len(atoms)

    def trimmed(series: Series) -> tuple[np.ndarray, np.ndarray]:
        skip = int(args.burn_in * len(series.energy))
        return series.energy[skip:], series.positions[skip:]

    def g(positions: np.ndarray) -> np.ndarray:
        return rdf(positions, np.array(atoms.cell), atoms.numbers, rmax, 100).total

    _, base_positions = trimmed(runs[0])
    base_g = g(base_positions)
    half = len(base_positions) // 2
    floor = np.abs(g(base_positions[:half]) - g(base_positions[half:])).mean()
    sampled = args.sample or "the energy model"
    print(
        f"{name}, {n} atoms, {temperature:g} K, samples {sampled}; "
        f"Langevin RDF halves |Δg| = {floor:.4f}"
    )
    header = (
        "method | acceptance | <V> meV/atom | Δ<V> / σ | RDF |Δg| | τ_V | τ_nn | wall s | "
        "ESS/s V (ratio) | ESS/s nn (ratio)"
    )
    print(header)
    print("|".join("---" for _ in header.split("|")))
    base = None  # Langevin's mean V, its error and its two (rate, relative error) pairs
    for series in runs:
        energy, positions = trimmed(series)
        order = nearest_neighbour_distance(atoms, positions)
        tau_v, tau_v_error = autocorrelation_time_and_error(energy)
        tau_nn, tau_nn_error = autocorrelation_time_and_error(order)
        mean = 1000 * energy.mean() / n
        error = 1000 * energy.std() * np.sqrt(tau_v / len(energy)) / n
        seconds = series.seconds * (1 - args.burn_in)
        rates = (
            (len(energy) / tau_v / seconds, tau_v_error / tau_v),
            (len(order) / tau_nn / seconds, tau_nn_error / tau_nn),
        )
        if base is None:
            base = (mean, error, rates)
        z = (mean - base[0]) / np.hypot(error, base[1]) if series is not runs[0] else 0
        mad = np.abs(g(positions) - base_g).mean()
        # each ratio's error from both series' τ errors (Sokal); none for Langevin's own row
        cells = []
        for (rate, relative), (base_rate, base_relative) in zip(rates, base[2], strict=True):
            ratio = rate / base_rate
            spread = ratio * np.hypot(relative, base_relative) if series is not runs[0] else 0.0
            cells.append(f"{rate:.3g} ({ratio:.2f} ± {spread:.2f})")
        print(
            f"{series.name} | {series.acceptance:.3f} | {mean:.2f} ± {error:.2f} | {z:+.2f} | "
            f"{mad:.4f} | {tau_v:.1f} ± {tau_v_error:.1f} | {tau_nn:.1f} ± {tau_nn_error:.1f} | "
            f"{seconds:.0f} | {cells[0]} | {cells[1]}"
        )
    if args.phases:
        print("\nmethod | V meV/atom (crystalline fraction) over 8 blocks of the run")
        for series in runs:
            print(phase_trace(series, atoms))


if __name__ == "__main__":
    main()
