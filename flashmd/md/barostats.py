"""Constant pressure: stochastic cell rescaling (Bernetti and Bussi, J. Chem. Phys. 153, 114107
(2020); anisotropic: Del Tatto, Raiteri, Bernetti and Bussi, Appl. Sci. 12, 1139 (2022)).

Why this barostat around a long stride: it is a first-order stochastic equation for the cell
alone, with no cell momentum to integrate inside the stride, so it acts between strides as the
thermostats do (an operator over ``dt``), and it samples the isothermal-isobaric ensemble
exactly in the limit of small ``dt`` (an MTK barostat would couple its cell momentum into every
force evaluation, which a learned stride does not make).

**Isotropic.** With ``ε = ln V`` (Itô calculus, ``β_T`` a compressibility that sets only the
time scale ``τ_p``, not the distribution)::

    dε = -(β_T/τ_p) (P₀ - P_int - kT/V) dt + √(2 kT β_T / (V τ_p)) dW

Derivation: the NPT density of ``ε`` is ``exp(-F/kT)`` with ``F = U + P₀V - (N + 1) kT ln V``
(``V^N`` from the scaled coordinates, one ``V`` from ``dV = V dε``). An overdamped Langevin
equation with mobility ``μ = β_T/(V τ_p)`` samples it when written, in Itô form, with drift
``-μ ∂F/∂ε + kT ∂μ/∂ε``; since ``∂μ/∂ε = -μ`` that drift is ``-(β_T/τ_p)(P₀ - P_pot - N kT/V)``.
The instantaneous kinetic pressure replaces ``N kT/V``: it is computed from the internal
momenta (the total momentum is conserved, ``3N - 3`` degrees of freedom), which average
``(N - 1) kT/V``, hence ``P_int = (2 K_int / 3 - V tr σ / 3) / V`` plus the ``kT/V`` above, with
``σ`` the potential's stress (ASE sign, ``(1/V) ∂U/∂ε``). Positions and cell scale by
``exp(dε/3)`` and momenta by ``exp(-dε/3)``, which keeps the coupling of momenta and volume of
the paper.

**Anisotropic** (the cell's Cartesian axes, each with its own strain ``ε_α = ln L_α``, for the
axes of ``mask``; a slab scales in-plane only): the same derivation per axis with mobility
``β_T/(3 V τ_p)``::

    dε_α = -(β_T/(3τ_p)) (P₀ - P_int,αα - kT/V) dt + √(2 kT β_T / (3 V τ_p)) dW_α

where ``P_int,αα = (Σ p_α²/m - V σ_αα)/V``. Positions and cell rows scale by ``diag(exp dε_α)``
and momenta by its inverse. Summed over three axes it is the isotropic equation.

The stepper (:class:`flashmd.md.stepper.Stepper`) applies it once per stride, after the first
thermostat half-step; it moves the energy filter's target by the change of ``K + V`` the
rescaling makes, so the filter still conserves the deterministic part of the dynamics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ase.units
import torch

from flashmd.md import rigid
from flashmd.md.state import MDState
from flashmd.units import KB

#: 1 GPa in eV/Å³ (ASE pressure units).
GPA: float = float(ase.units.GPa)
#: Compressibility used when none is given: 1/(100 GPa), about that of the common metals.
DEFAULT_COMPRESSIBILITY = 1.0 / (100.0 * GPA)


@dataclass(frozen=True)
class StochasticCellRescaling:
    """Stochastic cell rescaling at ``pressure`` and ``temperature_K`` (module docstring).

    Args:
        pressure: target pressure ``P₀`` in eV/Å³ (ASE units; ``pressure_GPa * GPA``).
        temperature_K: temperature of the noise in K (that of the thermostat).
        tau: relaxation time ``τ_p`` of the volume in ASE time units (typically 1-2 ps).
        compressibility: ``β_T`` in Å³/eV; a rough value is enough (it scales the time).
        mask: (3,) the Cartesian axes that scale independently (anisotropic); None: isotropic.
    """

    pressure: float
    temperature_K: float
    tau: float
    compressibility: float = DEFAULT_COMPRESSIBILITY
    mask: tuple[bool, bool, bool] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.pressure):
            raise ValueError(f"pressure must be finite, got {self.pressure}")
        if not self.temperature_K > 0:
            raise ValueError(f"temperature_K must be positive, got {self.temperature_K}")
        if not self.tau > 0 or not self.compressibility > 0:
            raise ValueError(
                f"tau and compressibility must be positive, got {self.tau}, {self.compressibility}"
            )
        if self.mask is not None and not any(self.mask):
            raise ValueError("mask scales no axis; give at least one True (or None: isotropic)")

    def check(self, state: MDState) -> None:
        """Refuse systems a barostat cannot act on: not fully periodic, or a flat cell."""
        if not bool(state.pbc.all()):
            raise ValueError(
                "constant pressure needs fully periodic systems (a slab: periodic cell with "
                "vacuum along z, and mask=(True, True, False) to scale it in-plane)"
            )
        volume = torch.abs(torch.linalg.det(state.cell))
        if not bool((volume > 1e-6).all()):
            raise ValueError("a system's cell has zero volume; give a cell that encloses it")
        if bool(state.fixed.any()):
            raise ValueError("constant pressure with fixed atoms is not supported; remove FixAtoms")

    def pressure_tensor(self, state: MDState, stress: torch.Tensor) -> torch.Tensor:
        """(S, 3, 3) eV/Å³ internal pressure: kinetic part of the internal momenta minus the
        potential's ``stress`` (S, 3, 3) eV/Å³ (ASE sign)."""
        volume = torch.abs(torch.linalg.det(state.cell))
        internal = rigid.internal_momenta(state)
        per_atom = internal[:, :, None] * internal[:, None, :] / state.masses[:, None, None]
        kinetic = torch.zeros_like(stress).index_add_(0, state.system, per_atom)
        return kinetic / volume[:, None, None] - stress

    def noise_shape(self, n_systems: int) -> tuple[int, ...]:
        """Shape of the standard normal numbers one step draws: (S,) or, anisotropic, (S, 3)."""
        return (n_systems,) if self.mask is None else (n_systems, 3)

    def strain(
        self,
        state: MDState,
        stress: torch.Tensor,
        dt: float,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(S, 3) the increment of ``ln L_α`` over ``dt`` (ASE time) of each system's axes.

        ``noise`` (:meth:`noise_shape`) standard normal numbers; None draws them from the
        state's generator."""
        if noise is None:
            noise = torch.randn(
                self.noise_shape(state.n_systems),
                generator=state.generator,
                dtype=stress.dtype,
                device=state.device,
            )
        volume = torch.abs(torch.linalg.det(state.cell))
        kT = KB * self.temperature_K
        tensor = self.pressure_tensor(state, stress)
        beta, tau = self.compressibility, self.tau
        if self.mask is None:
            pressure = torch.diagonal(tensor, dim1=1, dim2=2).mean(dim=1)
            drift = -(beta / tau) * (self.pressure - pressure - kT / volume) * dt
            sigma = torch.sqrt(2.0 * kT * beta * dt / (volume * tau))
            return ((drift + sigma * noise) / 3.0)[:, None].expand(-1, 3)
        diagonal = torch.diagonal(tensor, dim1=1, dim2=2)
        drift = -(beta / (3 * tau)) * (self.pressure - diagonal - (kT / volume)[:, None]) * dt
        sigma = torch.sqrt(2.0 * kT * beta * dt / (3 * volume * tau))[:, None]
        mask = torch.tensor(self.mask, device=state.device)
        return torch.where(mask, drift + sigma * noise, 0.0)

    def apply(self, state: MDState, stress: torch.Tensor, dt: float) -> MDState:
        """``state`` after ``dt`` of the barostat: positions, cell and momenta rescaled, given
        the potential's ``stress`` (S, 3, 3) eV/Å³ at ``state``. The target energy is left to
        the caller (it needs ``V`` at the new positions)."""
        scale = torch.exp(self.strain(state, stress, dt))  # (S, 3)
        per_atom = scale[state.system]
        return state.replace(
            positions=state.positions * per_atom,
            momenta=state.momenta / per_atom,
            cell=state.cell * scale[:, None, :],
        )
