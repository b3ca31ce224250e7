"""Constraint layer: exact conservation of total momentum and uniform centre-of-mass motion.

Without external forces the total momentum ``P`` of a system is constant and its centre of mass
moves by ``S P / M`` over a stride ``S``. The network does not know this exactly, so its outputs
are projected: the change of total momentum is removed in proportion to mass (a uniform velocity
shift) and the centre-of-mass displacement is set exactly by a uniform translation. The
projection is idempotent and equivariant to rotations, reflections and permutations.
"""

from __future__ import annotations

import torch

from flashmd.nn.scatter import scatter_sum
from flashmd.units import FS


def apply_constraints(
    displacements: torch.Tensor,
    new_momenta: torch.Tensor,
    momenta: torch.Tensor,
    masses: torch.Tensor,
    system: torch.Tensor,
    stride_fs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a predicted step onto conserved total momentum and exact centre-of-mass motion.

    Args:
        displacements: ``(A, 3)`` predicted ``q(t+S) - q(t)`` in Å.
        new_momenta: ``(A, 3)`` predicted ``p(t+S)`` in amu·Å/ASE-time.
        momenta: ``(A, 3)`` ``p(t)`` in amu·Å/ASE-time.
        masses: ``(A,)`` in amu.
        system: ``(A,)`` long, system index of each atom.
        stride_fs: ``(S,)`` stride of each system in fs.

    Returns:
        ``(A, 3)`` displacements in Å and ``(A, 3)`` momenta, such that per system
        ``Σ p(t+S) = Σ p(t)`` and ``Σ m Δq / M = S Σ p(t) / M``.
    """
    n_systems = stride_fs.shape[0]
    total_mass = scatter_sum(masses, system, n_systems)[:, None]
    total_momentum = scatter_sum(momenta, system, n_systems)
    momentum_error = scatter_sum(new_momenta, system, n_systems) - total_momentum
    new_momenta = new_momenta - masses[:, None] * (momentum_error / total_mass)[system]
    com_target = (stride_fs * FS)[:, None] * total_momentum / total_mass
    com_shift = scatter_sum(masses[:, None] * displacements, system, n_systems) / total_mass
    displacements = displacements + (com_target - com_shift)[system]
    return displacements, new_momenta
