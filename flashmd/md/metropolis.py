"""Exact canonical sampling with long strides: the learned stride as a Metropolis proposal.

A learned stride is never exact, so a thermostatted rollout samples configurations from a
distribution close to, but not equal to, ``exp(-V/kT)``. This module turns the stride into the
proposal of a Metropolis-Hastings chain (generalised hybrid Monte Carlo, Horowitz 1991) whose
stationary distribution is the canonical one of a chosen ``V`` whatever the stride's error.

The chain
---------
The target on phase space is ``π(q, p) ∝ exp(-H(q, p)/kT)`` with ``H = K(p) + V(q)``,
``K = Σ p²/2m`` and ``V`` the energy model (or any :class:`~flashmd.md.propagators.Potential`,
e.g. the reference calculator, when exactness with respect to it is asked). One stride:

1. **Momentum refresh.** ``p <- c p + √(1 - c²) √(m kT) ξ`` on the internal momenta (the
   centre-of-mass momentum, and the angular momentum of open systems, are kept, as by
   :class:`~flashmd.md.thermostats.Langevin`): an exact Ornstein-Uhlenbeck step that leaves
   ``π`` invariant. ``c = persistence``; 0 draws fresh momenta every stride (hybrid Monte Carlo).
2. **Proposal.** ``y = R Φ(x)``, with ``Φ`` the stride and ``R(q, p) = (q, -p)``.
3. **Accept** ``y`` with probability ``min(1, exp(-(H(y) - H(x))/kT))``.
4. **Flip.** Apply ``R`` to the result: an accepted stride continues forward (``R y = Φ(x)``),
   a rejected one leaves the state with reversed momenta (``R x``).

**A drifting uniform (Neal 2020).** Step 3 accepts when ``u < exp(-ΔH/kT)`` for a uniform ``u``.
With ``uniform_drift = δ > 0`` the chain keeps ``v ∈ [-1, 1]`` as part of its state, ``u = |v|``
(Neal, "Non-reversibly updating a uniform [0,1] value for Metropolis accept/reject decisions",
arXiv:2001.11950): before each decision ``v <- v + δ``, wrapped into ``[-1, 1]``; after an
acceptance ``v <- v exp(ΔH/kT)``. Exact: on the extended target ``π(q, p) × uniform(v)`` the
wrap is a rotation of a circle (it keeps ``uniform(v)`` for any ``(q, p)``); the accepted move
``(x, v) -> (F x, v π(x)/π(F x))`` maps the set ``{|v| < π(F x)/π(x)}`` onto itself (``F`` is
an involution) with Jacobian ``π(x)/π(F x)``, which the density ``π(F x)`` cancels; steps 1
and 4 leave ``v`` alone. What it buys: ``u`` now changes slowly, so acceptances and rejections
come in runs instead of independently. With persistent momenta (step 1's ``c`` near 1) a
rejection reverses the motion, and scattered reversals turn the chain's excursions into a
random walk; clustered ones leave long straight runs. The acceptance rate is unchanged.

**Extra chances (Sohl-Dickstein, Mudigonda and DeWeese 2014; Campos and Sanz-Serna 2015).**
With persistent momenta every rejection reverses the motion and sends the atoms back along
their path (on the random Cu3Au alloy at 12 fs and 79 % acceptance these reversals make ``V``
decorrelate 3.3 times more slowly per stride than without the test: the exact-sampling guide).
With ``extra_chances = K > 0`` a stride that would be rejected is continued
instead: from ``x_0`` the orbit ``x_j = Φ^j(x_0)``, ``j = 1..K+1``, is computed one stride at a
time, and the chain moves to ``R x_j`` with probability ``P_j(x_0)``, defined recursively by

    P_j(x_0) = min(1 - Σ_{i<j} P_i(x_0), (π_j/π_0) (1 - Σ_{i<j} P_i(R x_j)))

(``π_j = π(x_j)``), or stays at ``x_0`` (then flipped by step 4) with what is left. One
uniform ``u`` picks the first ``j`` with ``u < Σ_{i<=j} P_i``, so the orbit is extended only
while needed. Exact: ``F_j = R Φ^j`` is an involution for every ``j`` (time reversibility), the
orbit of ``z = R x_j`` is ``R x_j, R x_{j-1}, ..., R x_0`` with the same ``π`` values in reverse
order, so ``P_i(z)`` is computed from the energies already at hand, and ``π_0 P_j(x_0) =
min(π_0 (1 - S_j(x_0)), π_j (1 - S_j(z))) = π_j P_j(z)``, detailed balance for the move
``x_0 -> z`` and its reverse (``S_j`` the sums above; ``P_1 = min(1, π_1/π_0)``, the plain
rule). A stride that fails to converge or to solve back ends the orbit (its ``π`` and all later
ones count as 0). An accepted ``j``-th chance moves the chain ``j`` strides on; only a proposal
whose every chance failed reverses the momenta. It costs one more stride per extra chance
taken; the acceptance rate counts a move at any ``j``.

**Why the chain is exact.** Step 1 and step 4 preserve ``π`` (``K`` is even in ``p``). Steps 2-3
are a Metropolis-Hastings step with the deterministic proposal ``F = R Φ``. For such a proposal
the acceptance ``min(1, π(F x) |det ∂F/∂x| / π(x))`` satisfies detailed balance when ``F`` is an
involution, ``F(F(x)) = x`` (Green's reversible-jump argument: the move ``x -> F x`` is paired with
``F x -> x``, and the ratio of the two acceptance probabilities is ``π(F x) |det ∂F| / π(x)``).
The symplectic stride of :mod:`flashmd.md.symplectic` is time-reversible, ``R Φ R Φ = id``, so
``F`` is an involution, and symplectic, so ``|det ∂F| = |det R| |det ∂Φ| = 1``: the ratio is
``exp(-ΔH/kT)`` with no Jacobian. The stride's error moves only the acceptance rate, never the
distribution sampled. A direct predictor is neither volume-preserving nor reversible, and its
Jacobian (a 3N x 3N determinant per stride) is out of reach, so this sampler refuses it.

**The solver.** ``Φ`` is defined implicitly (a fixed point found to a tolerance from the direct
predictor's guess), so ``R Φ R Φ = id`` holds only as far as the solve found the same solution
both ways. With ``check_reversibility`` (the default) every proposal is solved back from ``y``;
a proposal whose return misses ``x`` by more than ``reversibility_tolerance_A`` (positions in Å,
momenta as ``h p / m`` in Å) is rejected, which restricts ``F`` to the set where it is an
involution, as in the reversibility check of constrained hybrid Monte Carlo (Zappa,
Holmes-Cerfon and Goodman 2018). It doubles the cost of a stride; without it the chain is exact
up to the solver's tolerance. A stride whose solve did not converge (NaN) is rejected. An
explicit proposal that is reversible to roundoff (``exactly_reversible``, such as the
velocity-Verlet steps of :mod:`flashmd.md.leapfrog`, which make the chain hybrid Monte Carlo)
is never solved back.

What it is for: equilibrium averages (structure, energies, free-energy estimates) that must not
carry the stride's bias. Not for dynamics: rejections and momentum refreshes break the time
correlations, so diffusion and autocorrelation functions of the chain are not physical.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from flashmd.md.filters import FilterConfig
from flashmd.md.propagators import Potential, Propagator
from flashmd.md.state import MDState
from flashmd.md.stepper import Stepper, StrideStats, systems_all
from flashmd.md.thermostats import Langevin
from flashmd.units import FS, KB

#: Most extra chances a proposal may take (their probabilities cost O(K²) per stride).
MAX_EXTRA_CHANCES = 8


@dataclass(frozen=True)
class MetropolisConfig:
    """Settings of the Metropolis-adjusted chain.

    Attributes:
        temperature_K: the canonical temperature, K.
        persistence: ``c`` of the momentum refresh (0: fresh Maxwell-Boltzmann momenta every
            stride; closer to 1: longer excursions between refreshes, and a rejection reverses
            the motion).
        check_reversibility: solve every proposal back and reject it unless it returns to the
            start (see the module docstring); doubles the cost.
        reversibility_tolerance_A: largest miss of that return, Å (momenta as ``h p / m``).
        min_acceptance: warn (once) when the acceptance rate falls below this, judged after
            ``warn_after`` system-strides.
        warn_after: system-strides before the rate is judged.
        uniform_drift: ``δ`` by which the accept/reject uniform moves between strides (see
            "A drifting uniform" in the module docstring); 0 draws a fresh one each stride.
        extra_chances: strides by which a proposal that would be rejected is continued before
            the momenta are reversed (see "Extra chances" in the module docstring); 0 is the
            plain chain.
    """

    temperature_K: float
    persistence: float = 0.0
    check_reversibility: bool = True
    reversibility_tolerance_A: float = 1e-4
    min_acceptance: float = 0.05
    warn_after: int = 100
    uniform_drift: float = 0.0
    extra_chances: int = 0

    def __post_init__(self) -> None:
        if not self.temperature_K > 0:
            raise ValueError(
                "an exact canonical sampler needs a temperature above 0 K, got "
                f"{self.temperature_K}; for constant energy use the NVE ensemble"
            )
        if not 0 <= self.persistence < 1:
            raise ValueError(f"persistence must lie in [0, 1), got {self.persistence}")
        if not self.reversibility_tolerance_A > 0:
            raise ValueError("reversibility_tolerance_A must be positive")
        if not 0 <= self.uniform_drift < 1:
            raise ValueError(
                "uniform_drift must lie in [0, 1) (0: a fresh uniform every stride), got "
                f"{self.uniform_drift}"
            )
        if not 0 <= self.extra_chances <= MAX_EXTRA_CHANCES:
            raise ValueError(
                f"extra_chances must lie in [0, {MAX_EXTRA_CHANCES}] (each costs a stride), "
                f"got {self.extra_chances}"
            )
        if self.extra_chances and self.uniform_drift:
            raise ValueError(
                "extra_chances and uniform_drift are two answers to the same reversals and do "
                "not combine (the drifting uniform's rescaling assumes one chance): pick one"
            )


def check_proposal(propagator: Propagator) -> None:
    """Raise ``ValueError`` unless ``propagator`` is a volume-preserving, time-reversible map
    (it says so with a true ``volume_preserving`` attribute)."""
    if not getattr(propagator, "volume_preserving", False):
        raise ValueError(
            f"{type(propagator).__name__} is not a volume-preserving, time-reversible map, so "
            "its strides cannot be Metropolis proposals without a Jacobian; use the symplectic "
            "strides of a model with a generating function (symplectic=True, --symplectic; "
            "train one as flashmd/pretrained/emt-metals.md's 'Symplectic strides' section "
            "does), solved to convergence (not SolverConfig(corrector=True))"
        )


def chance_probability(log_weights: list[torch.Tensor]) -> torch.Tensor:
    """(S,) ``P_j(x_0)`` of the module docstring's extra chances for ``j = len(log_weights) -
    1``: the probability of moving from ``x_0`` to the orbit's ``j``-th point.

    Args:
        log_weights: ``j + 1`` tensors (S,), ``log π(x_i) - log π(x_0)`` along the orbit
            (``-inf`` where the orbit ended), the first all zeros.
    """
    memo: dict[tuple[int, ...], torch.Tensor] = {}

    def probability(path: tuple[int, ...]) -> torch.Tensor:
        # the probability of moving from orbit point path[0] to path[-1] along path
        if path not in memo:
            forward = 1.0 - sum(probability(path[: i + 1]) for i in range(1, len(path) - 1))
            back = path[::-1]
            backward = 1.0 - sum(probability(back[: i + 1]) for i in range(1, len(back) - 1))
            gain = log_weights[path[-1]] - log_weights[path[0]]
            ratio = torch.nan_to_num(torch.exp(gain.clamp(max=60.0)), nan=0.0)
            chance = torch.minimum(torch.as_tensor(forward), ratio * torch.as_tensor(backward))
            memo[path] = chance.clamp(min=0.0)
        return memo[path]

    return probability(tuple(range(len(log_weights))))


class MetropolisStepper(Stepper):
    """One Metropolis-adjusted stride per :meth:`step` for every system of a batched state (see
    the module docstring); usable wherever a :class:`~flashmd.md.stepper.Stepper` is.

    Args:
        propagator: a volume-preserving, time-reversible stride (symplectic strides, leapfrog
            steps of :class:`~flashmd.md.leapfrog.LeapfrogProposal`, or the exact flow of
            :class:`~flashmd.md.harmonic.HarmonicCrystal`).
        stride_fs: the stride, fs.
        potential: the ``V`` whose canonical distribution is sampled.
        config: temperature and the chain's settings.
        skin: neighbour-list skin, Å.

    Attributes:
        proposals: system-strides proposed; accepted: of those, accepted; irreversible:
            rejected because the proposal did not solve back to its start; unconverged:
            rejected because the solve did not converge; probability_sum: the acceptance
            probabilities ``min(1, exp(-ΔH/kT))`` summed over proposals (their mean estimates
            the acceptance rate with less noise than the accepted count); last_delta_H: (S,)
            eV, ``H(y) - H(x)`` of the latest proposal's first stride (NaN where it failed);
            extra_strides: system-strides spent on extra chances.
    """

    def __init__(
        self,
        propagator: Propagator,
        stride_fs: float,
        potential: Potential,
        config: MetropolisConfig,
        skin: float = 1.0,
    ) -> None:
        check_proposal(propagator)
        super().__init__(
            propagator,
            stride_fs,
            potential=potential,
            filters=FilterConfig(energy=False),
            skin=skin,
        )
        self.config = config
        exact = getattr(propagator, "exactly_reversible", False)
        self._check_reversibility = config.check_reversibility and not exact
        self.kT = KB * config.temperature_K
        friction = math.inf if config.persistence == 0 else -math.log(config.persistence)
        self._refresh = Langevin(config.temperature_K, friction)  # over a time of 1
        self.proposals = 0
        self.accepted = 0
        self.irreversible = 0
        self.unconverged = 0
        self.extra_strides = 0
        self.probability_sum = 0.0
        self.last_delta_H = torch.zeros(0, dtype=torch.float64)
        self._v: torch.Tensor | None = None  # (S,) the drifting uniform's state, in [-1, 1]
        self._warned = False

    @property
    def mean_acceptance_probability(self) -> float:
        """Mean of ``min(1, exp(-ΔH/kT))`` over the proposals so far (NaN before the first)."""
        return self.probability_sum / self.proposals if self.proposals else float("nan")

    @property
    def acceptance_rate(self) -> float:
        """Accepted over proposed system-strides so far (NaN before the first)."""
        return self.accepted / self.proposals if self.proposals else float("nan")

    def prepare(self, state: MDState) -> MDState:
        """Check ``state`` and set each system's target energy to its ``H = K + V``."""
        unknown = torch.full_like(state.target_energy, torch.nan)
        return super().prepare(state.replace(target_energy=unknown))

    def step(self, state: MDState) -> tuple[MDState, StrideStats]:
        """Refresh the momenta, propose a stride (continued by the extra chances while it
        would be rejected), accept or reject it per system."""
        potential = state.target_energy - state.kinetic_energy()
        momenta = self._refresh.apply(state, 1.0)
        start = state.replace(
            momenta=momenta, target_energy=potential + state.kinetic_energy(momenta)
        )
        uniform = self._uniform(state)
        log_weights = [torch.zeros_like(start.target_energy)]  # log π(x_j)/π(x_0), (S,)
        alive = torch.ones_like(start.target_energy, dtype=torch.bool)
        accepted = torch.zeros_like(alive)
        cumulative = torch.zeros_like(start.target_energy)
        new = start.replace(momenta=-start.momenta)  # a rejection: R x_0
        potential_new, iterations, current = potential, None, start
        for chance in range(self.config.extra_chances + 1):
            if chance:
                self.extra_strides += int((alive & ~accepted).sum())
            proposal, energy, total, ok, more = self._stride(current, alive & ~accepted)
            iterations = more if iterations is None else iterations + more
            alive &= ok
            delta = torch.where(alive, total - start.target_energy, torch.nan)
            log_weights.append(torch.where(alive, -delta / self.kT, -torch.inf))
            if chance == 0:
                self.last_delta_H = delta
                self.probability_sum += float(log_weights[1].clamp(max=0.0).exp().sum())
            cumulative = cumulative + chance_probability(log_weights)
            chosen = ~accepted & (uniform < cumulative)
            if chance == 0 and self.config.uniform_drift:  # rescales v (module docstring)
                rescaled = self._v * torch.exp(-log_weights[1].clamp(min=-700.0))
                self._v = torch.where(chosen, rescaled, self._v)
            keep = chosen[start.system, None]
            new = new.replace(
                positions=torch.where(keep, proposal.positions, new.positions),
                momenta=torch.where(keep, proposal.momenta, new.momenta),
                target_energy=torch.where(chosen, total, new.target_energy),
            )
            potential_new = torch.where(chosen, energy, potential_new)
            accepted |= chosen
            if bool((accepted | ~alive).all()):
                break
            current = proposal
        self._count(accepted)
        self.strides += 1
        zeros = torch.zeros_like(accepted)
        ones = torch.ones_like(potential_new)
        return new, StrideStats(ones, zeros, potential_new, iterations, accepted=accepted)

    def _stride(
        self, current: MDState, undecided: torch.Tensor
    ) -> tuple[MDState, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One stride of the orbit from ``current``: the proposal (``current`` where the solve
        failed), its ``V`` and ``H`` (S,) eV, (S,) whether it converged and (when checked)
        solved back to ``current``, and the solver's iterations; failures of ``undecided``
        systems are counted."""
        proposal, iterations = self._propose(current)
        finite = systems_all(
            current,
            torch.isfinite(proposal.positions).all(dim=1)
            & torch.isfinite(proposal.momenta).all(dim=1),
        )
        safe = current.replace(
            positions=torch.where(
                finite[current.system, None], proposal.positions, current.positions
            ),
            momenta=torch.where(finite[current.system, None], proposal.momenta, current.momenta),
        )
        energy = self._proposal_energy(safe)
        reversible = finite.clone()
        if self._check_reversibility and bool(finite.any()):  # failed solves: rejected
            returned, more = self._returns(current, safe, finite)
            reversible &= returned
            iterations = None if iterations is None else iterations + more
        self.unconverged += int((undecided & ~finite).sum())
        self.irreversible += int((undecided & finite & ~reversible).sum())
        return safe, energy, energy + safe.kinetic_energy(), reversible, iterations

    def _uniform(self, state: MDState) -> torch.Tensor:
        """(S,) the uniform of each system's accept/reject decision: fresh, or ``|v|`` after
        ``v`` moved by ``uniform_drift`` (drawn uniform on [-1, 1] at the first stride)."""
        draw = torch.rand(
            state.n_systems, generator=state.generator, dtype=torch.float64, device=state.device
        )
        drift = self.config.uniform_drift
        if not drift:
            return draw
        if self._v is None or self._v.shape != draw.shape:
            self._v = 2.0 * draw - 1.0
        moved = self._v + drift
        self._v = torch.where(moved > 1.0, moved - 2.0, moved)
        return self._v.abs()

    def _proposal_energy(self, proposal: MDState) -> torch.Tensor:
        """(S,) eV ``V`` of the proposal: the propagator's own when it moved the atoms on the
        sampled potential (a leapfrog proposal has it from its last force evaluation)."""
        if getattr(self.propagator, "potential", None) is self.potential:
            return self.propagator.energy_and_forces(proposal)[0]
        return self.potential_energy(proposal)

    def _propose(self, start: MDState) -> tuple[MDState, torch.Tensor | None]:
        """``Φ(x)`` for every system (NaN where the solve failed) and the solver's iterations."""
        self.predictions += start.n_systems
        edges = self.edges(self.propagator.cutoff, start)
        positions, momenta = self.propagator.propagate(start, edges, self.stride_fs)
        return start.replace(positions=positions, momenta=momenta), self._iterations(start)

    def _returns(
        self, start: MDState, proposal: MDState, finite: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) bool: ``Φ(R y)`` lands on ``R x`` within the tolerance; (S,) its iterations."""
        flipped = proposal.replace(momenta=-proposal.momenta)
        back, iterations = self._propose(flipped)
        if iterations is None:
            iterations = torch.zeros_like(start.target_energy)
        h = self.stride_fs * FS
        position_miss = (back.positions - start.positions).abs().amax(dim=1)
        momentum_miss = ((back.momenta + start.momenta) * h / start.masses[:, None]).abs()
        miss = torch.maximum(position_miss, momentum_miss.amax(dim=1))
        miss = torch.where(torch.isfinite(miss), miss, torch.inf)
        worst = torch.zeros_like(start.target_energy).scatter_reduce(0, start.system, miss, "amax")
        return finite & (worst <= self.config.reversibility_tolerance_A), iterations

    def _count(self, accepted: torch.Tensor) -> None:
        self.proposals += int(accepted.numel())
        self.accepted += int(accepted.sum())
        judged = self.proposals >= self.config.warn_after
        if judged and not self._warned and self.acceptance_rate < self.config.min_acceptance:
            self._warned = True
            warnings.warn(
                f"the Metropolis chain accepted {self.acceptance_rate:.1%} of {self.proposals} "
                f"strides of {self.stride_fs:g} fs (floor {self.config.min_acceptance:.0%}; "
                f"{self.unconverged} solves did not converge, {self.irreversible} did not "
                "return to their start): the samples stay exact but correlate for long. Take "
                "a shorter stride, or fewer atoms per system (the energy error of a stride "
                "grows with the system)",
                RuntimeWarning,
                stacklevel=2,
            )
