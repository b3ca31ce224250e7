"""The long-stride predictor: (q(t), p(t)) -> (q(t+S), p(t+S)) for strides S of tens of fs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from e3nn import o3

from flashmd import keys
from flashmd.data.graph import edge_vectors
from flashmd.models.config import BackboneConfig, stride_fields
from flashmd.models.constraints import apply_constraints
from flashmd.nn import GaussianEmbedding, SpeciesEmbedding, VectorReadout
from flashmd.units import FS


@dataclass(frozen=True, kw_only=True)
class PredictorConfig(BackboneConfig):
    """Hyperparameters of :class:`Predictor` (backbone fields documented in BackboneConfig)."""

    strides_fs: tuple[float, ...] = (16.0, 32.0, 64.0)
    """Strides in fs the model serves; each has its own learnable correction scales."""
    n_stride_basis: int = 8
    """Number of Gaussian features of the stride, centred evenly on ``[0, max(strides_fs)]``."""
    momentum_scale: float = 0.3
    """Typical ``|p/√m|`` in √eV (≈ √(3 kB T) near 350 K); normalises inputs and corrections."""

    kind: ClassVar[str] = "predictor"

    def __post_init__(self) -> None:
        super().__post_init__()
        strides = stride_fields(self.strides_fs, self.n_stride_basis, self.momentum_scale)
        object.__setattr__(self, "strides_fs", strides)


class Predictor(torch.nn.Module):
    """Equivariant long-stride map on top of free flight, with exact momentum conservation.

    In mass-scaled units ``p̃ = p / (√m σ)`` (``σ = momentum_scale``) the network predicts, per
    atom, two ``1o`` vectors ``d`` and ``u`` and the step is::

        Δq̃ = S p̃ + a_q(S) S d        p̃' = p̃ + a_p(S) u        Δq = σ Δq̃ / √m,  p' = σ √m p̃'

    with learnable per-stride scales ``a_q, a_p`` that start at zero, so an untrained model is
    exact free flight ``(q + S p / m, p)``. The result then goes through
    :func:`~flashmd.models.constraints.apply_constraints`. Inputs per atom: species embedding,
    ``p̃`` (``1o``) and ``|p̃|``, Gaussian features of the stride; edges: relative vectors only.
    """

    strides_fs: torch.Tensor

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        n = config.n_scalars
        self.species_embedding = SpeciesEmbedding(config.species, n)
        self.stride_embedding = GaussianEmbedding(
            0.0, max(config.strides_fs), config.n_stride_basis
        )
        self.input_mlp = torch.nn.Sequential(
            torch.nn.Linear(n + 1 + config.n_stride_basis, n),
            torch.nn.SiLU(),
            torch.nn.Linear(n, n),
        )
        self.backbone = config.backbone(
            o3.Irreps(f"{n}x0e + 1x1o"), o3.Irreps(f"{n}x0e + {config.n_tensors}x1o")
        )
        self.readout = VectorReadout(self.backbone.irreps_out, 2)
        self.register_buffer("strides_fs", torch.tensor(config.strides_fs))
        self.correction_scale = torch.nn.Parameter(torch.zeros(len(config.strides_fs), 2))

    def stride_index(self, stride_fs: torch.Tensor) -> torch.Tensor:
        """``stride_fs``: ``(S,)`` in fs. Returns ``(S,)`` long index of the nearest stride."""
        return torch.argmin(torch.abs(stride_fs[:, None] - self.strides_fs[None, :]), dim=1)

    def predict_displacements(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Displacements ``q(t+S) - q(t)`` ``(A, 3)`` in Å and momenta ``p(t+S)`` ``(A, 3)``.

        Reads positions, momenta, masses, numbers, system, stride (fs), edge_index and
        edge_shifts. Strides are not validated here (the nearest known stride's scales are used);
        ``FlashMDModel`` rejects unsupported strides.
        """
        keys.check_batch(
            batch,
            (
                keys.POSITIONS,
                keys.MOMENTA,
                keys.MASSES,
                keys.NUMBERS,
                keys.SYSTEM,
                keys.STRIDE,
                keys.EDGE_INDEX,
                keys.EDGE_SHIFTS,
            ),
        )
        momenta, masses, system = batch[keys.MOMENTA], batch[keys.MASSES], batch[keys.SYSTEM]
        stride_fs = batch[keys.STRIDE]
        sigma = self.config.momentum_scale
        sqrt_m = torch.sqrt(masses)[:, None]
        p_scaled = momenta / (sigma * sqrt_m)
        stride_atom = stride_fs[system]
        scalars = torch.cat(
            [
                self.species_embedding(batch[keys.NUMBERS]),
                torch.linalg.vector_norm(p_scaled, dim=1, keepdim=True),
                self.stride_embedding(stride_atom),
            ],
            dim=1,
        )
        x = torch.cat([self.input_mlp(scalars), p_scaled], dim=1)
        features = self.backbone(x, edge_vectors(batch), batch[keys.EDGE_INDEX])
        corrections = self.readout(features)
        scales = self.correction_scale[self.stride_index(stride_fs)][system]
        stride = (stride_atom * FS)[:, None]
        dq_scaled = stride * (p_scaled + scales[:, :1] * corrections[:, 0])
        p_new_scaled = p_scaled + scales[:, 1:] * corrections[:, 1]
        displacements = dq_scaled * (sigma / sqrt_m)
        new_momenta = p_new_scaled * (sigma * sqrt_m)
        return apply_constraints(displacements, new_momenta, momenta, masses, system, stride_fs)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """New positions ``(A, 3)`` in Å and new momenta ``(A, 3)`` in amu·Å/ASE-time."""
        displacements, new_momenta = self.predict_displacements(batch)
        return batch[keys.POSITIONS] + displacements, new_momenta
