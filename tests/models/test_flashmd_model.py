"""``FlashMDModel``: validation of species, strides and masses, and model agreement."""

from __future__ import annotations

import pytest
import torch
from models_testkit import SPECIES, make_atoms, tiny_energy, tiny_predictor

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.model import FlashMDModel, resolve_device


@pytest.fixture
def model() -> FlashMDModel:
    return FlashMDModel(tiny_predictor(), tiny_energy())


def test_properties(model):
    assert model.species == SPECIES and model.cutoff == 4.0
    assert model.strides_fs == (16.0, 32.0, 64.0)
    assert model.device == torch.device("cpu") and model.dtype == torch.float64
    assert model.masses[13] == pytest.approx(26.98, abs=0.01)


def test_unseen_species_is_named(model):
    atoms = make_atoms("cluster")
    atoms.numbers[0] = 26
    with pytest.raises(ValueError, match=r"does not support Fe \(Z=26\).*supports Al \(Z=13\)"):
        model.make_batch(atoms, 32.0)
    with pytest.raises(ValueError, match="Fe"):
        model.compute_energy(batch_from_atoms(atoms, 4.0, dtype=torch.float64))


def test_unsupported_stride_lists_supported_ones(model):
    with pytest.raises(ValueError, match=r"stride 20 fs is not supported.*'16', '32', '64'"):
        model.make_batch(make_atoms("cluster"), 20.0)


def test_masses_other_than_training_masses_are_rejected(model):
    atoms = make_atoms("cluster")
    masses = atoms.get_masses()
    masses[2] *= 2
    atoms.set_masses(masses)
    with pytest.raises(ValueError, match=r"atom 2 .* trained with"):
        model.make_batch(atoms, 32.0)


def test_predict_and_energy_on_valid_batch(model):
    batch = model.make_batch([make_atoms("periodic"), make_atoms("slab")], [16.0, 32.0])
    positions, momenta = model.predict(batch)
    assert positions.shape == momenta.shape == batch[keys.POSITIONS].shape
    assert model.compute_energy(batch)[keys.ENERGY].shape == (2,)


def test_missing_parts_and_disagreeing_models_are_errors():
    with pytest.raises(ValueError, match="needs a predictor"):
        FlashMDModel()
    other = EnergyModel(EnergyConfig.preset("tiny", species=(13,), cutoff=4.0))
    with pytest.raises(ValueError, match="disagree"):
        FlashMDModel(tiny_predictor(), other)
    with pytest.raises(ValueError, match="masses are given for"):
        FlashMDModel(tiny_predictor(), masses={13: 27.0})
    energy_only = FlashMDModel(energy_model=tiny_energy())
    batch = energy_only.make_batch(make_atoms("cluster"))
    with pytest.raises(ValueError, match="no predictor"):
        energy_only.predict(batch)
    with pytest.raises(ValueError, match="no energy model"):
        FlashMDModel(tiny_predictor()).compute_energy(batch)


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
