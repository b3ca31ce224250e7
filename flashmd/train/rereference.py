"""Re-referencing a pretrained energy model's per-species energies to a new reference.

Two references agree on forces far better than on absolute energies: asap3 EMT puts a copper
atom of the crystal near 0 eV, SevenNet-0 (PBE) near -4.1 eV. An energy model fine-tuned from
one onto the other would spend its first steps (and its energy loss's scale) learning a constant
per species. Before fine-tuning, :func:`energy_shift_correction` fits that constant: the
least-squares per-species energy ``c`` with ``E_ref(s) - E_model(s) ≈ Σ_i c[Z_i]`` over sample
states ``s``, added to the model's ``energy_shift``. Forces do not change.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from flashmd import keys
from flashmd.data.dataset import collate_pairs
from flashmd.data.graph import batch_to
from flashmd.models.energy import EnergyModel


def energy_shift_correction(
    energy_model: EnergyModel,
    items: Iterable[dict[str, torch.Tensor]],
    batch_size: int = 16,
) -> tuple[torch.Tensor, float]:
    """The per-species energy to add to ``energy_model.energy_shift`` so that its energies match
    the reference energies of ``items`` in the least-squares sense.

    Args:
        energy_model: the (pretrained) model, on its device and dtype.
        items: single-system pair items (``flashmd.data.dataset``): numbers, positions, cell,
            reference ``energy`` of the start state in eV.
        batch_size: systems per forward pass.

    Returns:
        ``(correction, rms_after)``: ``(n_species,)`` eV per atom in the model's species order
        (zero for a species absent from ``items``), and the root mean square of the remaining
        per-atom energy error in eV.
    """
    parameter = next(energy_model.parameters())
    species = energy_model.config.species
    compositions, residuals, sizes = [], [], []
    pending: list[dict[str, torch.Tensor]] = []

    def flush() -> None:
        batch = batch_to(
            collate_pairs(pending, energy_model.config.cutoff), parameter.device, parameter.dtype
        )
        with torch.no_grad():
            predicted = energy_model(batch).to(torch.float64).cpu()
        for item, value in zip(pending, predicted, strict=True):
            numbers = item[keys.NUMBERS]
            counts = [float((numbers == z).sum()) for z in species]
            compositions.append(counts)
            residuals.append(float(item[keys.ENERGY][0]) - float(value))
            sizes.append(len(numbers))
        pending.clear()

    for item in items:
        pending.append(item)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if not residuals:
        raise ValueError("no states to re-reference the energy model on")
    composition = torch.tensor(compositions, dtype=torch.float64)
    residual = torch.tensor(residuals, dtype=torch.float64)
    present = composition.sum(0) > 0
    correction = torch.zeros(len(species), dtype=torch.float64)
    fit = torch.linalg.lstsq(composition[:, present], residual[:, None]).solution[:, 0]
    correction[present] = fit
    remaining = (residual - composition @ correction) / torch.tensor(sizes, dtype=torch.float64)
    return correction, float(remaining.pow(2).mean().sqrt())
