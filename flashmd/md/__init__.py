"""flashmd.md: the rollout engine.

One concept per module: :mod:`.state` (the batched state), :mod:`.rigid` (centre-of-mass and
rotational momenta), :mod:`.neighbors` (neighbour lists with a skin), :mod:`.propagators` (the
interfaces the stepper calls and adapters for models and ASE calculators), :mod:`.harmonic` (an
exact analytic propagator), :mod:`.filters` (momentum constraints and energy rescaling),
:mod:`.fallback` (velocity Verlet when the filter cannot repair a stride), :mod:`.symplectic`
(symplectic strides: the midpoint solve of a learned generating function), :mod:`.thermostats`,
:mod:`.stepper` (one stride), :mod:`.metropolis` (exact canonical sampling with strides as
proposals), :mod:`.leapfrog` (hybrid Monte Carlo's velocity-Verlet proposals), :mod:`.rollout`
and :mod:`.output` (many strides, into a store), :mod:`.batch` (``flashmd md``), :mod:`.bench`
(``flashmd bench rollout``) and :mod:`.speed` (``flashmd bench speed``).
"""

from __future__ import annotations

from flashmd.md.filters import FilterConfig
from flashmd.md.harmonic import HarmonicCrystal
from flashmd.md.leapfrog import LeapfrogProposal
from flashmd.md.metropolis import MetropolisConfig, MetropolisStepper
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import (
    CalculatorPotential,
    ModelPotential,
    ModelPropagator,
    Potential,
    Propagator,
)
from flashmd.md.rollout import RolloutReport, rollout
from flashmd.md.state import MDState, state_from_atoms, state_to_atoms
from flashmd.md.stepper import Stepper, StrideStats
from flashmd.md.symplectic import SolverConfig, SymplecticPropagator, model_propagator
from flashmd.md.thermostats import Bussi, Langevin

__all__ = [
    "Bussi",
    "CalculatorPotential",
    "FilterConfig",
    "HarmonicCrystal",
    "Langevin",
    "LeapfrogProposal",
    "MDState",
    "MetropolisConfig",
    "MetropolisStepper",
    "ModelPotential",
    "ModelPropagator",
    "NeighborCache",
    "Potential",
    "Propagator",
    "RolloutReport",
    "SolverConfig",
    "Stepper",
    "StrideStats",
    "SymplecticPropagator",
    "model_propagator",
    "rollout",
    "state_from_atoms",
    "state_to_atoms",
]
