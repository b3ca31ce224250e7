"""Time-reversal error of a long-stride model.

Exact Hamiltonian dynamics is time reversible: one stride forward, momenta flipped, one stride
forward again and momenta flipped back returns the starting state. A learned map does so only
approximately; the distance to the start measures that error (a model-only check, no reference).

Import it from here (``flashmd.analysis.time_reversal``): unlike the rest of ``flashmd.analysis``
it needs torch and a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np
import torch


@dataclass(frozen=True)
class TimeReversalResult:
    """Errors per system after forward, flip, forward, flip.

    Attributes:
        position_rmse: (n_systems,) root-mean-square distance to the starting positions, Å.
        momentum_rmse: (n_systems,) root-mean-square difference to the starting momenta,
            amu·Å/ASE-time.
        stride_fs: the stride used, fs.
    """

    position_rmse: np.ndarray
    momentum_rmse: np.ndarray
    stride_fs: float


def time_reversal_error(
    model,
    atoms: ase.Atoms | Sequence[ase.Atoms],
    stride_fs: float,
    symplectic: bool = False,
    solver=None,
) -> TimeReversalResult:
    """Time-reversal error of ``model`` (a :class:`~flashmd.models.model.FlashMDModel`) at
    ``stride_fs`` from the states in ``atoms`` (positions and momenta; one or several systems).

    Strides are those of the rollout engine: the direct predictor, or with ``symplectic`` the
    generating function's midpoint solve (``solver``: a
    :class:`~flashmd.md.symplectic.SolverConfig`), whose error is bounded by its tolerance.
    Systems whose solve did not converge (either way) get NaN.
    """
    from flashmd.md.neighbors import NeighborCache
    from flashmd.md.state import state_from_atoms
    from flashmd.md.symplectic import model_propagator

    propagator = model_propagator(model, symplectic, solver)
    start = state_from_atoms(atoms, device=model.device)
    propagator.check(start, stride_fs)

    def stride(state):
        return propagator.propagate(state, NeighborCache(model.cutoff).edges(state), stride_fs)

    q1, p1 = stride(start)
    failed = ~torch.isfinite(torch.cat([q1, p1], dim=1)).all(dim=1)  # unconverged solves
    q1 = torch.where(failed[:, None], start.positions, q1)
    p1 = torch.where(failed[:, None], start.momenta, p1)
    q2, p2 = stride(start.replace(positions=q1, momenta=-p1))

    def rmse(difference: torch.Tensor) -> np.ndarray:
        sums = torch.zeros(start.n_systems, dtype=difference.dtype, device=difference.device)
        sums.index_add_(0, start.system, (difference**2).sum(1))
        bad = torch.zeros(start.n_systems, dtype=torch.bool, device=difference.device)
        bad.index_put_((start.system,), failed, accumulate=True)
        sums[bad] = float("nan")
        return torch.sqrt(sums / (3 * start.n_atoms)).cpu().numpy().astype(float)

    return TimeReversalResult(
        rmse(q2 - start.positions), rmse(-p2 - start.momenta), float(stride_fs)
    )
