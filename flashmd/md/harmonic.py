"""An exactly solvable propagator: a harmonic crystal of pairwise springs between neighbours.

``V = 1/2 (q - q0)^T K (q - q0)`` with linearised central springs of stiffness ``k`` between every
pair of atoms closer than ``bond_cutoff`` in the reference structure ``q0``: each bond adds
``k/2 ((u_j - u_i)·e_ij)²`` (``u = q - q0``, ``e_ij`` the bond's unit vector). ``V`` is translation
invariant (and invariant under infinitesimal rotations for open systems). The flow over any time
``t`` is exact through the normal modes of ``D = M^-1/2 K M^-1/2 = U diag(ω²) U^T``: in mass-scaled
coordinates ``x = √m u``, ``v = p / √m``::

    x(t) = U [cos(ωt) a + sin(ωt)/ω b],   v(t) = U [-ω sin(ωt) a + cos(ωt) b]

with ``a = U^T x(0)``, ``b = U^T v(0)``,
and free flight for zero modes (``sin(ωt)/ω -> t``). It implements both the
:class:`~flashmd.md.propagators.Propagator` and :class:`~flashmd.md.propagators.Potential`
interfaces, so the engine's physics is testable independently of any training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np
import torch
from ase.neighborlist import neighbor_list

from flashmd.md.propagators import Edges
from flashmd.md.state import MDState
from flashmd.units import FS


@dataclass(frozen=True)
class _System:
    """One reference system: q0 (n, 3) Å, K (3n, 3n) eV/Å², √m (3n,) √amu, modes, frequencies."""

    reference: torch.Tensor
    stiffness: torch.Tensor
    sqrt_mass: torch.Tensor
    modes: torch.Tensor
    omega: torch.Tensor


def stiffness_matrix(atoms: ase.Atoms, spring: float, bond_cutoff: float) -> np.ndarray:
    """(3n, 3n) Hessian in eV/Å² of linearised central springs between neighbours of ``atoms``."""
    n = len(atoms)
    first, second, vectors = neighbor_list("ijD", atoms, bond_cutoff)
    hessian = np.zeros((n, 3, n, 3))
    for i, j, d in zip(first, second, vectors, strict=True):
        e = d / np.linalg.norm(d)
        block = spring * np.outer(e, e)
        hessian[i, :, i, :] += block
        hessian[i, :, j, :] -= block
    return hessian.reshape(3 * n, 3 * n)


class HarmonicCrystal:
    """Exact harmonic propagator and potential for a fixed list of reference systems.

    States passed in must hold systems whose ``ids`` index ``systems`` (the default of
    :func:`~flashmd.md.state.state_from_atoms` for the same list), with the same atom order.

    Args:
        systems: reference structures ``q0`` (their positions are the minima).
        spring: spring stiffness ``k`` in eV/Å².
        bond_cutoff: pairs closer than this (Å) in the reference are bonded.
        device: where the matrices live.

    Raises:
        ValueError: a system has an unstable mode (negative ω²) or no bonds at all.
    """

    #: An exact Hamiltonian flow: volume-preserving and time-reversible.
    volume_preserving = True

    def __init__(
        self,
        systems: ase.Atoms | Sequence[ase.Atoms],
        spring: float = 1.0,
        bond_cutoff: float = 3.0,
        device: str | torch.device = "cpu",
    ) -> None:
        systems = [systems] if isinstance(systems, ase.Atoms) else list(systems)
        self.cutoff: float | None = None
        self.spring = float(spring)
        self._systems = [self._prepare(a, bond_cutoff, torch.device(device)) for a in systems]
        self._flows: dict[tuple[int, float], tuple[torch.Tensor, ...]] = {}

    def _prepare(self, atoms: ase.Atoms, bond_cutoff: float, device: torch.device) -> _System:
        hessian = stiffness_matrix(atoms, self.spring, bond_cutoff)
        if not np.any(hessian):
            raise ValueError(f"{atoms.get_chemical_formula()} has no bonds within {bond_cutoff} Å")
        sqrt_mass = np.repeat(np.sqrt(atoms.get_masses()), 3)
        dynamical = hessian / np.outer(sqrt_mass, sqrt_mass)
        eigenvalues, modes = np.linalg.eigh(0.5 * (dynamical + dynamical.T))
        tolerance = 1e-9 * max(float(np.abs(eigenvalues).max()), 1e-300)
        if eigenvalues.min() < -tolerance:
            raise ValueError(f"unstable harmonic system: smallest ω² = {eigenvalues.min():g}")
        omega = np.sqrt(np.where(eigenvalues > tolerance, eigenvalues, 0.0))

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float64, device=device)

        return _System(
            tensor(atoms.positions),
            tensor(hessian),
            tensor(sqrt_mass),
            tensor(modes),
            tensor(omega),
        )

    def check(self, state: MDState, stride_fs: float) -> None:
        """Raise ``ValueError`` unless every system of ``state`` matches its reference by id."""
        if not stride_fs > 0:
            raise ValueError(f"stride must be positive, got {stride_fs} fs")
        for system_id, n in zip(state.ids.tolist(), state.n_atoms.tolist(), strict=True):
            if not 0 <= system_id < len(self._systems):
                raise ValueError(f"system id {system_id} has no reference system")
            if self._systems[system_id].reference.shape[0] != n:
                raise ValueError(f"system id {system_id} has {n} atoms, its reference differs")

    def _flow(self, system_id: int, stride_fs: float) -> tuple[torch.Tensor, ...]:
        """(3n, 3n) matrices C = U cos U^T, S = U (sin/ω) U^T, W = U (-ω sin) U^T for a stride."""
        key = (system_id, float(stride_fs))
        if key not in self._flows:
            system = self._systems[system_id]
            t, omega, modes = stride_fs * FS, system.omega, system.modes
            safe = torch.where(omega > 0, omega, torch.ones_like(omega))
            sine_over = torch.where(
                omega > 0, torch.sin(omega * t) / safe, torch.full_like(omega, t)
            )
            factors = (torch.cos(omega * t), sine_over, -omega * torch.sin(omega * t))
            self._flows[key] = tuple((modes * f) @ modes.T for f in factors)
        return self._flows[key]

    def _parts(self, state: MDState) -> list[tuple[slice, _System, int]]:
        offsets, counts = state.atom_offsets().tolist(), state.n_atoms.tolist()
        return [
            (slice(start, start + n), self._systems[system_id], system_id)
            for start, n, system_id in zip(offsets, counts, state.ids.tolist(), strict=True)
        ]

    def propagate(
        self, state: MDState, edges: Edges | None, stride_fs: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact positions (A, 3) Å and momenta (A, 3) one stride of ``stride_fs`` fs later."""
        positions, momenta = torch.empty_like(state.positions), torch.empty_like(state.momenta)
        for part, system, system_id in self._parts(state):
            cos, sine_over, minus_sine = self._flow(system_id, stride_fs)
            x = system.sqrt_mass * (state.positions[part] - system.reference).reshape(-1)
            v = state.momenta[part].reshape(-1) / system.sqrt_mass
            new_x, new_v = cos @ x + sine_over @ v, minus_sine @ x + cos @ v
            positions[part] = system.reference + (new_x / system.sqrt_mass).reshape(-1, 3)
            momenta[part] = (new_v * system.sqrt_mass).reshape(-1, 3)
        return positions, momenta

    def energy_and_forces(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact ``V`` (S,) eV and forces ``-K u`` (A, 3) eV/Å."""
        energy = torch.empty(state.n_systems, dtype=torch.float64, device=state.device)
        forces = torch.empty_like(state.positions)
        for s, (part, system, _) in enumerate(self._parts(state)):
            u = (state.positions[part] - system.reference).reshape(-1)
            ku = system.stiffness @ u
            energy[s] = 0.5 * torch.dot(u, ku)
            forces[part] = -ku.reshape(-1, 3)
        return energy, forces

    def energy(self, state: MDState, edges: Edges | None) -> torch.Tensor:
        """Exact ``V`` (S,) eV."""
        return self.energy_and_forces(state, edges)[0]
