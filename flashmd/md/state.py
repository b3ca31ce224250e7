"""The batched MD state: many systems of any sizes advancing together, on one device.

Shapes use ``A`` (atoms of all systems) and ``S`` (systems). Float fields are float64 whatever
the model's dtype: integration bookkeeping (energies conserved to 1e-5 eV/atom over thousands of
strides) needs it, and adapters cast to the model's dtype for its forward pass.

Per atom: ``positions`` (A, 3) Å, unwrapped; ``momenta`` (A, 3) amu·Å/ASE-time; ``masses`` (A,)
amu; ``numbers`` (A,) long; ``system`` (A,) long, index of each atom's system in ``0..S-1``;
``fixed`` (A,) bool, atoms held in place (ASE ``FixAtoms``).

Per system: ``cell`` (S, 3, 3) Å (rows); ``pbc`` (S, 3) bool; ``n_atoms`` (S,) long;
``ids`` (S,) long, a persistent id of each system (kept when a subset is selected, used by
propagators that hold per-system data); ``target_energy`` (S,) eV, the total energy the energy
filter restores (NaN until set).

Shared: ``generator``, the ``torch.Generator`` of all thermostat noise (on the state's device).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ase
import ase.constraints
import numpy as np
import torch

from flashmd.nn.scatter import scatter_sum


@dataclass(frozen=True)
class MDState:
    """A batch of systems at one instant (see the module docstring for every field's shape)."""

    positions: torch.Tensor
    momenta: torch.Tensor
    masses: torch.Tensor
    numbers: torch.Tensor
    system: torch.Tensor
    fixed: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    n_atoms: torch.Tensor
    ids: torch.Tensor
    target_energy: torch.Tensor
    generator: torch.Generator

    @property
    def n_systems(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def open(self) -> torch.Tensor:
        """(S,) bool: systems periodic in no direction (isolated clusters)."""
        return ~self.pbc.any(dim=1)

    @property
    def has_fixed(self) -> torch.Tensor:
        """(S,) bool: systems with at least one fixed atom."""
        return scatter_sum(self.fixed.to(self.masses.dtype), self.system, self.n_systems) > 0

    def replace(self, **changes: Any) -> MDState:
        """A new state with some fields replaced (tensors are shared, not copied)."""
        return dataclasses.replace(self, **changes)

    def kinetic_energy(self, momenta: torch.Tensor | None = None) -> torch.Tensor:
        """(S,) eV kinetic energy ``Σ p²/2m`` of ``momenta`` (default: the state's)."""
        p = self.momenta if momenta is None else momenta
        per_atom = (p * p).sum(dim=1) / (2.0 * self.masses)
        return scatter_sum(per_atom, self.system, self.n_systems)

    def atom_offsets(self) -> torch.Tensor:
        """(S,) long index of each system's first atom."""
        return torch.cumsum(self.n_atoms, 0) - self.n_atoms

    def select(self, mask: torch.Tensor) -> MDState:
        """The systems where ``mask`` (S,) bool is true, as a state of their own.

        ``ids`` are kept, ``system`` is renumbered; the generator is shared.
        """
        atom_mask = mask[self.system]
        new_index = torch.cumsum(mask.long(), 0) - 1
        return MDState(
            positions=self.positions[atom_mask],
            momenta=self.momenta[atom_mask],
            masses=self.masses[atom_mask],
            numbers=self.numbers[atom_mask],
            system=new_index[self.system[atom_mask]],
            fixed=self.fixed[atom_mask],
            cell=self.cell[mask],
            pbc=self.pbc[mask],
            n_atoms=self.n_atoms[mask],
            ids=self.ids[mask],
            target_energy=self.target_energy[mask],
            generator=self.generator,
        )


def state_from_atoms(
    atoms: ase.Atoms | Sequence[ase.Atoms],
    device: str | torch.device = "cpu",
    seed: int = 0,
    ids: Sequence[int] | None = None,
) -> MDState:
    """Batch ``ase.Atoms`` into a state (momenta from ``get_momenta``, ``FixAtoms`` honoured).

    Args:
        atoms: one system or several (any sizes and periodicities).
        device: where the tensors and the noise generator live.
        seed: seed of the noise generator.
        ids: persistent system ids (default ``0..S-1``).

    Raises:
        ValueError: an empty system, or a number of ids that differs from the number of systems.
    """
    systems = [atoms] if isinstance(atoms, ase.Atoms) else list(atoms)
    if not systems or any(len(a) == 0 for a in systems):
        raise ValueError("need at least one system and no empty system")
    ids = list(range(len(systems))) if ids is None else list(ids)
    if len(ids) != len(systems):
        raise ValueError(f"got {len(ids)} ids for {len(systems)} systems")
    counts = [len(a) for a in systems]
    fixed = np.zeros(sum(counts), dtype=bool)
    start = 0
    for a in systems:
        for constraint in a.constraints:
            if isinstance(constraint, ase.constraints.FixAtoms):
                fixed[start + np.asarray(constraint.index, dtype=int)] = True
        start += len(a)

    def cat(values: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.concatenate(values), dtype=dtype, device=device)

    f64 = torch.float64
    generator = torch.Generator(device=torch.device(device)).manual_seed(int(seed))
    return MDState(
        positions=cat([a.positions for a in systems], f64),
        momenta=cat([a.get_momenta() for a in systems], f64),
        masses=cat([a.get_masses() for a in systems], f64),
        numbers=cat([a.numbers for a in systems], torch.long),
        system=cat([np.full(n, s) for s, n in enumerate(counts)], torch.long),
        fixed=torch.as_tensor(fixed, device=device),
        cell=cat([np.asarray(a.cell[:])[None] for a in systems], f64),
        pbc=cat([np.asarray(a.pbc)[None] for a in systems], torch.bool),
        n_atoms=torch.tensor(counts, dtype=torch.long, device=device),
        ids=torch.tensor(ids, dtype=torch.long, device=device),
        target_energy=torch.full((len(systems),), float("nan"), dtype=f64, device=device),
        generator=generator,
    )


def state_to_atoms(state: MDState) -> list[ase.Atoms]:
    """One ``ase.Atoms`` per system: positions, momenta, masses, cell, pbc (no calculator)."""
    arrays = {
        name: getattr(state, name).detach().cpu().numpy()
        for name in ("positions", "momenta", "masses", "numbers", "cell", "pbc", "fixed")
    }
    out = []
    start = 0
    for s, n in enumerate(state.n_atoms.tolist()):
        part = slice(start, start + n)
        atoms = ase.Atoms(
            numbers=arrays["numbers"][part],
            positions=arrays["positions"][part],
            cell=arrays["cell"][s],
            pbc=arrays["pbc"][s],
            masses=arrays["masses"][part],
        )
        atoms.set_momenta(arrays["momenta"][part])
        if arrays["fixed"][part].any():
            atoms.set_constraint(ase.constraints.FixAtoms(mask=arrays["fixed"][part]))
        out.append(atoms)
        start += n
    return out
