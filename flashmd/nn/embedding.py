"""Embeddings of per-atom species and of per-atom scalars (such as the stride)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Largest atomic number accepted (size of the species lookup table minus one).
MAX_ATOMIC_NUMBER = 118


class SpeciesEmbedding(torch.nn.Module):
    """Learned feature vector per chemical species.

    Args:
        species: atomic numbers the model knows, in a fixed order (the index of each species).
        n_features: size of the embedding.
    """

    lookup: torch.Tensor

    def __init__(self, species: Sequence[int], n_features: int) -> None:
        super().__init__()
        species = [int(z) for z in species]
        if not species or len(set(species)) != len(species):
            raise ValueError(f"species must be a non-empty list of distinct numbers, got {species}")
        if min(species) < 1 or max(species) > MAX_ATOMIC_NUMBER:
            raise ValueError(f"atomic numbers must be in 1..{MAX_ATOMIC_NUMBER}, got {species}")
        self.species = tuple(species)
        lookup = torch.full((MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("lookup", lookup, persistent=False)
        self.embedding = torch.nn.Embedding(len(species), n_features)

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """``numbers``: ``(A,)`` long atomic numbers. Returns ``(A,)`` long index into species.

        Unknown species give -1; callers validate numbers before (see ``FlashMDModel``).
        """
        return self.lookup[numbers]

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        """``numbers``: ``(A,)`` long atomic numbers. Returns ``(A, n_features)``."""
        return self.embedding(self.species_index(numbers))


class GaussianEmbedding(torch.nn.Module):
    """Gaussian features ``exp(-((x - c_k) / w)^2 / 2)`` of a scalar on evenly spaced centres.

    Args:
        start: first centre (unit of ``x``).
        stop: last centre (unit of ``x``).
        n_basis: number of centres (>= 2); the width ``w`` is the spacing of the centres.
    """

    centres: torch.Tensor

    def __init__(self, start: float, stop: float, n_basis: int) -> None:
        super().__init__()
        if n_basis < 2 or stop <= start:
            raise ValueError(f"need n_basis >= 2 and stop > start, got {n_basis}, {start}, {stop}")
        centres = torch.linspace(start, stop, n_basis, dtype=torch.get_default_dtype())
        self.register_buffer("centres", centres)
        self.width = float(stop - start) / (n_basis - 1)
        self.n_basis = int(n_basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N,)`` scalars. Returns ``(N, n_basis)`` dimensionless features."""
        return torch.exp(-0.5 * ((x[:, None] - self.centres) / self.width) ** 2)
