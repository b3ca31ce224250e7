"""Thermostats acting on momenta over a time ``dt`` (the stepper applies them as half-strides).

Both act on the internal momenta only (:mod:`flashmd.md.rigid`): the total momentum, and the
angular momentum of open systems, are untouched, and the kinetic energy they sample has the
matching number of degrees of freedom (``3N - 3`` for a free periodic system). Noise comes from the
state's generator, so a run is reproducible from its seed and resumable from the generator state.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from flashmd.md import rigid
from flashmd.md.state import MDState
from flashmd.units import KB


class Thermostat(Protocol):
    """Anything that updates momenta over ``dt`` (ASE time units)."""

    def apply(self, state: MDState, dt: float) -> torch.Tensor:
        """New momenta (A, 3) amu·Å/ASE-time after ``dt``."""
        ...


def _noise(state: MDState) -> torch.Tensor:
    """(A, 3) standard normal numbers from the state's generator."""
    return torch.randn(
        state.momenta.shape,
        generator=state.generator,
        dtype=state.momenta.dtype,
        device=state.device,
    )


class Langevin:
    """Local Langevin thermostat, the exact Ornstein-Uhlenbeck solution for each atom::

        p_int <- c p_int + √((1 - c²) m kB T) ξ_int,   c = exp(-γ dt)

    where ``ξ_int`` is Gaussian noise with its rigid part removed (so ``P`` and ``L`` are kept).

    Args:
        temperature_K: target temperature in K.
        friction: ``γ`` in 1/(ASE time), as ``ase.md.langevin.Langevin``'s ``friction``.
    """

    def __init__(self, temperature_K: float, friction: float) -> None:
        if not temperature_K >= 0 or not friction > 0:
            raise ValueError(
                f"need temperature_K >= 0 and friction > 0, got {temperature_K}, {friction}"
            )
        self.temperature_K = float(temperature_K)
        self.friction = float(friction)

    def apply(self, state: MDState, dt: float) -> torch.Tensor:
        c = math.exp(-self.friction * dt)
        sigma = torch.sqrt((1.0 - c * c) * KB * self.temperature_K * state.masses)[:, None]
        noise = rigid.internal_momenta(state, sigma * _noise(state))
        internal = rigid.internal_momenta(state)
        mobile = (~state.fixed)[:, None]
        new = state.momenta - internal + c * internal + noise
        return torch.where(mobile, new, 0.0)


class Bussi:
    """Stochastic velocity rescaling (Bussi, Donadio, Parrinello 2007), global per system.

    The internal kinetic energy ``K`` of each system with ``N_f`` degrees of freedom follows
    the exact solution of its stochastic equation over ``dt``; momenta are scaled by ``α``::

        α² = c + (1-c) K̄/(N_f K) (R₁² + Σ_{i=2}^{N_f} R_i²) + 2 R₁ √(c (1-c) K̄ / (N_f K))

    with ``c = exp(-dt/τ)`` and ``K̄ = N_f kB T / 2``.

    Args:
        temperature_K: target temperature in K.
        taut: time constant ``τ`` in ASE time units.
    """

    def __init__(self, temperature_K: float, taut: float) -> None:
        if not temperature_K > 0 or not taut > 0:
            raise ValueError(f"need temperature_K > 0 and taut > 0, got {temperature_K}, {taut}")
        self.temperature_K = float(temperature_K)
        self.taut = float(taut)

    def apply(self, state: MDState, dt: float) -> torch.Tensor:
        dof = rigid.degrees_of_freedom(state)
        internal = rigid.internal_momenta(state)
        kinetic = state.kinetic_energy(internal).clamp(min=1e-300)
        target = 0.5 * dof * KB * self.temperature_K
        c = math.exp(-dt / self.taut)
        n_extra = int(dof.max()) - 1
        draws = torch.randn(
            (state.n_systems, n_extra + 1),
            generator=state.generator,
            dtype=kinetic.dtype,
            device=state.device,
        )
        first = draws[:, 0]
        keep = torch.arange(n_extra, device=state.device)[None, :] < (dof - 1)[:, None]
        rest = (draws[:, 1:] ** 2 * keep).sum(dim=1)
        ratio = target / (dof * kinetic)
        alpha2 = (
            c + (1 - c) * ratio * (first**2 + rest) + 2 * first * torch.sqrt(c * (1 - c) * ratio)
        )
        sign = torch.sign(first + torch.sqrt(c / ((1 - c) * ratio)))
        alpha = sign * torch.sqrt(alpha2.clamp(min=0.0))
        return state.momenta - internal + alpha[state.system, None] * internal


def kinetic_temperature(state: MDState) -> torch.Tensor:
    """(S,) K, temperature of the internal kinetic energy of each system."""
    dof = rigid.degrees_of_freedom(state)
    return 2.0 * state.kinetic_energy(rigid.internal_momenta(state)) / (dof * KB)
