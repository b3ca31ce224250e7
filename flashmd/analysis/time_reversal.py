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

from flashmd import keys


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
    model, atoms: ase.Atoms | Sequence[ase.Atoms], stride_fs: float
) -> TimeReversalResult:
    """Time-reversal error of ``model`` (a :class:`~flashmd.models.model.FlashMDModel`) at
    ``stride_fs`` from the states in ``atoms`` (positions and momenta; one or several systems)."""
    batch = model.make_batch(atoms, stride_fs=stride_fs)
    start_q, start_p = batch[keys.POSITIONS], batch[keys.MOMENTA]
    with torch.no_grad():
        q1, p1 = model.predict(batch)
        reversed_batch = model.make_batch(_with_state(atoms, q1, -p1), stride_fs=stride_fs)
        q2, p2 = model.predict(reversed_batch)
    system = batch[keys.SYSTEM]
    n_systems = int(batch[keys.N_ATOMS].shape[0])

    def rmse(difference: torch.Tensor) -> np.ndarray:
        sums = torch.zeros(n_systems, dtype=difference.dtype, device=difference.device)
        sums.index_add_(0, system, (difference**2).sum(1))
        return torch.sqrt(sums / (3 * batch[keys.N_ATOMS])).cpu().numpy().astype(float)

    return TimeReversalResult(rmse(q2 - start_q), rmse(-p2 - start_p), float(stride_fs))


def _with_state(
    atoms: ase.Atoms | Sequence[ase.Atoms], positions: torch.Tensor, momenta: torch.Tensor
) -> list[ase.Atoms]:
    """Copies of ``atoms`` with positions and momenta (A, 3) taken in batch order."""
    systems = [atoms] if isinstance(atoms, ase.Atoms) else list(atoms)
    q, p = positions.detach().cpu().double().numpy(), momenta.detach().cpu().double().numpy()
    out, start = [], 0
    for system in systems:
        copy = system.copy()
        n = len(copy)
        copy.set_positions(q[start : start + n])
        copy.set_momenta(p[start : start + n])
        out.append(copy)
        start += n
    return out
