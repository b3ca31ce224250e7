"""A stack of interaction blocks over a neighbour graph: the trunk shared by all models."""

from __future__ import annotations

import torch
from e3nn import o3

from flashmd.nn.interaction import InteractionBlock
from flashmd.nn.irreps import layer_inputs, reachable_irreps
from flashmd.nn.radial import RadialEmbedding


class Backbone(torch.nn.Module):
    """Edge features (spherical harmonics and cutoff radial basis) and ``n_layers`` interactions.

    Only relative edge vectors enter, so the output is invariant to translations; it is
    equivariant to rotations, reflections and permutations of the atoms. The last layer computes
    only ``irreps_out`` (what the readout needs), which saves most of its tensor-product paths.

    Args:
        irreps_in: irreps of the input node features.
        irreps_hidden: irreps between layers (scalars first); a layer whose input cannot produce
            some of them (the first one, from scalars only) outputs the reachable part.
        irreps_out: irreps of the last layer's output (scalars first).
        n_layers: number of interaction blocks (>= 1).
        lmax: largest spherical-harmonic degree of the edge directions.
        cutoff: cutoff radius in Å.
        n_radial: number of Bessel functions.
        radial_hidden: width of the radial MLPs.
        avg_num_neighbors: typical neighbour count, to normalise aggregated messages.
        cutoff_p: order of the polynomial cutoff envelope.
        receiver_messages: messages read both ends of each edge (see InteractionBlock).
    """

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        irreps_hidden: str | o3.Irreps,
        irreps_out: str | o3.Irreps,
        n_layers: int,
        lmax: int,
        cutoff: float,
        n_radial: int,
        radial_hidden: int,
        avg_num_neighbors: float,
        cutoff_p: int = 6,
        receiver_messages: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        # a module, not o3.spherical_harmonics(irreps, ...): torch.compile cannot guard on the
        # Irreps argument the function form reads at every call
        self.spherical_harmonics = o3.SphericalHarmonics(
            self.irreps_sh, normalize=True, normalization="component"
        )
        self.radial = RadialEmbedding(cutoff, n_radial, cutoff_p)
        irreps = layer_inputs(self.irreps_in, irreps_hidden, n_layers, self.irreps_sh)
        if reachable_irreps(self.irreps_out, irreps[-1], self.irreps_sh) != self.irreps_out:
            raise ValueError(
                f"the last of {n_layers} layer(s) gets {irreps[-1]} and cannot produce "
                f"{self.irreps_out}"
            )
        irreps.append(self.irreps_out)
        self.layers = torch.nn.ModuleList(
            InteractionBlock(
                irreps[k],
                irreps[k + 1],
                self.irreps_sh,
                n_radial,
                radial_hidden,
                avg_num_neighbors,
                receiver_messages=receiver_messages,
            )
            for k in range(n_layers)
        )

    def hidden(
        self, x: torch.Tensor, edge_vectors: torch.Tensor, edge_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every interaction but the last, and the edge features every layer reads (a head
        beside the model's readout reuses them).

        Args: as :meth:`forward`.

        Returns:
            ``(A, layers[-1].irreps_in.dim)`` node features entering the last layer, the edges'
            ``(E, irreps_sh.dim)`` spherical harmonics and ``(E, n_radial)`` radial features.
        """
        edge_sh = self.spherical_harmonics(edge_vectors)
        edge_radial = self.radial(torch.linalg.vector_norm(edge_vectors, dim=-1))
        for layer in self.layers[:-1]:
            x = layer(x, edge_sh, edge_radial, edge_index)
        return x, edge_sh, edge_radial

    def forward(
        self, x: torch.Tensor, edge_vectors: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        """Run the interactions.

        Args:
            x: ``(A, irreps_in.dim)`` input node features.
            edge_vectors: ``(E, 3)`` in Å, ``r_ij = r_j - r_i + shift`` (non-zero).
            edge_index: ``(2, E)`` long, (receiver i, sender j).

        Returns:
            ``(A, irreps_out.dim)`` node features.
        """
        x, edge_sh, edge_radial = self.hidden(x, edge_vectors, edge_index)
        return self.layers[-1](x, edge_sh, edge_radial, edge_index)
