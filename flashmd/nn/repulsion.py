"""A short-range repulsive wall for learned energies: ZBL screened nuclear repulsion.

A learned energy model knows only the distances its training data holds; closer than that it
may have no wall at all, and the energy filter, which rescales momenta to conserve ``K + V``, then
lets atoms through each other (the liquid-Al overlaps at 64 fs came from that). The
Ziegler-Biersack-Littmark universal potential is the standard physical prior for that range
(as in MACE's and NequIP's ZBL options)::

    V(r) = k Zi Zj / r · φ(r / a),   a = 0.46850 Å / (Zi^0.23 + Zj^0.23),   k = e²/4πε₀
    φ(x) = 0.18175 e^(-3.19980 x) + 0.50986 e^(-0.94229 x) + 0.28022 e^(-0.40290 x)
           + 0.02817 e^(-0.20162 x)

It is switched off smoothly, well inside the first neighbour shell where training data lives:
full below ``INNER`` times the pair's covalent-radius sum, zero beyond ``OUTER`` times it, with
the quintic smoothstep ``1 - 10 t³ + 15 t⁴ - 6 t⁵`` between (continuous forces and force
derivatives). For Cu-Cu that is 1.32 to 1.98 Å against a nearest-neighbour distance of 2.55 Å,
so the prior changes neither the energies nor the forces of any training structure and can be
added to a trained model. Energies in eV, distances in Å.
"""

from __future__ import annotations

import torch
from ase.data import covalent_radii

from flashmd.nn.scatter import scatter_sum

#: ``e²/4πε₀`` in eV·Å.
COULOMB_EV_A = 14.399645
#: ``0.8854 a₀`` in Å, the ZBL universal screening length's numerator.
SCREENING_A = 0.46850
#: ``(coefficient, exponent)`` pairs of the ZBL universal screening function.
ZBL_TERMS = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))
#: The wall is whole below this fraction of the pair's covalent-radius sum ...
INNER = 0.5
#: ... and gone beyond this fraction.
OUTER = 0.75


def zbl_energy(r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL pair energy (eV) at distances ``r`` (Å) of pairs with atomic numbers
    ``zi``, ``zj`` (all of one shape)."""
    a = SCREENING_A / (zi**0.23 + zj**0.23)
    x = r / a
    phi = sum(c * torch.exp(-b * x) for c, b in ZBL_TERMS)
    return COULOMB_EV_A * zi * zj / r * phi


def smooth_switch(t: torch.Tensor) -> torch.Tensor:
    """1 for ``t <= 0``, 0 for ``t >= 1``, the quintic smoothstep between."""
    t = t.clamp(0.0, 1.0)
    return 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t**2)


class ZBLRepulsion(torch.nn.Module):
    """Per-atom share of the switched ZBL repulsion (no trainable parameters).

    Args:
        species: atomic numbers, in the order of the species index the model uses.
    """

    numbers: torch.Tensor
    radii: torch.Tensor

    def __init__(self, species: tuple[int, ...]) -> None:
        super().__init__()
        numbers = torch.tensor(species, dtype=torch.float64)
        self.register_buffer("numbers", numbers, persistent=False)
        radii = torch.tensor([covalent_radii[z] for z in species], dtype=torch.float64)
        self.register_buffer("radii", radii, persistent=False)

    def forward(
        self, species_index: torch.Tensor, vectors: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom energies ``(A,)`` eV: half of each directed edge's pair energy goes to its
        receiver (every pair appears as two directed edges).

        Args:
            species_index: (A,) index of each atom's species. vectors: (E, 3) Å edge vectors.
            edge_index: (2, E) receiver and sender of each edge.
        """
        receiver, sender = edge_index
        dtype = vectors.dtype
        numbers, radii = self.numbers.to(dtype), self.radii.to(dtype)
        first, second = species_index[receiver], species_index[sender]
        reach = radii[first] + radii[second]
        r = vectors.norm(dim=1)
        t = (r / reach - INNER) / (OUTER - INNER)
        pair = zbl_energy(r, numbers[first], numbers[second])
        energy = torch.where(t < 1.0, 0.5 * smooth_switch(t) * pair, 0.0)
        return scatter_sum(energy, receiver, species_index.shape[0])
