"""Physical filters applied to a predicted stride: momentum constraints and energy rescaling.

:func:`constrain` makes the centre of mass move exactly by ``S P / M`` and gives the new momenta
the conserved total (and, for open systems, angular) momentum of the state before the stride.
:func:`rescale` scales the internal momenta by ``α`` so that ``K(p') + V(q')`` equals each
system's target energy, leaving the rigid part (and so ``P`` and ``L``) untouched::

    α² K_internal + K_rigid + V(q') = E_target

When no real ``α`` exists (``V(q') + K_rigid >= E_target``) or ``α`` lies outside the accepted
band ``[1 - max_cooling, 1 + max_heating]``, the momenta are left unchanged and the system is
flagged, so the caller can fall back (see :mod:`flashmd.md.fallback`): this filter never produces
NaN.

Both sides default to 5 %, and the evidence for that is in the model cards. A predictor trained on
mean squared error returns the conditional mean of ``p(t+S)``, whose kinetic energy falls short of
the true one by the variance of its error, so strides lose energy systematically (``α > 1``): for
``emt-metals`` on held-out reference states α ≈ 1.01-1.03 at 32 fs and 1.05-1.18 at 64 fs (medians),
spread by a few per cent. ``max_heating`` can be widened to accept that deficit, but the deficit
measures the error, and accepting it has a price: with ``max_heating = 0.15`` the held-out 64 fs
runs of a Cu3Au alloy and of Ni had a potential energy off by 7-11 meV/atom and an RDF off by 0.053;
the 5 % band redoes those strides as half strides, which brings the alloy within tolerance (Ni's V
stays 7 meV/atom low, its RDF recovers); with the band opened to ±50 % a 108-atom Cu crystal in NVE
at 64 fs heated from 600 to 850 K while its potential energy fell. An energy *excess* (``α < 1``)
marks atoms pushed into a high-energy configuration.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from ase.data import covalent_radii

from flashmd.md import rigid
from flashmd.md.state import MDState
from flashmd.nn.scatter import scatter_sum
from flashmd.units import FS

#: Relative energy difference treated as zero.
_ROUND_OFF = 1e-12
#: Default ``FilterConfig.contact_fraction``: well inside the repulsive wall, where no training
#: data lives (the closest pair of the liquid Al reference at 1400 K is 0.78 of the radius sum).
CONTACT_FRACTION = 0.6
#: Neighbour radius (Å) of the contact check when the potential has no cutoff of its own: more
#: than ``CONTACT_FRACTION`` times any sum of two covalent radii.
CONTACT_SEARCH_CUTOFF = 3.0


@functools.cache
def _covalent_radii(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(119,) covalent radii in Å by atomic number, made once per device and dtype (not copied
    to the GPU every stride)."""
    return torch.tensor(covalent_radii, dtype=dtype, device=device)


@dataclass(frozen=True)
class FilterConfig:
    """Settings of the energy filter and its fallback.

    Attributes:
        energy: rescale momenta to conserve each system's target energy.
        max_cooling: largest accepted ``1 - α`` (the stride gained energy); beyond it the
            stride falls back.
        max_heating: largest accepted ``α - 1`` (the stride lost energy, as the conditional
            mean of the momenta does); beyond it the stride falls back. See the module
            docstring before widening it.
        fallback_timestep_fs: timestep of the velocity-Verlet fallback in fs (the stride is split
            into the smallest whole number of steps no longer than this).
        split_depth: a rejected stride is first retried as two half strides of the propagator
            (each filtered, and retried again if rejected), at most this many halvings deep and
            only where the propagator supports the half stride; velocity Verlet comes after that.
            A model serving 16, 32 and 64 fs repairs a rejected 64 fs stride with two 32 fs ones
            at a fraction of Verlet's cost. 0: straight to velocity Verlet.
        contact_fraction: a stride that leaves two atoms closer than this fraction of the sum
            of their covalent radii is rejected like one the energy filter cannot repair (an
            ML energy model may lack the repulsive wall that would otherwise make ``α``
            impossible there). None: no check.
    """

    energy: bool = True
    max_cooling: float = 0.05
    max_heating: float = 0.05
    fallback_timestep_fs: float = 1.0
    split_depth: int = 2
    contact_fraction: float | None = CONTACT_FRACTION

    def __post_init__(self) -> None:
        if not (self.max_cooling > 0 and self.max_heating > 0 and self.fallback_timestep_fs > 0):
            raise ValueError("max_cooling, max_heating and fallback_timestep_fs must be positive")
        if self.max_cooling >= 1:
            raise ValueError(f"max_cooling must be below 1, got {self.max_cooling}")
        if self.contact_fraction is not None and not 0 < self.contact_fraction < 1:
            raise ValueError(f"contact_fraction must lie in (0, 1), got {self.contact_fraction}")
        if self.split_depth < 0:
            raise ValueError(f"split_depth must be at least 0, got {self.split_depth}")


