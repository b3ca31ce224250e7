"""Gated nonlinearity built from the irreps it should produce."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import Gate


class GatedNonlinearity(torch.nn.Module):
    """Equivariant nonlinearity producing ``irreps_out``.

    Scalars ``0e`` go through SiLU and ``0o`` through tanh; every ``l > 0`` irrep is multiplied
    by a sigmoid of its own extra ``0e`` gate scalar. The input layout :attr:`irreps_in` is
    e3nn's (sorted and simplified ``scalars + gates + gated``); the output is exactly
    ``irreps_out``.

    Args:
        irreps_out: wanted output irreps; scalars must come before the ``l > 0`` irreps.
    """

    def __init__(self, irreps_out: str | o3.Irreps) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
        if scalars + gated != irreps_out:
            raise ValueError(f"irreps_out {irreps_out} must list all scalars before l > 0 irreps")
        if scalars.num_irreps == 0:
            raise ValueError(f"irreps_out {irreps_out} has no scalars")
        acts = {1: torch.nn.functional.silu, -1: torch.tanh}
        gates = o3.Irreps([(gated.num_irreps, (0, 1))]) if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(
            scalars,
            [acts[ir.p] for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        if self.gate.irreps_out != irreps_out:
            raise ValueError(f"gate produces {self.gate.irreps_out}, wanted {irreps_out}")
        self.irreps_in: o3.Irreps = self.gate.irreps_in
        self.irreps_out: o3.Irreps = self.gate.irreps_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, irreps_in.dim)``. Returns ``(N, irreps_out.dim)``."""
        return self.gate(x)
