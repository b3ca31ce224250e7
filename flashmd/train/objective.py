"""The training objective as a module, so DistributedDataParallel can wrap it whole."""

from __future__ import annotations

import torch

from flashmd import keys
from flashmd.models.model import FlashMDModel
from flashmd.nn.scatter import scatter_sum
from flashmd.train.config import LossWeights
from flashmd.train.losses import (
    Normalisation,
    energy_loss,
    filtered_momenta,
    has_known_stress,
    kinetic_loss,
    midpoint_prediction,
    modified_midpoint_prediction,
    potential_bias_loss,
    potential_loss,
    potential_shifts,
    predictor_loss,
    stress_loss,
    true_midpoint,
)


class Objective(torch.nn.Module):
    """Loss terms of a batch: ``{"predictor", "energy", "forces", "total"}``, ``"kinetic"``
    and ``"potential"`` when their weights are set, ``"generating"`` with a generating
    function, and ``"unroll"`` for batches with unrolled targets (weighted scalars).

    Args:
        model: the predictor and/or energy model being trained.
        norm: the normalisation statistics.
        weights: loss weights.
        train_energy: include the energy model's terms (off for a frozen energy model, whose
            terms would be constants).
        train_predictor: include the predictor's terms (off for a predictor kept fixed).
    """

    def __init__(
        self,
        model: FlashMDModel,
        norm: Normalisation,
        weights: LossWeights,
        train_energy: bool = True,
        train_predictor: bool = True,
    ):
        super().__init__()
        self.model, self.norm, self.weights = model, norm, weights
        self.train_energy = train_energy
        self.train_predictor = train_predictor
        if weights.prices_positions and (model.energy_model is None or train_energy):
            raise ValueError(
                "loss_weights.potential and potential_bias need an energy model kept fixed "
                "(energy_model: {checkpoint: NAME_OR_PATH}); a trained one would learn from it"
            )

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms of ``batch``; ``noise`` ((A, 3) Å, (A, 3) momentum) is added to the
        predictor's input positions and momenta only (its targets and the energy model's inputs
        stay clean), so the predictor learns to undo it."""
        positions = batch[keys.POSITIONS]
        zero = torch.zeros((), dtype=positions.dtype, device=positions.device)
        terms = {"predictor": zero, "energy": zero, "forces": zero}
        if self.weights.stress > 0:
            terms["stress"] = zero
        if self.model.generating is not None and (
            self.weights.generating > 0 or self.weights.modified > 0
        ):
            terms.update(self.generating_terms(batch))
        predictor = self.model.predictor
        if predictor is not None and self.train_predictor and self.weights.predictor > 0:
            inputs = batch
            if noise is not None:
                inputs = {
                    **batch,
                    keys.POSITIONS: positions + noise[0],
                    keys.MOMENTA: batch[keys.MOMENTA] + noise[1],
                }
            new_positions, new_momenta = self.model.predictor(inputs)
            terms["predictor"] = self.weights.predictor * predictor_loss(
                self.model, inputs, self.norm, new_positions, new_momenta
            )
            if self.weights.kinetic > 0:  # only then a term (and a train.csv column)
                terms["kinetic"] = self.weights.kinetic * kinetic_loss(
                    inputs, self.norm, new_momenta
                )
            if self.weights.prices_positions:  # the energy model is fixed (checked in __init__)
                shifts = potential_shifts(self.model.energy_model, inputs, self.norm, new_positions)
                if self.weights.potential > 0:
                    terms["potential"] = self.weights.potential * potential_loss(shifts)
                if self.weights.potential_bias > 0:
                    terms["potential_bias"] = self.weights.potential_bias * potential_bias_loss(
                        shifts
                    )
            if keys.UNROLL_POSITIONS in batch and self.weights.unroll > 0:
                terms["unroll"] = self.weights.unroll * self.unrolled_loss(
                    batch, new_positions, new_momenta
                )
        if self.model.energy_model is not None and self.train_energy:
            want_forces = self.weights.forces > 0 and keys.FORCES in batch
            want_stress = self.weights.stress > 0 and has_known_stress(batch)
            out = self.model.energy_model.compute(
                batch,
                forces=want_forces,
                stress=want_stress,
                create_graph=self.training,
                nonperiodic_stress="nan",
            )
            terms["energy"], terms["forces"] = energy_loss(
                batch, self.norm, out[keys.ENERGY], out.get(keys.FORCES), self.weights
            )
            if want_stress:
                terms["stress"] = self.weights.stress * stress_loss(
                    batch, self.norm, out[keys.STRESS]
                )
        terms["total"] = sum(terms.values())
        return terms

    def generating_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``"generating"``: the midpoint condition on the true pairs; ``"modified"`` (when
        weighted): the same stride against the modified midpoint map's."""
        midpoint = true_midpoint(self.model, batch)
        positions, momenta = midpoint_prediction(
            self.model, batch, create_graph=self.training, midpoint=midpoint
        )
        terms = {}
        if self.weights.generating > 0:
            terms["generating"] = self.weights.generating * predictor_loss(
                self.model, batch, self.norm, positions, momenta
            )
        if self.weights.modified > 0:
            target = modified_midpoint_prediction(self.model, batch, midpoint)
            physical = {**batch, keys.TARGET_POSITIONS: target[0], keys.TARGET_MOMENTA: target[1]}
            terms["modified"] = self.weights.modified * predictor_loss(
                self.model, physical, self.norm, positions, momenta
            )
        return terms

    def unrolled_loss(
        self, batch: dict[str, torch.Tensor], positions: torch.Tensor, momenta: torch.Tensor
    ) -> torch.Tensor:
        """Mean predictor loss of the strides after the first, each from the previous
        prediction (``positions``, ``momenta``: the first, (A, 3)), detached and, with an energy
        model, energy-filtered to the clean start's ``K + V``, against ``unroll_positions`` and
        ``unroll_momenta`` (A, U, 3)."""
        from flashmd.data.graph import with_neighbors

        assert self.model.predictor is not None
        energy = self.model.energy_model
        start_energy = None
        if energy is not None:
            with torch.no_grad():
                start = energy.compute(batch, forces=False)[keys.ENERGY]
                kinetic = (batch[keys.MOMENTA] ** 2).sum(1) / (2 * batch[keys.MASSES])
                start_energy = start + scatter_sum(kinetic, batch[keys.SYSTEM], len(start))
        losses = []
        for j in range(batch[keys.UNROLL_POSITIONS].shape[1]):
            state = with_neighbors({**batch, keys.POSITIONS: positions.detach()}, self.model.cutoff)
            momenta = momenta.detach()
            if energy is not None and start_energy is not None:
                with torch.no_grad():
                    potential = energy.compute(state, forces=False)[keys.ENERGY]
                    momenta = filtered_momenta(state, start_energy, potential, momenta)
            state = {
                **state,
                keys.MOMENTA: momenta,
                keys.TARGET_POSITIONS: batch[keys.UNROLL_POSITIONS][:, j],
                keys.TARGET_MOMENTA: batch[keys.UNROLL_MOMENTA][:, j],
            }
            positions, momenta = self.model.predictor(state)
            losses.append(predictor_loss(self.model, state, self.norm, positions, momenta))
        return torch.stack(losses).mean()