@dataclass(frozen=True)
class Rescaled:
    """Result of :func:`rescale`.

    Attributes:
        momenta: (A, 3) filtered momenta (unchanged where not ``accepted``).
        scale: (S,) the factor ``α`` (0 where no real factor exists).
        accepted: (S,) bool, ``α`` exists and ``1 - max_cooling <= α <= 1 + max_heating``.
    """

    momenta: torch.Tensor
    scale: torch.Tensor
    accepted: torch.Tensor


def constrain(
    before: MDState,
    positions: torch.Tensor,
    momenta: torch.Tensor,
    stride_fs: float,
    target: rigid.Conserved,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Impose exact centre-of-mass motion and the conserved momenta on a predicted stride.

    Args:
        before: the state at the start of the stride.
        positions: (A, 3) predicted positions in Å.
        momenta: (A, 3) predicted momenta.
        stride_fs: the stride in fs.
        target: conserved quantities of ``before`` (:func:`flashmd.md.rigid.conserved`).

    Returns:
        (A, 3) positions and (A, 3) momenta; fixed atoms keep their positions and get zero momenta.
    """
    m, system, n = before.masses, before.system, before.n_systems
    total = scatter_sum(m, system, n)[:, None]
    displacement = scatter_sum(m[:, None] * (positions - before.positions), system, n) / total
    wanted = stride_fs * FS * target.momentum / total
    translating = (~before.has_fixed)[:, None]
    positions = positions + torch.where(translating, wanted - displacement, 0.0)[system]
    fixed = before.fixed[:, None]
    positions = torch.where(fixed, before.positions, positions)
    after = before.replace(positions=positions, momenta=momenta)
    return positions, rigid.impose(after, target)


def rescale(
    state: MDState,
    potential_energy: torch.Tensor,
    max_cooling: float = 1.0,
    max_heating: float = float("inf"),
) -> Rescaled:
    """Scale the internal momenta of ``state`` so that ``K + V`` equals ``state.target_energy``.

    Args:
        state: positions and momenta after the stride, with the target energies (S,) eV.
        potential_energy: (S,) ``V`` at ``state.positions`` in eV.
        max_cooling: largest accepted ``1 - α``.
        max_heating: largest accepted ``α - 1``.
    """
    internal = rigid.internal_momenta(state)
    fixed_part = state.momenta - internal
    k_internal = state.kinetic_energy(internal)
    available = state.target_energy - potential_energy - state.kinetic_energy(fixed_part)
    solvable = (available > 0) & (k_internal > 0) & torch.isfinite(available)
    ratio = torch.where(solvable, available / torch.where(solvable, k_internal, 1.0), 0.0)
    # already on target (e.g. no internal motion at all): nothing to rescale
    on_target = torch.abs(available - k_internal) <= _ROUND_OFF * (
        torch.abs(state.target_energy) + torch.abs(potential_energy) + 1.0
    )
    scale = torch.where(on_target, 1.0, torch.sqrt(ratio))
    solvable = solvable | on_target
    accepted = solvable & (scale >= 1.0 - max_cooling) & (scale <= 1.0 + max_heating)
    factor = torch.where(accepted, scale, 1.0)[state.system, None]
    return Rescaled(fixed_part + factor * internal, scale, accepted)


def in_contact(
    state: MDState, edges: tuple[torch.Tensor, torch.Tensor], fraction: float
) -> torch.Tensor:
    """(S,) bool: two atoms of the system are closer than ``fraction`` times the sum of their
    covalent radii.

    Args:
        state: positions (A, 3) Å and atomic numbers.
        edges: ``edge_index`` (2, E) and ``edge_shifts`` (E, 3) Å holding every pair of ``state``
            within the neighbour cutoff (see :class:`flashmd.md.neighbors.NeighborCache`).
        fraction: fraction of the covalent-radius sum.
    """
    (first, second), shifts = edges
    positions = state.positions
    distance = (positions[second] - positions[first] + shifts.to(positions.dtype)).norm(dim=1)
    radii = _covalent_radii(positions.device, positions.dtype)[state.numbers]
    close = (distance < fraction * (radii[first] + radii[second])).long()
    count = torch.zeros(state.n_systems, dtype=torch.long, device=positions.device)
    return count.index_add_(0, state.system[first], close) > 0
