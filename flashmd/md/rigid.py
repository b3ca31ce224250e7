"""Rigid-body part of the momenta: centre-of-mass translation and, for open systems, rotation.

Momenta split M-orthogonally into a rigid part ``m_i (V + ω × (r_i - R))`` and an internal part
with zero total momentum and zero angular momentum about the centre of mass ``R``. Kinetic
energies add: ``K = K_rigid + K_internal``. Without external forces the total momentum ``P`` is
conserved, and for open (non-periodic) systems also the angular momentum ``L`` about ``R``. Systems
with fixed atoms conserve neither and have no rigid part. The filters and thermostats act on the
internal part only, so they never change ``P`` or ``L``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flashmd.md.state import MDState
from flashmd.nn.scatter import scatter_sum


@dataclass(frozen=True)
class Conserved:
    """Conserved quantities of each system.

    Attributes:
        momentum: (S, 3) total momentum in amu·Å/ASE-time (zero where not conserved).
        angular: (S, 3) angular momentum about the centre of mass in amu·Å²/ASE-time (zero where
            not conserved, i.e. periodic systems or systems with fixed atoms).
    """

    momentum: torch.Tensor
    angular: torch.Tensor


def _flags(state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
    """(S,) translation-conserving and (S,) rotation-conserving systems, as float 0/1."""
    free = ~state.has_fixed
    dtype = state.masses.dtype
    return free.to(dtype), (free & state.open).to(dtype)


def _frame(state: MDState, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Total masses (S,) amu and positions relative to each centre of mass (A, 3) Å."""
    m, n = state.masses, state.n_systems
    total = scatter_sum(m, state.system, n)
    com = scatter_sum(m[:, None] * positions, state.system, n) / total[:, None]
    return total, positions - com[state.system]


def _inertia(state: MDState, relative: torch.Tensor) -> torch.Tensor:
    """(S, 3, 3) inertia tensors in amu·Å² about the centres of mass."""
    m = state.masses[:, None, None]
    r2 = (relative * relative).sum(dim=1)[:, None, None]
    eye = torch.eye(3, dtype=relative.dtype, device=relative.device)
    per_atom = m * (r2 * eye - relative[:, :, None] * relative[:, None, :])
    return scatter_sum(per_atom, state.system, state.n_systems)


def conserved(state: MDState, momenta: torch.Tensor | None = None) -> Conserved:
    """Total and angular momentum of ``momenta`` (default the state's) at the state's positions."""
    p = state.momenta if momenta is None else momenta
    translating, rotating = _flags(state)
    total, relative = _frame(state, state.positions)
    momentum = scatter_sum(p, state.system, state.n_systems)
    internal_p = p - state.masses[:, None] * (momentum / total[:, None])[state.system]
    angular = scatter_sum(torch.cross(relative, internal_p, dim=1), state.system, state.n_systems)
    return Conserved(momentum * translating[:, None], angular * rotating[:, None])


def rigid_momenta(state: MDState, target: Conserved, positions: torch.Tensor) -> torch.Tensor:
    """(A, 3) momenta of the rigid motion carrying ``target`` at ``positions`` (A, 3) Å."""
    total, relative = _frame(state, positions)
    velocity = target.momentum / total[:, None]
    inertia = _inertia(state, relative)
    omega = (torch.linalg.pinv(inertia) @ target.angular[:, :, None])[:, :, 0]
    omega_atom = omega[state.system]
    return state.masses[:, None] * (
        velocity[state.system] + torch.cross(omega_atom, relative, dim=1)
    )


def internal_momenta(state: MDState, momenta: torch.Tensor | None = None) -> torch.Tensor:
    """(A, 3) momenta with the rigid part removed (zero P, and zero L for open systems)."""
    p = state.momenta if momenta is None else momenta
    return p - rigid_momenta(state, conserved(state, p), state.positions)


def impose(state: MDState, target: Conserved) -> torch.Tensor:
    """(A, 3) the state's momenta with their rigid part replaced by the one carrying ``target``.

    Fixed atoms get zero momentum.
    """
    p = internal_momenta(state) + rigid_momenta(state, target, state.positions)
    return p * (~state.fixed)[:, None]


def degrees_of_freedom(state: MDState) -> torch.Tensor:
    """(S,) float internal degrees of freedom: 3 per mobile atom, minus 3 for a conserved total
    momentum and 3 more for a conserved angular momentum (non-linear open systems)."""
    mobile = scatter_sum((~state.fixed).to(state.masses.dtype), state.system, state.n_systems)
    translating, rotating = _flags(state)
    return (3.0 * mobile - 3.0 * translating - 3.0 * rotating).clamp(min=1.0)
