"""Invariant energy model (an equivariant MLIP): energies, forces and stress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

import torch
from e3nn import o3

from flashmd import keys
from flashmd.models.config import BackboneConfig
from flashmd.nn import ScalarReadout, SpeciesEmbedding, scatter_sum
from flashmd.nn.repulsion import ZBLRepulsion

#: Output key of the stress, ``(S, 3, 3)`` in eV/Å³ (ASE convention ``σ = (1/V) ∂E/∂ε``).


@dataclass(frozen=True, kw_only=True)
class EnergyConfig(BackboneConfig):
    """Hyperparameters of :class:`EnergyModel` (backbone fields documented in BackboneConfig)."""

    readout_hidden: int = 16
    """Width of the hidden layer of the per-atom energy readout."""
    energy_scale: float = 1.0
    """Scale in eV of the network's per-atom energy (before the per-species shift is added)."""
    repulsion: str = "none"
    """A fixed short-range wall added to the learned energy: ``"zbl"`` (screened nuclear
    repulsion, switched off inside the first neighbour shell; :mod:`flashmd.nn.repulsion`) or
    ``"none"``; none in checkpoints written before this field existed."""

    kind: ClassVar[str] = "energy"
    added_fields: ClassVar[frozenset[str]] = BackboneConfig.added_fields | {"repulsion"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.readout_hidden < 1 or not self.energy_scale > 0:
            raise ValueError("readout_hidden must be >= 1 and energy_scale positive")
        if self.repulsion not in ("none", "zbl"):
            raise ValueError(f"repulsion must be 'none' or 'zbl', got {self.repulsion!r}")


class EnergyFeatures(NamedTuple):
    """What the energy model computes on its way to the energy, for heads that share it."""

    hidden: torch.Tensor
    """``(A, backbone.layers[-1].irreps_in.dim)`` node features entering the last layer."""
    features: torch.Tensor
    """``(A, n_scalars)`` the last layer's invariant node features (the readout's input)."""
    edge_radial: torch.Tensor
    """``(E, n_radial)`` the edges' radial features, zero at and beyond the cutoff."""


class EnergyModel(torch.nn.Module):
    """Potential energy as a sum of per-atom energies ``E = Σ_i (scale ε_i + shift[Z_i] + r_i)``.

    ``ε_i`` is an invariant readout of equivariant features of the neighbourhood; ``shift`` is a
    learnable reference energy per species (eV, zero at start). Forces are ``-∂E/∂positions``
    by autograd; the stress of fully periodic systems comes from a symmetric strain of the edges.
    ``r_i`` is the atom's share of the fixed repulsive wall (``config.repulsion``; 0 without).
    """

    def __init__(self, config: EnergyConfig) -> None:
        super().__init__()
        self.config = config
        self.species_embedding = SpeciesEmbedding(config.species, config.n_scalars)
        self.backbone = config.backbone(
            o3.Irreps(f"{config.n_scalars}x0e"), o3.Irreps(f"{config.n_scalars}x0e")
        )
        self.readout = ScalarReadout(self.backbone.irreps_out, config.readout_hidden)
        self.energy_shift = torch.nn.Parameter(torch.zeros(len(config.species)))
        self.repulsion = ZBLRepulsion(config.species) if config.repulsion == "zbl" else None

    def atomic_energies(
        self, batch: dict[str, torch.Tensor], vectors: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom energies ``(A,)`` in eV given the edge vectors ``(E, 3)`` in Å."""
        return self.atomic_energies_and_features(batch, vectors)[0]

    def atomic_energies_and_features(
        self, batch: dict[str, torch.Tensor], vectors: torch.Tensor
    ) -> tuple[torch.Tensor, EnergyFeatures]:
        """Per-atom energies ``(A,)`` eV and what the network computed on the way (see
        :class:`EnergyFeatures`), for a head that shares the trunk (the learned kick of
        :mod:`flashmd.models.kick`)."""
        numbers, edge_index = batch[keys.NUMBERS], batch[keys.EDGE_INDEX]
        x = self.species_embedding(numbers)
        hidden, edge_sh, edge_radial = self.backbone.hidden(x, vectors, edge_index)
        features = self.backbone.layers[-1](hidden, edge_sh, edge_radial, edge_index)
        index = self.species_embedding.species_index(numbers)
        energies = self.config.energy_scale * self.readout(features) + self.energy_shift[index]
        if self.repulsion is not None:
            energies = energies + self.repulsion(index, vectors, edge_index)
        return energies, EnergyFeatures(hidden, features, edge_radial)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Potential energy ``(S,)`` in eV of every system of the batch."""
        return self.compute(batch, forces=False)[keys.ENERGY]

    def compute(
        self,
        batch: dict[str, torch.Tensor],
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
        nonperiodic_stress: Literal["raise", "nan"] = "raise",
    ) -> dict[str, torch.Tensor]:
        """Energy ``(S,)`` eV, and optionally forces ``(A, 3)`` eV/Å and stress ``(S, 3, 3)`` eV/Å³.

        Args:
            batch: reads positions, numbers, system, n_atoms, edge_index, edge_shifts (and cell,
                pbc for the stress).
            forces: compute ``-∂E/∂positions``.
            stress: compute ``(1/V) ∂E/∂ε`` (ASE sign); every system must be fully periodic.
            create_graph: keep the graph of the derivatives (for training on forces); otherwise
                returned tensors are detached when derivatives were taken.
            nonperiodic_stress: with ``"nan"``, systems that are not fully periodic get a NaN
                stress instead of an error (training batches that mix slabs and bulk).
        """
        keys.check_batch(
            batch,
            (
                keys.POSITIONS,
                keys.NUMBERS,
                keys.SYSTEM,
                keys.N_ATOMS,
                keys.EDGE_INDEX,
                keys.EDGE_SHIFTS,
            ),
        )
        n_systems = batch[keys.N_ATOMS].shape[0]
        positions = batch[keys.POSITIONS]
        if forces and not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        receiver, sender = batch[keys.EDGE_INDEX]
        vectors = positions[sender] - positions[receiver] + batch[keys.EDGE_SHIFTS]
        if stress:
            if nonperiodic_stress == "raise" and not bool(batch[keys.PBC].all()):
                raise ValueError("stress needs fully periodic systems; some have pbc=False")
            strain = torch.zeros(
                (n_systems, 3, 3), dtype=vectors.dtype, device=vectors.device, requires_grad=True
            )
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            edge_system = batch[keys.SYSTEM][receiver]
            vectors = vectors + torch.einsum("ea,eab->eb", vectors, symmetric[edge_system])
        energy = scatter_sum(self.atomic_energies(batch, vectors), batch[keys.SYSTEM], n_systems)
        out = {keys.ENERGY: energy}
        inputs = ([positions] if forces else []) + ([strain] if stress else [])
        if not inputs:
            return out
        grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
        if forces:
            out[keys.FORCES] = -grads[0]
        if stress:
            volume = torch.abs(torch.linalg.det(batch[keys.CELL]))
            out[keys.STRESS] = grads[-1] / volume[:, None, None]
            periodic = batch[keys.PBC].all(dim=1)
            if not bool(periodic.all()):
                out[keys.STRESS] = torch.where(periodic[:, None, None], out[keys.STRESS], torch.nan)
        if not create_graph:
            out = {name: value.detach() for name, value in out.items()}
        return out
