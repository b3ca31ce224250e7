"""Uncertainty of a long stride without a reference: the model's stride self-consistency.

The exact flow map satisfies ``Φ_S = Φ_{S/2} ∘ Φ_{S/2}``. A learned map does not, and where it
disagrees with itself it is unsure: the state is far from the data it learned from, or the stride
is too long for what happens in it (a collision, a hop). Per atom ``i``,

    u_i = |q_i(Φ_S x) - q_i(Φ_{S/2} Φ_{S/2} x)|          (Å)
    w_i = |p_i(Φ_S x) - p_i(Φ_{S/2} Φ_{S/2} x)| / m_i    (Å/fs)

The signal of the model's shortest stride, whose half it was not trained on, is the same
comparison one level up (``Φ_{2S}`` against ``Φ_S ∘ Φ_S``), and a model with a single stride has
none (:class:`StrideConsistency` says so when built). Each half stride gets the momentum
constraints of the rollout (:func:`flashmd.md.filters.constrain`) but no energy filter, so the
signal sees the predictor's own error. It costs three predictor passes per stride and needs no
reference, which is what lets a rollout (``flashmd md --uncertainty``, stored per atom and frame
as ``uncertainty``) and the active-learning loop (:mod:`flashmd.learn`) use it at every output
frame. How well it ranks the true error of a stride
is measured by ``scripts/uncertainty_signal.py`` (see ``flashmd/pretrained/emt-metals.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flashmd.md import rigid
from flashmd.md.filters import constrain
from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import Propagator
from flashmd.md.state import MDState
from flashmd.units import FS


@dataclass(frozen=True)
class StrideUncertainty:
    """Self-consistency of one stride from each atom of a batched state.

    Attributes:
        positions: (A,) Å, ``u_i`` of the module docstring.
        velocities: (A,) Å/fs, ``w_i``.
        system: (A,) long, each atom's system (to reduce per system).
        long_positions: (A, 3) Å and long_momenta: (A, 3) the one long stride ``Φ_L x``
            (constrained), short_positions and short_momenta the two short strides
            ``Φ_{L/2} Φ_{L/2} x``: what an adaptive stride takes without computing them again.
        long_fs: the long stride ``L`` compared, in fs (the stride asked for, or twice it).
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    system: torch.Tensor
    long_positions: torch.Tensor
    long_momenta: torch.Tensor
    short_positions: torch.Tensor
    short_momenta: torch.Tensor
    long_fs: float

    def per_system(self, n_systems: int) -> torch.Tensor:
        """(S,) Å, the largest ``u_i`` of each system (one unsure atom makes an unsure stride)."""
        out = torch.zeros(n_systems, dtype=self.positions.dtype, device=self.positions.device)
        return out.scatter_reduce_(0, self.system, self.positions, "amax", include_self=False)


class StrideConsistency:
    """Per-atom stride self-consistency of a propagator trained on ``strides_fs``.

    Args:
        propagator: the long-stride map (a model's direct predictor or symplectic stride).
        strides_fs: the strides it serves, in fs.
        skin: neighbour-list skin in Å of its own neighbour caches.

    Raises:
        ValueError: no stride is twice another (nothing to compare).
    """

    def __init__(
        self, propagator: Propagator, strides_fs: Sequence[float], skin: float = 1.0
    ) -> None:
        self.propagator = propagator
        self.strides_fs = sorted(float(s) for s in strides_fs)
        if not any(self._served(2 * s) for s in self.strides_fs):
            raise ValueError(
                f"stride self-consistency needs a stride and its double; the model serves "
                f"{self.strides_fs} fs (train it on e.g. 16, 32 and 64 fs)"
            )
        cutoff = propagator.cutoff
        self._caches = [None if cutoff is None else NeighborCache(cutoff, skin) for _ in range(2)]

    def _served(self, stride_fs: float) -> bool:
        return any(abs(stride_fs - s) < 1e-9 for s in self.strides_fs)

    def long_stride(self, stride_fs: float) -> float:
        """The long stride compared for ``stride_fs``: itself when its half is served, else its
        double when that is served.

        Raises:
            ValueError: neither is served.
        """
        if self._served(stride_fs) and self._served(stride_fs / 2):
            return float(stride_fs)
        if self._served(stride_fs) and self._served(2 * stride_fs):
            return 2.0 * stride_fs
        raise ValueError(
            f"no self-consistency for a {stride_fs:g} fs stride: the model serves "
            f"{self.strides_fs} fs and needs it with its half or its double"
        )

    def __call__(self, state: MDState, stride_fs: float) -> StrideUncertainty:
        """The self-consistency of a stride of ``stride_fs`` from every system of ``state``."""
        long_fs = self.long_stride(stride_fs)
        target = rigid.conserved(state)
        long_q, long_p = self._stride(state, long_fs, 0, target)
        mid_q, mid_p = self._stride(state, long_fs / 2, 0, target)
        half = state.replace(positions=mid_q, momenta=mid_p)
        short_q, short_p = self._stride(half, long_fs / 2, 1, target)
        return StrideUncertainty(
            positions=torch.linalg.vector_norm(long_q - short_q, dim=1),
            velocities=torch.linalg.vector_norm(long_p - short_p, dim=1) / state.masses * FS,
            system=state.system,
            long_positions=long_q,
            long_momenta=long_p,
            short_positions=short_q,
            short_momenta=short_p,
            long_fs=long_fs,
        )

    def _stride(
        self, state: MDState, stride_fs: float, cache: int, target: rigid.Conserved
    ) -> tuple[torch.Tensor, torch.Tensor]:
        neighbours = self._caches[cache]
        edges = None if neighbours is None else neighbours.edges(state)
        positions, momenta = self.propagator.propagate(state, edges, stride_fs)
        return constrain(state, positions, momenta, stride_fs, target)
