"""What the stepper calls: a long-stride propagator and a potential V(q), and their adapters.

A :class:`Propagator` maps a state to positions and momenta one stride later; a
:class:`Potential` gives each system's potential energy (for the energy filter) and forces (for
the velocity-Verlet fallback). Both say which neighbour cutoff they need (``None``: none); the
caller passes ``edges = (edge_index (2, E), edge_shifts (E, 3) Å)`` from a
:class:`~flashmd.md.neighbors.NeighborCache` at that cutoff, or ``None``.

Adapters: :class:`ModelPropagator` and :class:`ModelPotential` wrap a
:class:`~flashmd.models.FlashMDModel`; :class:`CalculatorPotential` wraps any ASE calculator.
:class:`~flashmd.md.harmonic.HarmonicCrystal` implements both exactly.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import ase
import numpy as np
import torch
from ase.calculators.calculator import BaseCalculator

from flashmd import keys
from flashmd.md.state import MDState
from flashmd.models.model import FlashMDModel

Edges = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class Propagator(Protocol):
    """A long-stride map ``(q, p) -> (q', p')``."""

    cutoff: float | None

    def check(self, state: MDState, stride_fs: float) -> None:
        """Raise ``ValueError`` if the propagator cannot advance ``state`` by ``stride_fs``."""
        ...

    def propagate(
        self, state: MDState, edges: Edges | None, stride_fs: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (A, 3) Å and momenta (A, 3) amu·Å/ASE-time (float64) one stride later."""
        ...


@runtime_checkable
class SolvedPropagator(Propagator, Protocol):
    """A propagator that solves an equation per stride and reports its iterations."""

    last_iterations: torch.Tensor
    """(S,) long, iterations each system of the latest :meth:`propagate` took."""


@runtime_checkable
class Potential(Protocol):
    """Potential energy per system and forces."""

    cutoff: float | None

    def energy(self, state: MDState, edges: Edges | None) -> torch.Tensor:
        """(S,) eV, float64."""
        ...

    def energy_and_forces(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) eV and (A, 3) eV/Å, float64."""
        ...


@runtime_checkable
class StressPotential(Potential, Protocol):
    """A potential that also gives the stress of fully periodic systems (for a barostat)."""

    def energy_and_stress(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) eV and (S, 3, 3) eV/Å³ stress ``(1/V) ∂U/∂ε`` (ASE sign), float64."""
        ...


def model_batch(
    model: FlashMDModel, state: MDState, edges: Edges, stride_fs: float | None = None
) -> dict[str, torch.Tensor]:
    """The model's batch dictionary for ``state`` in its dtype (see :mod:`flashmd.keys`)."""
    dtype = model.dtype
    edge_index, edge_shifts = edges
    batch = {
        keys.POSITIONS: state.positions.to(dtype),
        keys.MOMENTA: state.momenta.to(dtype),
        keys.MASSES: state.masses.to(dtype),
        keys.NUMBERS: state.numbers,
        keys.SYSTEM: state.system,
        keys.N_ATOMS: state.n_atoms,
        keys.CELL: state.cell.to(dtype),
        keys.PBC: state.pbc,
        keys.EDGE_INDEX: edge_index,
        keys.EDGE_SHIFTS: edge_shifts.to(dtype),
    }
    if stride_fs is not None:
        batch[keys.STRIDE] = torch.full(
            (state.n_systems,), float(stride_fs), dtype=dtype, device=state.device
        )
    return batch


class ModelPropagator:
    """The predictor of a :class:`FlashMDModel` (inputs checked once by :meth:`check`)."""

    def __init__(self, model: FlashMDModel) -> None:
        if model.predictor is None:
            raise ValueError("this model has no predictor; it can only compute energies")
        self.model = model
        self.cutoff: float | None = model.cutoff

    def check(self, state: MDState, stride_fs: float) -> None:
        self.model.check_species(state.numbers)
        self.model.check_strides([stride_fs])
        self.model.check_masses(state.numbers, state.masses)

    def propagate(
        self, state: MDState, edges: Edges | None, stride_fs: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert edges is not None and self.model.predictor is not None
        with torch.no_grad():
            positions, momenta = self.model.predictor(
                model_batch(self.model, state, edges, stride_fs)
            )
        return positions.to(torch.float64), momenta.to(torch.float64)


class ModelPotential:
    """The energy model of a :class:`FlashMDModel`."""

    def __init__(self, model: FlashMDModel) -> None:
        if model.energy_model is None:
            raise ValueError("this model has no energy model; it cannot supply V(q)")
        self.model = model
        self.cutoff: float | None = model.cutoff

    def _compute(
        self, state: MDState, edges: Edges | None, forces: bool, stress: bool = False
    ) -> dict:
        assert edges is not None and self.model.energy_model is not None
        batch = model_batch(self.model, state, edges)
        if forces or stress:
            return self.model.energy_model.compute(batch, forces=forces, stress=stress)
        with torch.no_grad():
            return self.model.energy_model.compute(batch, forces=False)

    def energy(self, state: MDState, edges: Edges | None) -> torch.Tensor:
        return self._compute(state, edges, False)[keys.ENERGY].to(torch.float64)

    def energy_and_forces(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._compute(state, edges, True)
        return out[keys.ENERGY].to(torch.float64), out[keys.FORCES].to(torch.float64)

    def energy_and_stress(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._compute(state, edges, False, stress=True)
        return out[keys.ENERGY].to(torch.float64), out[keys.STRESS].to(torch.float64)


class CalculatorPotential:
    """Any ASE calculator as V(q), one system at a time (a NumPy round trip per call)."""

    def __init__(self, calculator: BaseCalculator) -> None:
        self.calculator = calculator
        self.cutoff: float | None = None

    def _systems(self, state: MDState) -> list[ase.Atoms]:
        positions = state.positions.detach().cpu().numpy()
        numbers, cells = state.numbers.cpu().numpy(), state.cell.cpu().numpy()
        pbcs, offsets = state.pbc.cpu().numpy(), state.atom_offsets().tolist()
        out = []
        for s, (start, n) in enumerate(zip(offsets, state.n_atoms.tolist(), strict=True)):
            part = slice(start, start + n)
            atoms = ase.Atoms(numbers[part], positions[part], cell=cells[s], pbc=pbcs[s])
            atoms.calc = self.calculator
            out.append(atoms)
        return out

    def energy(self, state: MDState, edges: Edges | None) -> torch.Tensor:
        values = [a.get_potential_energy() for a in self._systems(state)]
        return torch.tensor(values, dtype=torch.float64, device=state.device)

    def energy_and_forces(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        systems = self._systems(state)
        energy = [a.get_potential_energy() for a in systems]
        forces = np.concatenate([a.get_forces() for a in systems])
        device = state.device
        return (
            torch.tensor(energy, dtype=torch.float64, device=device),
            torch.as_tensor(forces, dtype=torch.float64, device=device),
        )

    def energy_and_stress(
        self, state: MDState, edges: Edges | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        systems = self._systems(state)
        energy = [a.get_potential_energy() for a in systems]
        stress = np.stack([a.get_stress(voigt=False) for a in systems])
        device = state.device
        return (
            torch.tensor(energy, dtype=torch.float64, device=device),
            torch.as_tensor(stress, dtype=torch.float64, device=device),
        )
