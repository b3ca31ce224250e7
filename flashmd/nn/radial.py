"""Radial basis of edge lengths with a smooth cutoff envelope."""

from __future__ import annotations

import math

import torch


class BesselBasis(torch.nn.Module):
    """Bessel radial basis ``sqrt(2/rc) sin(n π r / rc) / r`` for ``n = 1..n_basis``.

    Args:
        cutoff: cutoff radius ``rc`` in Å.
        n_basis: number of basis functions.
    """

    frequencies: torch.Tensor

    def __init__(self, cutoff: float, n_basis: int) -> None:
        super().__init__()
        if cutoff <= 0 or n_basis < 1:
            raise ValueError(f"need cutoff > 0 and n_basis >= 1, got {cutoff}, {n_basis}")
        self.cutoff = float(cutoff)
        self.n_basis = int(n_basis)
        frequencies = torch.arange(1, n_basis + 1, dtype=torch.get_default_dtype()) * math.pi
        self.register_buffer("frequencies", frequencies / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r``: ``(E,)`` lengths in Å (> 0). Returns ``(E, n_basis)`` in 1/Å^(3/2)."""
        prefactor = math.sqrt(2.0 / self.cutoff)
        return prefactor * torch.sin(r[:, None] * self.frequencies) / r[:, None]


class PolynomialCutoff(torch.nn.Module):
    """Smooth envelope ``f(r)`` with ``f(0) = 1`` that vanishes with ``p - 1`` derivatives at rc.

    ``f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x = r/rc < 1`` and
    zero beyond (Klicpera et al., DimeNet).

    Args:
        cutoff: cutoff radius ``rc`` in Å.
        p: polynomial order (>= 2).
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        if cutoff <= 0 or p < 2:
            raise ValueError(f"need cutoff > 0 and p >= 2, got {cutoff}, {p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r``: ``(E,)`` lengths in Å. Returns ``(E,)`` dimensionless envelope in ``[0, 1]``."""
        p = self.p
        x = r / self.cutoff
        envelope = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x**p
            + p * (p + 2) * x ** (p + 1)
            - 0.5 * p * (p + 1) * x ** (p + 2)
        )
        return envelope * (x < 1.0)


class RadialEmbedding(torch.nn.Module):
    """Bessel basis times the smooth cutoff: features that go smoothly to zero at the cutoff.

    Args:
        cutoff: cutoff radius in Å.
        n_basis: number of Bessel functions.
        p: order of the polynomial cutoff.
    """

    def __init__(self, cutoff: float, n_basis: int, p: int = 6) -> None:
        super().__init__()
        self.basis = BesselBasis(cutoff, n_basis)
        self.envelope = PolynomialCutoff(cutoff, p)
        self.n_basis = self.basis.n_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r``: ``(E,)`` lengths in Å. Returns ``(E, n_basis)`` features (zero for r >= rc)."""
        return self.basis(r) * self.envelope(r)[:, None]
