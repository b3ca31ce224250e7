"""Carry a trained model over to another set of species (fine-tuning across references).

A model pretrained on a cheap potential with many elements (``emt-metals``: seven metals) is
fine-tuned on an expensive reference that covers only some of them, or others besides. Every
per-species parameter of the three models is one row per species: the rows of the species
embeddings (``species_embedding.embedding.weight``, ``(n_species, n_features)``) and the energy
model's reference energies (``energy_shift``, ``(n_species,)`` eV). :func:`with_species` builds
the same architecture for the new species and copies every other weight unchanged:

* a species the model knew keeps its row, so on structures of known species the carried model is
  the same function as the original (up to the species' order in the table);
* a new species starts from the mean of the known rows (embedding) and a zero reference energy:
  a neutral start for fine-tuning, refitted by the trainer's energy re-referencing;
* buffers that follow from the species alone (the ZBL wall's charges and radii) are rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)

#: Parameters with one row per species, by their name in ``state_dict``.
PER_SPECIES = ("species_embedding.embedding.weight", "energy_shift")


def with_species(model: M, species: Sequence[int]) -> M:
    """A copy of ``model`` (a Predictor, EnergyModel or GeneratingFunction) for ``species``.

    Args:
        model: the trained model; it is not modified.
        species: atomic numbers of the new model, in the order of its embedding table.

    Returns:
        A new model of the same class, architecture and dtype: rows of known species copied,
        new species started from the mean known row (embedding) and zero (reference energy).
    """
    species = tuple(int(z) for z in species)
    old = tuple(model.config.species)
    if species == old:
        return model
    carried = type(model)(replace(model.config, species=species))
    reference = next(model.parameters())
    carried.to(dtype=reference.dtype, device=reference.device)
    state = model.state_dict()
    new_state = carried.state_dict()
    row_of = {z: i for i, z in enumerate(old)}
    for name, value in state.items():
        if name in PER_SPECIES:
            value = _rows(value, species, row_of, zero=name == "energy_shift")
        new_state[name] = value
    carried.load_state_dict(new_state)
    carried.requires_grad_(any(p.requires_grad for p in model.parameters()))
    return carried


def _rows(
    table: torch.Tensor, species: tuple[int, ...], row_of: dict[int, int], zero: bool
) -> torch.Tensor:
    """``table`` ``(len(row_of), ...)`` re-indexed to ``(len(species), ...)``: known rows copied,
    new ones the mean of the old rows (or zero)."""
    fill = torch.zeros_like(table[0]) if zero else table.mean(dim=0)
    rows = [table[row_of[z]] if z in row_of else fill for z in species]
    return torch.stack(rows).detach().clone()


def species_change(old: Sequence[int], new: Sequence[int]) -> str:
    """One line saying which species a carried model drops and adds (for logs)."""
    from ase.data import chemical_symbols

    def names(numbers: set[int]) -> str:
        return ", ".join(chemical_symbols[z] for z in sorted(numbers)) or "none"

    dropped, added = set(old) - set(new), set(new) - set(old)
    start = " (started from the mean embedding)" if added else ""
    return f"drops {names(dropped)}; adds {names(added)}{start}"
