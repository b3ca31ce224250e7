"""Symmetries and behaviour of the long-stride predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_testkit import (
    CUTOFF,
    SPECIES,
    STRIDES_FS,
    make_atoms,
    random_orthogonal,
    relative_error,
    tiny_predictor,
    transformed,
)

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.config import PRESETS
from flashmd.models.predictor import Predictor, PredictorConfig
from flashmd.nn import scatter_sum
from flashmd.units import FS

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
KINDS = ["periodic", "cluster", "slab"]


def run(model, atoms, stride_fs=32.0):
    dtype = next(model.parameters()).dtype
    batch = batch_from_atoms(atoms, CUTOFF, stride_fs, dtype=dtype)
    with torch.no_grad():
        return model.predict_displacements(batch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reflect", [False, True])
def test_equivariant_to_rotations_and_reflections(dtype, kind, reflect):
    model = tiny_predictor(dtype)
    atoms = make_atoms(kind, seed=1)
    matrix = random_orthogonal(np.random.default_rng(2), reflect)
    displacements, momenta = run(model, atoms)
    rotated_displacements, rotated_momenta = run(model, transformed(atoms, matrix))
    rotation = torch.tensor(matrix, dtype=dtype)
    assert relative_error(rotated_displacements, displacements @ rotation.T) < TOLERANCE[dtype]
    assert relative_error(rotated_momenta, momenta @ rotation.T) < TOLERANCE[dtype]


def test_mirror_plane_reflection_float64():
    model = tiny_predictor(torch.float64)
    atoms = make_atoms("slab", seed=3)
    mirror = np.diag([1.0, -1.0, 1.0])
    displacements, momenta = run(model, atoms)
    mirrored = run(model, transformed(atoms, mirror))
    mirror_t = torch.tensor(mirror)
    assert relative_error(mirrored[0], displacements @ mirror_t) < 1e-10
    assert relative_error(mirrored[1], momenta @ mirror_t) < 1e-10


def test_outputs_are_not_trivially_symmetric():
    """Guard against a vacuous equivariance test: corrections must differ from free flight."""
    model = tiny_predictor(torch.float64)
    atoms = make_atoms("periodic", seed=1)
    displacements, momenta = run(model, atoms)
    free = torch.tensor(atoms.get_velocities()) * 32.0 * FS
    assert (displacements - free).abs().max() > 1e-3
    assert (momenta - torch.tensor(atoms.get_momenta())).abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_translation_invariant(kind):
    model = tiny_predictor(torch.float64)
    atoms = make_atoms(kind, seed=4)
    shifted = transformed(atoms, np.eye(3), shift=np.array([3.1, -7.4, 12.9]))
    displacements, momenta = run(model, atoms)
    shifted_displacements, shifted_momenta = run(model, shifted)
    assert relative_error(shifted_displacements, displacements) < 1e-10
    assert relative_error(shifted_momenta, momenta) < 1e-10


@pytest.mark.parametrize("kind", KINDS)
def test_permutation_equivariant(kind):
    model = tiny_predictor(torch.float64)
    atoms = make_atoms(kind, seed=5)
    permutation = np.random.default_rng(6).permutation(len(atoms))
    displacements, momenta = run(model, atoms)
    permuted_displacements, permuted_momenta = run(model, atoms[permutation])
    assert relative_error(permuted_displacements, displacements[permutation]) < 1e-12
    assert relative_error(permuted_momenta, momenta[permutation]) < 1e-12


def test_batch_equals_systems_one_by_one():
    model = tiny_predictor(torch.float64)
    systems = [make_atoms(kind, seed=7 + k) for k, kind in enumerate(KINDS)]
    strides = [16.0, 64.0, 32.0]
    batch = batch_from_atoms(systems, CUTOFF, strides, dtype=torch.float64)
    with torch.no_grad():
        positions, momenta = model(batch)
    start = 0
    for atoms, stride in zip(systems, strides, strict=True):
        single = batch_from_atoms(atoms, CUTOFF, stride, dtype=torch.float64)
        with torch.no_grad():
            single_positions, single_momenta = model(single)
        stop = start + len(atoms)
        torch.testing.assert_close(positions[start:stop], single_positions, rtol=0, atol=1e-12)
        torch.testing.assert_close(momenta[start:stop], single_momenta, rtol=0, atol=1e-12)
        start = stop


def test_untrained_model_is_free_flight():
    torch.manual_seed(0)
    config = PredictorConfig.preset("tiny", species=SPECIES, strides_fs=STRIDES_FS, cutoff=CUTOFF)
    model = Predictor(config).double()
    atoms = make_atoms("periodic", seed=8)
    batch = batch_from_atoms(atoms, CUTOFF, 64.0, dtype=torch.float64)
    with torch.no_grad():
        positions, momenta = model(batch)
    expected = atoms.positions + atoms.get_velocities() * 64.0 * FS
    np.testing.assert_allclose(positions.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(momenta.numpy(), atoms.get_momenta(), rtol=0, atol=1e-12)


def test_conserves_momentum_and_moves_centre_of_mass_uniformly():
    model = tiny_predictor(torch.float64)
    systems = [make_atoms(kind, seed=9 + k) for k, kind in enumerate(KINDS)]
    batch = batch_from_atoms(systems, CUTOFF, [16.0, 32.0, 64.0], dtype=torch.float64)
    with torch.no_grad():
        displacements, momenta = model.predict_displacements(batch)
    system, masses = batch[keys.SYSTEM], batch[keys.MASSES]
    total = scatter_sum(batch[keys.MOMENTA], system, 3)
    torch.testing.assert_close(scatter_sum(momenta, system, 3), total, rtol=0, atol=1e-12)
    total_mass = scatter_sum(masses, system, 3)[:, None]
    com = scatter_sum(masses[:, None] * displacements, system, 3) / total_mass
    expected = (batch[keys.STRIDE] * FS)[:, None] * total / total_mass
    torch.testing.assert_close(com, expected, rtol=0, atol=1e-12)


def test_stride_changes_the_prediction_and_uses_its_own_scales():
    model = tiny_predictor(torch.float64)
    atoms = make_atoms("periodic", seed=10)
    short, long = run(model, atoms, 16.0), run(model, atoms, 64.0)
    assert (short[1] - long[1]).abs().max() > 1e-6
    index = model.stride_index(torch.tensor([15.0, 16.0, 33.0, 64.0, 100.0], dtype=torch.float64))
    assert index.tolist() == [0, 0, 1, 2, 2]


def test_backward_gives_finite_gradients():
    model = tiny_predictor(torch.float64)
    batch = batch_from_atoms(make_atoms("cluster", seed=11), CUTOFF, 32.0, dtype=torch.float64)
    positions, momenta = model(batch)
    (positions.square().sum() + momenta.square().sum()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_round_trip_through_dict(name):
    config = PredictorConfig.preset(name, species=(1, 8), strides_fs=(16, 32))
    assert config.strides_fs == (16.0, 32.0)
    assert PredictorConfig.from_dict(config.to_dict()) == config
    Predictor(config)


def test_config_without_a_later_field_gets_the_architecture_it_was_written_with():
    data = PredictorConfig.preset("tiny", species=(13,), receiver_messages=True).to_dict()
    del data["receiver_messages"]  # as in checkpoints written before the field existed
    assert PredictorConfig.from_dict(data).receiver_messages is False


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        PredictorConfig.preset("huge", species=(1,))
    with pytest.raises(ValueError, match="strides_fs"):
        PredictorConfig(species=(1,), strides_fs=(16.0, -1.0))
    with pytest.raises(ValueError, match="species"):
        PredictorConfig(species=())
    with pytest.raises(ValueError, match="missing \\['cutoff'\\]"):
        data = PredictorConfig(species=(1,)).to_dict()
        del data["cutoff"]
        PredictorConfig.from_dict(data)
    with pytest.raises(ValueError, match="unknown \\['colour'\\]"):
        PredictorConfig.from_dict({**PredictorConfig(species=(1,)).to_dict(), "colour": 1})
