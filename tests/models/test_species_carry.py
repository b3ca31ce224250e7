"""Carrying a trained model over to another species set: known species keep their function,
new ones start from the mean embedding, and the per-species energy refit recovers a shift."""

from __future__ import annotations

import pytest
import torch
from models_testkit import CUTOFF, SPECIES, make_atoms, tiny_energy, tiny_generating, tiny_predictor

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.species import with_species

AL, CU, AG = 13, 29, 47


def copper_only(seed: int = 3):
    atoms = make_atoms("periodic", seed=seed)
    atoms.numbers = [CU] * len(atoms)
    return atoms


def outputs(model, atoms) -> tuple[torch.Tensor, ...]:
    batch = batch_from_atoms(atoms, CUTOFF, 32.0, dtype=torch.float64)
    if hasattr(model, "energy_shift"):
        return (model(batch),)
    result = model(batch)
    return tuple(result) if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("factory", [tiny_energy, tiny_predictor, tiny_generating])
@pytest.mark.parametrize("species", [(CU,), (CU, AG), (AG, CU, AL)])
def test_known_species_keep_their_function(factory, species):
    original = factory()
    carried = with_species(original, species)
    assert type(carried) is type(original) and carried.config.species == species
    atoms = copper_only()
    for before, after in zip(outputs(original, atoms), outputs(carried, atoms), strict=True):
        torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)
    assert original.config.species == SPECIES  # the original is untouched


def test_new_species_start_from_the_mean_row_and_zero_shift():
    original = tiny_energy()
    carried = with_species(original, (AG, CU))
    table = original.species_embedding.embedding.weight
    new = carried.species_embedding.embedding.weight
    torch.testing.assert_close(new[0], table.mean(dim=0))
    torch.testing.assert_close(new[1], table[SPECIES.index(CU)])
    assert float(carried.energy_shift[0].detach()) == 0.0
    shift = original.energy_shift[SPECIES.index(CU)].detach()
    assert float(carried.energy_shift[1].detach()) == float(shift)
    atoms = copper_only()
    atoms.numbers[:3] = AG
    energy = outputs(carried, atoms)[0]
    assert torch.isfinite(energy).all()


def test_energy_shift_correction_recovers_a_per_species_offset():
    from flashmd.train.rereference import energy_shift_correction

    model = tiny_energy()
    offset = {AL: -3.5, CU: 1.25}
    items = []
    for seed in range(6):
        atoms = make_atoms("periodic", seed=seed)
        batch = batch_from_atoms(atoms, CUTOFF, 32.0, dtype=torch.float64)
        with torch.no_grad():
            energy = float(model(batch)) + sum(offset[int(z)] for z in atoms.numbers)
        items.append({**batch, keys.ENERGY: torch.tensor([energy], dtype=torch.float64)})
    correction, rms = energy_shift_correction(model, items, batch_size=4)
    torch.testing.assert_close(correction, torch.tensor([offset[z] for z in SPECIES]).double())
    assert rms < 1e-9
