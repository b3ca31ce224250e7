"""Readouts from node features to per-atom outputs."""

from __future__ import annotations

import torch
from e3nn import o3

from flashmd.nn.irreps import check_irreps


class VectorReadout(torch.nn.Module):
    """Equivariant linear map to ``n_vectors`` polar vectors (``1o``) per atom.

    Args:
        irreps_in: irreps of the node features; must contain ``1o``.
        n_vectors: number of vectors per atom.
    """

    def __init__(self, irreps_in: str | o3.Irreps, n_vectors: int) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        check_irreps("VectorReadout input", self.irreps_in, "1o")
        self.n_vectors = int(n_vectors)
        self.linear = o3.Linear(self.irreps_in, o3.Irreps(f"{n_vectors}x1o"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(A, irreps_in.dim)``. Returns ``(A, n_vectors, 3)``."""
        return self.linear(x).reshape(x.shape[0], self.n_vectors, 3)


class ScalarReadout(torch.nn.Module):
    """Invariant MLP from the ``0e`` part of the node features to one scalar per atom.

    Args:
        irreps_in: irreps of the node features; must contain ``0e``.
        n_hidden: width of the hidden layer.
    """

    def __init__(self, irreps_in: str | o3.Irreps, n_hidden: int) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        check_irreps("ScalarReadout input", self.irreps_in, "0e")
        self.linear = o3.Linear(self.irreps_in, o3.Irreps(f"{n_hidden}x0e"))
        self.output = torch.nn.Linear(n_hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(A, irreps_in.dim)``. Returns ``(A,)`` (unit set by the caller's scaling)."""
        return self.output(torch.nn.functional.silu(self.linear(x))).squeeze(-1)
