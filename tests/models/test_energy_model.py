"""Invariance, forces and stress of the energy model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_testkit import (
    CUTOFF,
    SPECIES,
    make_atoms,
    random_orthogonal,
    relative_error,
    tiny_energy,
    transformed,
)

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.keys import STRESS
from flashmd.models.config import PRESETS
from flashmd.models.energy import EnergyConfig, EnergyModel

KINDS = ["periodic", "cluster", "slab"]


def compute(model, atoms, **kwargs):
    dtype = next(model.parameters()).dtype
    return model.compute(batch_from_atoms(atoms, CUTOFF, dtype=dtype), **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reflect", [False, True])
def test_energy_invariant_forces_equivariant(dtype, kind, reflect):
    model = tiny_energy(dtype)
    atoms = make_atoms(kind, seed=1)
    matrix = random_orthogonal(np.random.default_rng(3), reflect)
    shift = np.array([1.5, -2.0, 7.0])
    plain = compute(model, atoms)
    moved = compute(model, transformed(atoms, matrix, shift))
    tolerance = 1e-5 if dtype == torch.float32 else 1e-10
    assert relative_error(moved[keys.ENERGY], plain[keys.ENERGY]) < tolerance
    rotation = torch.tensor(matrix, dtype=dtype)
    assert relative_error(moved[keys.FORCES], plain[keys.FORCES] @ rotation.T) < tolerance


def test_permutation_invariant():
    model = tiny_energy()
    atoms = make_atoms("periodic", seed=2)
    permutation = np.random.default_rng(4).permutation(len(atoms))
    plain, permuted = compute(model, atoms), compute(model, atoms[permutation])
    torch.testing.assert_close(permuted[keys.ENERGY], plain[keys.ENERGY], rtol=1e-13, atol=0)
    torch.testing.assert_close(permuted[keys.FORCES], plain[keys.FORCES][permutation])


@pytest.mark.parametrize("kind", KINDS)
def test_forces_are_minus_finite_difference_gradient(kind):
    model = tiny_energy()
    atoms = make_atoms(kind, seed=5)
    forces = compute(model, atoms)[keys.FORCES].numpy()
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (len(atoms) - 1, 2)]:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[atom, axis] += sign * h
            energies.append(float(compute(model, displaced, forces=False)[keys.ENERGY][0].detach()))
        gradient = (energies[0] - energies[1]) / (2 * h)
        assert forces[atom, axis] == pytest.approx(-gradient, abs=1e-7)


def test_stress_is_strain_derivative_over_volume():
    model = tiny_energy()
    atoms = make_atoms("periodic", seed=6)
    stress = compute(model, atoms, stress=True)[STRESS][0].numpy()
    volume = atoms.get_volume()
    h = 1e-5
    for a, b in [(0, 0), (1, 2), (2, 0)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += 0.5 * sign * h
            strain[b, a] += 0.5 * sign * h
            strained = atoms.copy()
            strained.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
            energies.append(float(compute(model, strained, forces=False)[keys.ENERGY][0].detach()))
        assert stress[a, b] == pytest.approx(
            (energies[0] - energies[1]) / (2 * h) / volume, abs=1e-8
        )
    np.testing.assert_allclose(stress, stress.T, atol=1e-14)


def test_stress_of_open_system_is_a_clear_error():
    with pytest.raises(ValueError, match="fully periodic"):
        compute(tiny_energy(), make_atoms("slab"), stress=True)


def test_batch_equals_systems_one_by_one():
    model = tiny_energy()
    systems = [make_atoms(kind, seed=7 + k) for k, kind in enumerate(KINDS)]
    batched = model.compute(batch_from_atoms(systems, CUTOFF, dtype=torch.float64))
    singles = [compute(model, atoms) for atoms in systems]
    torch.testing.assert_close(
        batched[keys.ENERGY], torch.cat([s[keys.ENERGY] for s in singles]), rtol=1e-13, atol=0
    )
    torch.testing.assert_close(
        batched[keys.FORCES], torch.cat([s[keys.FORCES] for s in singles]), rtol=0, atol=1e-12
    )


def test_species_shift_adds_per_atom_reference_energy():
    model = tiny_energy()
    atoms = make_atoms("cluster", seed=8)
    before = float(compute(model, atoms, forces=False)[keys.ENERGY][0].detach())
    with torch.no_grad():
        model.energy_shift[SPECIES.index(29)] += 0.25
    after = float(compute(model, atoms, forces=False)[keys.ENERGY][0].detach())
    assert after - before == pytest.approx(0.25 * int((atoms.numbers == 29).sum()), abs=1e-12)


def test_create_graph_allows_training_on_forces():
    model = tiny_energy()
    batch = batch_from_atoms(make_atoms("periodic", seed=9), CUTOFF, dtype=torch.float64)
    out = model.compute(batch, create_graph=True)
    (out[keys.FORCES].square().sum() + out[keys.ENERGY].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.backbone.layers[0].radial_mlp.layer0.weight.grad.abs().max() > 0


def test_forward_is_energy_and_leaves_batch_untouched():
    model = tiny_energy()
    batch = batch_from_atoms(make_atoms("periodic", seed=10), CUTOFF, dtype=torch.float64)
    energy = model(batch)
    assert energy.shape == (1,) and not batch[keys.POSITIONS].requires_grad


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_round_trip(name):
    config = EnergyConfig.preset(name, species=(1, 6, 8))
    assert EnergyConfig.from_dict(config.to_dict()) == config
    EnergyModel(config)
