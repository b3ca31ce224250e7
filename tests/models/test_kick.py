"""The learned kick (flashmd.models.kick): exactly equivariant, read in the energy model's own
pass without changing its energy, and kept by checkpoints only beside the energy model it reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_testkit import (
    CUTOFF,
    SPECIES,
    make_atoms,
    random_orthogonal,
    randomized,
    tiny_energy,
    tiny_predictor,
    transformed,
)

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.io import load_checkpoint, save_checkpoint
from flashmd.models.kick import KickConfig, KickField, energy_and_kick
from flashmd.models.model import FlashMDModel


def tiny_kick(energy: EnergyModel, seed: int = 0, **fields) -> KickField:
    """A kick for ``energy`` with random weights (every output non-trivial)."""
    config = KickConfig.for_energy_model(energy.config, **fields)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        kick = KickField(config)
    return randomized(kick, seed).to(torch.float64)


def kick_of(energy: EnergyModel, kick: KickField, atoms) -> tuple[torch.Tensor, torch.Tensor]:
    batch = batch_from_atoms(atoms, CUTOFF, dtype=torch.float64)
    with torch.no_grad():
        return energy_and_kick(energy, kick, batch)


@pytest.mark.parametrize("kind", ["periodic", "cluster", "slab"])
@pytest.mark.parametrize("reflect", [False, True])
def test_the_kick_rotates_with_the_atoms_and_ignores_translations(kind, reflect):
    energy = tiny_energy()
    kick = tiny_kick(energy)
    atoms = make_atoms(kind, seed=2)
    matrix = random_orthogonal(np.random.default_rng(5), reflect)
    moved = transformed(atoms, matrix, shift=np.array([0.7, -1.3, 2.1]))
    _, a = kick_of(energy, kick, atoms)
    _, a_moved = kick_of(energy, kick, moved)
    assert float(a.abs().max()) > 1e-3
    torch.testing.assert_close(a_moved, a @ torch.as_tensor(matrix).T, rtol=0, atol=1e-10)


def test_the_kick_comes_with_the_energy_models_own_energy_and_is_not_its_force():
    energy = tiny_energy()
    atoms = make_atoms("periodic", seed=1)
    batch = batch_from_atoms(atoms, CUTOFF, dtype=torch.float64)
    exact = energy.compute(batch, forces=True)
    for fields in ({}, {"kick_vectors": 0}):
        potential, a = kick_of(energy, tiny_kick(energy, **fields), atoms)
        torch.testing.assert_close(potential, exact[keys.ENERGY], rtol=0, atol=1e-12)
        assert a.shape == exact[keys.FORCES].shape
        assert not torch.allclose(a, exact[keys.FORCES], atol=1e-3)


def test_a_checkpoint_keeps_the_kick_beside_its_energy_model(tmp_path):
    energy = tiny_energy()
    kick = tiny_kick(energy)
    model = FlashMDModel(tiny_predictor(), energy, None, None, kick)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "kick.pt"), "cpu")
    assert loaded.kick is not None
    atoms = make_atoms("slab", seed=3)
    torch.testing.assert_close(
        kick_of(loaded.energy_model, loaded.kick, atoms), kick_of(energy, kick, atoms)
    )
    plain = load_checkpoint(save_checkpoint(FlashMDModel(None, energy), tmp_path / "e.pt"), "cpu")
    assert plain.kick is None


def test_a_kick_for_another_energy_model_or_none_is_refused():
    energy = tiny_energy()
    wider = EnergyModel(
        EnergyConfig.preset("tiny", species=SPECIES, cutoff=CUTOFF, n_scalars=12)
    ).double()
    with pytest.raises(ValueError, match="train-kick"):
        FlashMDModel(tiny_predictor(), energy, None, None, tiny_kick(wider))
    with pytest.raises(ValueError, match="none"):
        FlashMDModel(tiny_predictor(), None, None, None, tiny_kick(energy))
    with pytest.raises(ValueError, match="kick_basis"):
        KickConfig.for_energy_model(energy.config, kick_basis=0)
