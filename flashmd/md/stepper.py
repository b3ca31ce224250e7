"""One stride of the rollout engine, as a function state -> (state, statistics).

    thermostat half-step -> [barostat] -> predictor -> constraints -> energy filter
        -> thermostat half-step

The thermostat half-steps (optional) change the target energy by the kinetic energy they add or
remove, so the filter conserves only the deterministic part of the dynamics. Systems whose stride
the filter cannot repair (no real rescaling factor, one too far from 1, or a non-finite
prediction) are integrated again from the state before the stride: as two filtered half strides
when the propagator serves them (recursively, ``FilterConfig.split_depth`` deep), else with
velocity Verlet on the potential's forces (:mod:`flashmd.md.fallback`), then rescaled when
possible. No NaN leaves a
stride: with a potential every failure falls back; without one a non-finite prediction raises.

An adaptive stride (:class:`AdaptiveStride`) checks each stride first: the check computes the
stride both whole and as two half strides (:mod:`flashmd.md.consistency`), and a system whose
two results differ by more than a threshold is *declined*: it takes the two half strides, which
are already computed, instead of the whole one. Either way the filter then judges the result
once, so a check costs three predictor passes and one energy evaluation per stride, whatever
it decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flashmd.md import rigid
from flashmd.md.barostats import StochasticCellRescaling
from flashmd.md.consistency import StrideConsistency
from flashmd.md.fallback import velocity_verlet
from flashmd.md.filters import CONTACT_SEARCH_CUTOFF, FilterConfig, constrain, in_contact, rescale
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import (
    Edges,
    Potential,
    Propagator,
    SolvedPropagator,
    StressPotential,
)
from flashmd.md.state import MDState
from flashmd.md.thermostats import Thermostat
from flashmd.units import FS


@dataclass(frozen=True)
class StrideStats:
    """Per-system statistics of one stride.

    Attributes:
        scale: (S,) energy-filter factor ``α`` applied (1 without a filter; after a fallback, the
            factor applied to the Verlet result, or 1 if none was possible).
        fallback: (S,) bool, the filter rejected the stride, which was integrated again (as half
            strides or by velocity Verlet).
        potential_energy: (S,) eV, ``V`` at the new positions (NaN without a potential).
        iterations: (S,) float, evaluations of the generating function's gradient the stride
            took (symplectic strides, :mod:`flashmd.md.symplectic`; a redone stride adds its
            half strides'), 0 for a direct predictor; None when not recorded.
        declined: (S,) bool, the adaptive stride took the stride as two half strides (None:
            not checked).
        accepted: (S,) bool, the Metropolis test accepted the stride
            (:mod:`flashmd.md.metropolis`; None: no test, every stride is kept).
    """

    scale: torch.Tensor
    fallback: torch.Tensor
    potential_energy: torch.Tensor
    iterations: torch.Tensor | None = None
    declined: torch.Tensor | None = None
    accepted: torch.Tensor | None = None


#: Default threshold of :class:`AdaptiveStride` in Å (see ``flashmd/pretrained/emt-metals.md``).
DEFAULT_THRESHOLD_A = 0.1


@dataclass(frozen=True)
class AdaptiveStride:
    """Decline strides the predictor is unsure of (see the module docstring).

    Args:
        consistency: the predictor's stride self-consistency.
        threshold_A: largest atom self-consistency (Å) of a system up to which its stride is
            taken whole.
    """

    consistency: StrideConsistency
    threshold_A: float

    def __post_init__(self) -> None:
        if not self.threshold_A > 0:
            raise ValueError(f"threshold_A must be positive, got {self.threshold_A}")

    def checks(self, stride_fs: float) -> bool:
        """Whether strides of ``stride_fs`` are checked (the model serves their half)."""
        try:
            return self.consistency.long_stride(stride_fs) == stride_fs
        except ValueError:
            return False


class Stepper:
    """Advances batched states by one stride.

    Args:
        propagator: the long-stride map.
        stride_fs: the stride in fs.
        potential: ``V(q)`` for the energy filter and forces for the fallback (None: no filter).
        thermostat: applied for half a stride before and after the map (None: NVE).
        filters: energy-filter settings (default :class:`FilterConfig`).
        skin: neighbour-list skin in Å.
        adaptive: decline unsure strides (None: take every stride whole).
        barostat: rescales the cells once per stride, after the first thermostat half-step
            (:mod:`flashmd.md.barostats`; needs a potential with a stress; None: constant
            volume).

    Attributes:
        strides: strides taken; fallbacks: system-strides the filter rejected (repaired by half
            strides or velocity Verlet); splits: rejected (sub-)strides retried as two halves;
            verlet_fallbacks: (sub-)strides integrated by velocity Verlet;
            declined: system-strides the adaptive stride took as two half strides;
            predictions: system (sub-)strides the propagator predicted, an adaptive stride's
            whole and half strides included (``strides * n_systems * stride_fs / predictions``
            is the effective stride).
    """

    def __init__(
        self,
        propagator: Propagator,
        stride_fs: float,
        potential: Potential | None = None,
        thermostat: Thermostat | None = None,
        filters: FilterConfig | None = None,
        skin: float = 1.0,
        adaptive: AdaptiveStride | None = None,
        barostat: StochasticCellRescaling | None = None,
    ) -> None:
        if not stride_fs > 0:
            raise ValueError(f"stride_fs must be positive, got {stride_fs}")
        if barostat is not None and not isinstance(potential, StressPotential):
            raise ValueError(
                "constant pressure needs a potential that gives the stress (the model's energy "
                "model, or an ASE calculator)"
            )
        self.barostat = barostat
        self.propagator = propagator
        # a runtime Protocol check inspects attributes: once here, not on every stride
        self._solved = isinstance(propagator, SolvedPropagator)
        self.stride_fs = float(stride_fs)
        self.potential = potential
        self.thermostat = thermostat
        self.filters = FilterConfig() if filters is None else filters
        self.skin = float(skin)
        self.adaptive = adaptive
        self._caches: dict[float, NeighborCache] = {}
        self.strides = 0
        self.fallbacks = 0
        self.splits = 0
        self.verlet_fallbacks = 0
        self.declined = 0
        self.predictions = 0

    @property
    def rebuilds(self) -> int:
        """Neighbour-list builds so far (all cutoffs)."""
        return sum(cache.builds for cache in self._caches.values())

    def edges(self, cutoff: float | None, state: MDState) -> Edges | None:
        """Neighbour lists of ``state`` at ``cutoff`` (reused across strides), or None."""
        return _edges(self._caches, cutoff, state, self.skin)

    def potential_energy(self, state: MDState) -> torch.Tensor:
        """(S,) eV ``V`` of each system (NaN without a potential)."""
        if self.potential is None:
            return torch.full_like(state.target_energy, float("nan"))
        return self.potential.energy(state, self.edges(self.potential.cutoff, state))

    def prepare(self, state: MDState) -> MDState:
        """Check ``state`` against the propagator and set missing target energies to ``K + V``."""
        self.propagator.check(state, self.stride_fs)
        if not bool(torch.isfinite(state.positions).all() & torch.isfinite(state.momenta).all()):
            raise ValueError("positions or momenta contain NaN or infinity")
        if self.barostat is not None:
            self.barostat.check(state)
        missing = torch.isnan(state.target_energy)
        if self.potential is None or not bool(missing.any()):
            return state
        total = state.kinetic_energy() + self.potential_energy(state)
        return state.replace(target_energy=torch.where(missing, total, state.target_energy))

    def _thermostat(self, state: MDState) -> MDState:
        if self.thermostat is None:
            return state
        momenta = self.thermostat.apply(state, 0.5 * self.stride_fs * FS)
        change = state.kinetic_energy(momenta) - state.kinetic_energy()
        return state.replace(momenta=momenta, target_energy=state.target_energy + change)

    def _barostat(self, state: MDState) -> MDState:
        """The cells rescaled over one stride; the target energy moves by the change of
        ``K + V`` the rescaling makes."""
        if self.barostat is None:
            return state
        assert isinstance(self.potential, StressPotential)
        edges = self.edges(self.potential.cutoff, state)
        energy, stress = self.potential.energy_and_stress(state, edges)
        moved = self.barostat.apply(state, stress, self.stride_fs * FS)
        change = (
            moved.kinetic_energy() + self.potential_energy(moved) - state.kinetic_energy() - energy
        )
        return moved.replace(target_energy=state.target_energy + change)

    def step(self, state: MDState) -> tuple[MDState, StrideStats]:
        """Advance every system of ``state`` (prepared by :meth:`prepare`) by one stride."""
        before = self._barostat(self._thermostat(state))
        after, stats = self._stride(before, self.stride_fs, self._caches, depth=0)
        self.strides += 1
        return self._thermostat(after), stats

    def _stride(
        self, before: MDState, stride_fs: float, caches: dict[float, NeighborCache], depth: int
    ) -> tuple[MDState, StrideStats]:
        """Predict, constrain and filter one stride of ``stride_fs``; rejected systems retry.

        ``caches`` holds the neighbour lists of this set of systems (retries of a subset get
        their own); ``depth`` counts the halvings above this stride.
        """
        target = rigid.conserved(before)
        positions, momenta, unsure = self._predict(before, stride_fs, caches, check=depth == 0)
        if unsure is not None:
            self.declined += int(unsure.sum())
        iterations = self._iterations(before)
        finite = systems_all(
            before, torch.isfinite(positions).all(dim=1) & torch.isfinite(momenta).all(dim=1)
        )
        if not bool(finite.all()):
            if self.potential is None:
                raise FloatingPointError("the propagator returned NaN or infinity")
            keep = (~finite)[before.system, None]  # these systems fall back below
            positions = torch.where(keep, before.positions, positions)
            momenta = torch.where(keep, before.momenta, momenta)
        positions, momenta = constrain(before, positions, momenta, stride_fs, target)
        after = before.replace(positions=positions, momenta=momenta)
        if self.potential is None:
            ones = torch.ones_like(before.target_energy)
            energy = self.potential_energy(after)
            return after, StrideStats(ones, ~finite, energy, iterations, unsure)
        potential_edges = _edges(caches, self.potential.cutoff, after, self.skin)
        energy = self.potential.energy(after, potential_edges)
        scale, failed = torch.ones_like(energy), ~finite
        if self.filters.contact_fraction is not None:
            cutoff = self.potential.cutoff or CONTACT_SEARCH_CUTOFF
            edges = _edges(caches, cutoff, after, self.skin)
            failed = failed | in_contact(after, edges, self.filters.contact_fraction)
        if self.filters.energy:
            result = rescale(after, energy, self.filters.max_cooling, self.filters.max_heating)
            after = after.replace(momenta=result.momenta)
            scale, failed = result.scale, failed | ~result.accepted
        stats = StrideStats(scale, failed, energy, iterations, unsure)
        if not bool(failed.any()):
            return after, stats
        if depth == 0:
            self.fallbacks += int(failed.sum())
        repaired, repaired_stats = self._retry(before.select(failed), stride_fs, depth)
        atoms = failed[before.system, None]
        new = after.replace(
            positions=after.positions.masked_scatter(atoms, repaired.positions),
            momenta=after.momenta.masked_scatter(atoms, repaired.momenta),
        )
        if iterations is not None and repaired_stats.iterations is not None:
            iterations = iterations.masked_scatter(
                failed, iterations[failed] + repaired_stats.iterations
            )
        return new, StrideStats(
            stats.scale.masked_scatter(failed, repaired_stats.scale),
            failed,
            stats.potential_energy.masked_scatter(failed, repaired_stats.potential_energy),
            iterations,
            unsure,
        )

    def _predict(
        self, before: MDState, stride_fs: float, caches: dict[float, NeighborCache], check: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(A, 3) positions and momenta one stride later, and (S,) bool systems the adaptive
        stride declined and took as two half strides (None: not checked; only a whole stride is,
        ``check``, not the half strides of a rejected one)."""
        self.predictions += before.n_systems
        if check and self.adaptive is not None and self.adaptive.checks(stride_fs):
            found = self.adaptive.consistency(before, stride_fs)
            unsure = found.per_system(before.n_systems) > self.adaptive.threshold_A
            self.predictions += 2 * before.n_systems  # the two half strides
            halves = unsure[before.system, None]
            positions = torch.where(halves, found.short_positions, found.long_positions)
            momenta = torch.where(halves, found.short_momenta, found.long_momenta)
            return positions, momenta, unsure
        edges = _edges(caches, self.propagator.cutoff, before, self.skin)
        positions, momenta = self.propagator.propagate(before, edges, stride_fs)
        return positions, momenta, None

    def _iterations(self, state: MDState) -> torch.Tensor | None:
        """(S,) float solver iterations of the stride just propagated, or None (direct map)."""
        if not self._solved:
            return None
        return self.propagator.last_iterations.to(state.device, torch.float64)

    def _retry(self, subset: MDState, stride_fs: float, depth: int) -> tuple[MDState, StrideStats]:
        """Integrate the rejected systems ``subset`` over ``stride_fs`` again: two filtered half
        strides when allowed and supported, else velocity Verlet on the potential's forces."""
        half = 0.5 * stride_fs
        if depth < self.filters.split_depth and self._supports(subset, half):
            self.splits += subset.n_systems
            caches: dict[float, NeighborCache] = {}
            state, first = self._stride(subset, half, caches, depth + 1)
            state, second = self._stride(state, half, caches, depth + 1)
            if first.iterations is None or second.iterations is None:
                return state, second
            total = first.iterations + second.iterations
            return state, StrideStats(second.scale, second.fallback, second.potential_energy, total)
        return self._verlet(subset, stride_fs)

    def _supports(self, state: MDState, stride_fs: float) -> bool:
        try:
            self.propagator.check(state, stride_fs)
        except ValueError:
            return False
        return True

    def _verlet(self, subset: MDState, stride_fs: float) -> tuple[MDState, StrideStats]:
        """Velocity Verlet over ``stride_fs``, then the momentum constraints and, when possible,
        the energy rescaling (an unrepairable Verlet stride keeps its momenta)."""
        assert self.potential is not None
        self.verlet_fallbacks += subset.n_systems
        integrated, energy = velocity_verlet(
            subset, self.potential, stride_fs, self.filters.fallback_timestep_fs, self.skin
        )
        positions, momenta = constrain(
            subset, integrated.positions, integrated.momenta, stride_fs, rigid.conserved(subset)
        )
        integrated = integrated.replace(positions=positions, momenta=momenta)
        scale = torch.ones_like(energy)
        if self.filters.energy:
            result = rescale(integrated, energy)
            momenta = torch.where(result.accepted[integrated.system, None], result.momenta, momenta)
            scale = torch.where(result.accepted, result.scale, 1.0)
        failed = torch.ones_like(energy, dtype=torch.bool)
        return integrated.replace(momenta=momenta), StrideStats(scale, failed, energy)


def _edges(
    caches: dict[float, NeighborCache], cutoff: float | None, state: MDState, skin: float
) -> Edges | None:
    """Neighbour lists of ``state`` at ``cutoff`` from ``caches`` (created on first use)."""
    if cutoff is None:
        return None
    if cutoff not in caches:
        caches[cutoff] = NeighborCache(cutoff, skin)
    return caches[cutoff].edges(state)


def systems_all(state: MDState, per_atom: torch.Tensor) -> torch.Tensor:
    """(S,) bool: ``per_atom`` (A,) bool holds for every atom of the system."""
    bad = torch.zeros(state.n_systems, dtype=torch.long, device=state.device)
    bad.index_add_(0, state.system, (~per_atom).long())
    return bad == 0
