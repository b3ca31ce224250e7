"""A learned kick: a per-atom vector field ``a(q)`` read in the energy model's own forward pass.

Hybrid Monte Carlo's proposal (:mod:`flashmd.md.leapfrog`) moves the atoms by velocity-Verlet
steps, kick ``p += (h/2) a(q)``, drift ``q += h M⁻¹ p``, kick. The chain stays exact for *any*
field ``a`` that depends on the positions only: each kick is a shear in ``p`` (its Jacobian is
one), so is each drift in ``q``, and kick-drift-kick followed by a momentum flip is an involution
(run it again and it retraces the path), so the proposal is volume-preserving and reversible and
the Metropolis ratio ``exp(-ΔH/kT)`` under the energy model's ``H = K + V`` is exact whatever
``a`` is. ``a`` decides only how often a proposal is accepted: ``ΔH`` grows with ``a + ∇V``.

So ``a`` need not be a gradient, and it need not cost one. ``V``'s forces cost a backward pass
through the network (2.5-3.3x the energy alone for 108 Cu atoms on one CPU thread); this field
reads what the energy model's forward pass already made
(:meth:`flashmd.models.energy.EnergyModel.atomic_energies_and_features`: each atom's invariant
features from its last layer and each edge's radial features) and adds no message passing::

    a_i = Σ_j [ g_0(r_ij) + Σ_k g_k(r_ij) (c_k(i) + c_k(j)) + Σ_l h_l(r_ij) d_l(i) d_l(j) ] r̂_ij
          + Σ_j Σ_m w_m(r_ij) u_m(j) + u_0(i)

with radial functions ``g_k``, ``h_l``, ``w_m`` (an MLP of the edge's radial features, zero at
the cutoff), per-atom invariants ``c_k``, ``d_l`` (a linear map of the atom's last-layer
features) and per-atom vectors ``u_m`` (a linear map of the vector features entering the last
layer). The first line is the form an embedded-atom potential's forces have (``g_0 = φ'``, and
``(c(i) + c(j)) g`` is ``(F'(ρ_i) + F'(ρ_j)) ρ'``), with products ``d(i) d(j)`` for pair terms
of unlike atoms that are not the mean of the like ones'; the second carries the non-central part
that the network's angular features give its forces. It is exactly E(3) equivariant (``r̂_ij``
and ``u`` rotate with the atoms, distances and invariants do not). Trained to regress the
energy model's forces (:mod:`flashmd.train.kick`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from e3nn import o3

from flashmd import keys
from flashmd.data.graph import edge_vectors
from flashmd.models.config import BackboneConfig
from flashmd.models.energy import EnergyFeatures, EnergyModel
from flashmd.nn import scatter_sum
from flashmd.nn.irreps import layer_inputs

#: The fields a kick config shares with the energy model it reads.
BACKBONE_FIELDS = tuple(f.name for f in dataclasses.fields(BackboneConfig))


@dataclass(frozen=True, kw_only=True)
class KickConfig(BackboneConfig):
    """Hyperparameters of :class:`KickField`. The backbone fields must be the energy model's
    (the field reads its features); the rest size the kick's own maps."""

    kick_basis: int = 16
    """Number of per-atom invariants ``c_k`` (and radial functions ``g_k`` beside ``g_0``)."""
    kick_hidden: int = 64
    """Width of the hidden layer of the radial MLP giving the ``g_k`` and ``w_m``."""
    kick_vectors: int = 0
    """Number of vector features ``u_m`` each neighbour passes on (0: none)."""
    kick_products: int = 16
    """Number of per-atom invariants ``d_l`` whose products ``d_l(i) d_l(j)`` weight radial
    functions ``h_l`` (pair terms that are not the mean of the like pairs', as an alloy's)."""
    force_scale: float = 1.0
    """Scale in eV/Å of the kick (the maps' unit output)."""
    step_fs: float = 0.0
    """The leapfrog step in fs the kick was tuned for on the chain's energy error
    (:func:`flashmd.train.kick.tune_kick`); 0: fitted to the forces only."""
    splitting: str = "verlet"
    """The splitting of that step the kick was tuned for (:data:`flashmd.md.splitting.SPLITTINGS`:
    velocity Verlet or the two-stage splitting)."""

    kind: ClassVar[str] = "kick"
    added_fields: ClassVar[frozenset[str]] = BackboneConfig.added_fields | {
        "step_fs",
        "splitting",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kick_basis < 1 or self.kick_hidden < 1:
            raise ValueError("kick_basis and kick_hidden must be >= 1")
        if self.kick_vectors < 0 or self.kick_products < 0:
            raise ValueError("kick_vectors and kick_products must be >= 0")
        if not self.force_scale > 0 or self.step_fs < 0:
            raise ValueError("force_scale must be positive and step_fs >= 0")

    @classmethod
    def for_energy_model(cls, energy: BackboneConfig, **fields: Any) -> KickConfig:
        """A kick config sharing ``energy``'s backbone fields, with ``fields`` (the kick's own)."""
        return cls(**{name: getattr(energy, name) for name in BACKBONE_FIELDS}, **fields)

    def backbone_matches(self, energy: BackboneConfig) -> bool:
        """True if ``energy`` has this config's backbone fields (the field can read it)."""
        return all(getattr(self, name) == getattr(energy, name) for name in BACKBONE_FIELDS)


class KickField(torch.nn.Module):
    """The kick ``a(q)`` ``(A, 3)`` in eV/Å from what the energy model computed (the form of the
    module docstring)."""

    def __init__(self, config: KickConfig) -> None:
        super().__init__()
        self.config = config
        irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        hidden = layer_inputs(
            f"{config.n_scalars}x0e", config.irreps_hidden, config.n_layers, irreps_sh
        )[-1]
        self.invariants = torch.nn.Linear(
            config.n_scalars, config.kick_basis + config.kick_products
        )
        n_radial_out = 1 + config.kick_basis + config.kick_products + config.kick_vectors
        self.radial = torch.nn.Sequential(  # bias-free: zero radial features give zero
            torch.nn.Linear(config.n_radial, config.kick_hidden, bias=False),
            torch.nn.SiLU(),
            torch.nn.Linear(config.kick_hidden, n_radial_out, bias=False),
        )
        self.own = o3.Linear(hidden, "1x1o")
        self.neighbours = (
            o3.Linear(hidden, f"{config.kick_vectors}x1o") if config.kick_vectors else None
        )

    def forward(
        self, features: EnergyFeatures, vectors: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        """The kick ``(A, 3)`` eV/Å.

        Args:
            features: what the energy model computed on its way to ``V``.
            vectors: ``(E, 3)`` edge vectors ``r_j - r_i`` in Å.
            edge_index: ``(2, E)`` long, (receiver i, sender j).
        """
        receiver, sender = edge_index
        n_atoms, k = features.features.shape[0], self.config.kick_basis
        kp = k + self.config.kick_products
        c = self.invariants(features.features)  # c_k then d_l
        g = self.radial(features.edge_radial)  # g_0, g_k, h_l, w_m
        strength = g[:, 0] + (g[:, 1 : k + 1] * (c[receiver, :k] + c[sender, :k])).sum(1)
        strength = strength + (g[:, k + 1 : kp + 1] * c[receiver, k:] * c[sender, k:]).sum(1)
        unit = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
        messages = strength[:, None] * unit
        if self.neighbours is not None:
            neighbour_vectors = self.neighbours(features.hidden).reshape(n_atoms, -1, 3)
            messages = messages + (g[:, kp + 1 :, None] * neighbour_vectors[sender]).sum(1)
        kick = scatter_sum(messages, receiver, n_atoms) + self.own(features.hidden)
        return self.config.force_scale * kick


def energy_and_kick(
    energy_model: EnergyModel, kick: KickField, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The energy model's ``V`` ``(S,)`` eV and the kick ``(A, 3)`` eV/Å in one forward pass.

    Reads positions, numbers, system, n_atoms, edge_index and edge_shifts. Gradients flow to the
    kick's parameters when grad mode is on (training); the energy model is only read.
    """
    vectors = edge_vectors(batch)
    energies, features = energy_model.atomic_energies_and_features(batch, vectors)
    n_systems = batch[keys.N_ATOMS].shape[0]
    energy = scatter_sum(energies, batch[keys.SYSTEM], n_systems)
    return energy, kick(features, vectors, batch[keys.EDGE_INDEX])
