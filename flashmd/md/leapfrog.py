"""Hybrid Monte Carlo's proposal: velocity-Verlet (leapfrog) steps across the stride on ``V``.

``n`` velocity-Verlet steps of ``stride / n`` on a potential are an explicit map that is exactly
symplectic (a composition of shears, each with unit Jacobian) and exactly time-reversible
(flipping the momenta at the end and stepping again retraces the path to the start, up to
floating-point roundoff), for any ``V``. So it is a valid proposal of the Metropolis chain of
:mod:`flashmd.md.metropolis` without a Jacobian and without the reversibility check an implicit
solve needs. With ``n = 1`` the chain is hybrid Monte Carlo with one leapfrog step per proposal
(the Metropolis-adjusted Langevin algorithm in phase space); larger ``n`` proposes longer
trajectories. The stride is not a dynamical prediction: its energy error decides the acceptance
only, and a stride far past velocity Verlet's stability (``h ω > 2`` for the fastest mode) is
simply rejected.

Cost: ``n`` force evaluations per proposal (``2n`` with the two-stage splitting of
:mod:`flashmd.md.splitting`, whose energy error per evaluation is far smaller). The forces at
the start are kept from the previous proposal (the chain starts the next proposal from its end,
if accepted, or from its start), and
the potential energy at the end comes with the last forces, so a chain that samples the same
potential needs no further evaluation.

The steps need not move on ``-∇V``: any kick ``a(q)`` that depends on the positions only keeps
the map a composition of unit-Jacobian shears and an involution with the momentum flip, so the
chain stays exact and ``a`` sets only the acceptance. :class:`KickPotential` moves the atoms on
a model's learned kick (:mod:`flashmd.models.kick`), read with ``V`` in one forward pass and no
backward pass, while the chain accepts on the energy model's exact ``V``.
"""

from __future__ import annotations

import warnings

import torch

from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import Edges, ModelPotential, Potential, model_batch
from flashmd.md.splitting import VELOCITY_VERLET, Splitting, splitting_named, splitting_steps
from flashmd.md.state import MDState
from flashmd.models.kick import KickField, energy_and_kick
from flashmd.models.model import FlashMDModel


class LeapfrogProposal:
    """``steps`` velocity-Verlet steps of ``stride / steps`` on ``potential`` (or steps of
    another ``splitting``); a :class:`~flashmd.md.propagators.Propagator` that is exactly
    volume-preserving and time-reversible (see the module docstring).

    Args:
        potential: the ``V`` whose forces move the atoms (the model's energy model, or any
            :class:`~flashmd.md.propagators.Potential`).
        steps: steps per stride, >= 1.
        skin: neighbour-list skin in Å of the potential's own neighbour list.
        splitting: how each step is split into kicks and drifts, or its name
            (:data:`flashmd.md.splitting.SPLITTINGS`; a two-stage step costs two force
            evaluations).

    Attributes:
        evaluations: force evaluations (one per system batch) so far.
    """

    #: Exactly symplectic and reversible: a Metropolis proposal with no Jacobian.
    volume_preserving = True
    #: Reversible to roundoff, so the Metropolis chain need not solve each proposal back.
    exactly_reversible = True
    #: The stepper builds no neighbour list for it: it keeps its own at the potential's cutoff.
    cutoff: float | None = None

    def __init__(
        self,
        potential: Potential,
        steps: int = 1,
        skin: float = 1.0,
        splitting: Splitting | str = VELOCITY_VERLET,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if isinstance(splitting, str):
            splitting = splitting_named(splitting)
        self.potential = potential
        self.steps = int(steps)
        self.splitting = splitting
        self._cache = None if potential.cutoff is None else NeighborCache(potential.cutoff, skin)
        self._known: list[tuple[MDState, torch.Tensor, torch.Tensor]] = []
        self.evaluations = 0

    def check(self, state: MDState, stride_fs: float) -> None:
        if not stride_fs > 0:
            raise ValueError(f"stride_fs must be positive, got {stride_fs}")
        if isinstance(self.potential, ModelPotential):
            self.potential.model.check_species(state.numbers)
        if not isinstance(self.potential, KickPotential) or not self.potential.kick.config.step_fs:
            return
        tuned, split = self.potential.kick.config.step_fs, self.potential.kick.config.splitting
        step, mine = stride_fs / self.steps, self.splitting.name
        if abs(step - tuned) > 1e-6 * tuned or split != mine:
            warnings.warn(
                f"this kick was tuned for {tuned:g} fs {split} steps and these are {step:g} fs "
                f"{mine} steps: the chain stays exact but accepts less; tune one for them with "
                f"`flashmd train-kick ... --step-fs {step:g} --splitting {mine}`",
                stacklevel=2,
            )

    def energy_and_forces(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) eV and (A, 3) eV/Å of ``state``: remembered if it is the start or the end of
        the latest proposal, else evaluated."""
        for known, energy, forces in self._known:
            if _same_configuration(known, state):
                return energy, forces
        edges = None if self._cache is None else self._cache.edges(state)
        self.evaluations += 1
        return self.potential.energy_and_forces(state, edges)

    def propagate(
        self, state: MDState, edges: Edges | None, stride_fs: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        energy, forces = self.energy_and_forces(state)
        start = (state, energy, forces)
        end, energy, forces = splitting_steps(
            state,
            forces,
            energy,
            self.energy_and_forces,
            stride_fs / self.steps,
            self.steps,
            self.splitting,
        )
        self._known = [start, (end, energy, forces)]
        return end.positions, end.momenta


def _same_configuration(a: MDState, b: MDState) -> bool:
    """True if ``a`` and ``b`` have the same atoms at the same positions in the same cells."""
    return (
        a.positions.shape == b.positions.shape
        and torch.equal(a.positions, b.positions)
        and torch.equal(a.cell, b.cell)
        and torch.equal(a.numbers, b.numbers)
    )


class KickPotential(ModelPotential):
    """The energy model's ``V`` with the model's learned kick ``a(q)`` in place of its forces:
    what :class:`LeapfrogProposal` steps on for a chain that samples the energy model's ``V`` at
    the cost of its energy alone (module docstring). Pass the same object as the chain's
    potential, so that the proposal's end energy, read with its last kick, is the one accepted
    on.

    Args:
        model: a model with an energy model and a kick (``flashmd train-kick``).
    """

    def __init__(self, model: FlashMDModel) -> None:
        super().__init__(model)
        if model.kick is None:
            raise ValueError(
                "this model has no learned kick; add one with `flashmd train-kick MODEL --store "
                "STORE -o OUT.pt` (frames of its training store), or step on the energy model's "
                "forces"
            )
        self.kick: KickField = model.kick

    def energy_and_forces(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) eV, the energy model's ``V``, and (A, 3) eV/Å, the learned kick (not ``-∇V``)."""
        assert edges is not None and self.model.energy_model is not None
        with torch.no_grad():
            energy, kick = energy_and_kick(
                self.model.energy_model, self.kick, model_batch(self.model, state, edges)
            )
        return energy.to(torch.float64), kick.to(torch.float64)


def leapfrog_potential(model: FlashMDModel, learned_kick: bool = False) -> ModelPotential:
    """What leapfrog proposals step on and the chain samples: the energy model, with its forces
    or (``learned_kick``) the model's learned kick."""
    return KickPotential(model) if learned_kick else ModelPotential(model)
