"""The ZBL wall of the energy model: the published formula inside, nothing beyond the switch,
smooth between; a model with it equals the same weights without it wherever atoms keep their
distance, and pushes close atoms apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import covalent_radii
from models_testkit import CUTOFF, SPECIES, make_atoms, tiny_energy

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.nn.repulsion import INNER, OUTER, ZBLRepulsion, zbl_energy


def pair_energy(z: int, r: torch.Tensor) -> torch.Tensor:
    """(n,) switched wall energy of two atoms of element ``z`` at distances ``r``."""
    wall = ZBLRepulsion((z,))
    vectors = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], dim=1)
    edges = torch.tensor([[0], [1]])
    out = [wall(torch.zeros(2, dtype=torch.long), v[None], edges).sum() * 2 for v in vectors]
    return torch.stack(out)  # one directed edge carries half; the pair has two


def test_zbl_matches_the_published_formula_at_one_angstrom():
    # Cu-Cu at 1 Å: a = 0.4685 / (2 * 29**0.23) Å, V = 14.3996 * 841 / 1 * phi(1 / a) eV
    a = 0.46850 / (2 * 29**0.23)
    x = 1.0 / a
    phi = (
        0.18175 * np.exp(-3.19980 * x)
        + 0.50986 * np.exp(-0.94229 * x)
        + 0.28022 * np.exp(-0.40290 * x)
        + 0.02817 * np.exp(-0.20162 * x)
    )
    expected = 14.399645 * 29 * 29 * phi
    z = torch.tensor(29.0, dtype=torch.float64)
    one = torch.tensor(1.0, dtype=torch.float64)
    assert float(zbl_energy(one, z, z)) == pytest.approx(expected, rel=1e-12)
    assert float(pair_energy(29, one[None])[0]) == pytest.approx(expected, rel=1e-12)


def test_the_wall_is_whole_inside_gone_outside_and_smooth_between():
    reach = 2 * covalent_radii[29]
    r = torch.linspace(0.3 * reach, 0.9 * reach, 601, dtype=torch.float64, requires_grad=True)
    energy = pair_energy(29, r)
    (force,) = torch.autograd.grad(energy.sum(), r)
    z = torch.tensor(29.0, dtype=torch.float64)
    inside, outside = r < INNER * reach, r > OUTER * reach
    torch.testing.assert_close(energy[inside], zbl_energy(r[inside], z, z))
    assert bool((energy[outside] == 0).all()) and bool((force[outside] == 0).all())
    assert bool((force[~outside] < 0).all())  # repulsive everywhere it acts
    jumps = (force[1:] - force[:-1]).abs()
    assert float(jumps.max()) < 0.05 * float(force.abs().max())  # no kink at either edge


def test_a_model_with_the_wall_equals_its_weights_without_it_at_normal_distances():
    plain = tiny_energy()
    config = EnergyConfig.preset("tiny", species=SPECIES, cutoff=CUTOFF, repulsion="zbl")
    walled = EnergyModel(config).to(torch.float64)
    walled.load_state_dict(plain.state_dict())
    atoms = make_atoms("periodic", seed=1)
    batch = batch_from_atoms(atoms, CUTOFF, dtype=torch.float64)
    ours, theirs = walled.compute(batch), plain.compute(batch)
    torch.testing.assert_close(ours[keys.ENERGY], theirs[keys.ENERGY], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[keys.FORCES], theirs[keys.FORCES], rtol=0, atol=1e-12)
    close = Atoms("Cu2", positions=[[0, 0, 0], [0.8, 0, 0]], cell=[10, 10, 10], pbc=True)
    batch = batch_from_atoms(close, CUTOFF, dtype=torch.float64)
    ours, theirs = walled.compute(batch), plain.compute(batch)
    assert float(ours[keys.ENERGY][0] - theirs[keys.ENERGY][0]) > 100  # eV: a wall
    assert float(ours[keys.FORCES][0, 0]) < -100 < 100 < float(ours[keys.FORCES][1, 0])


def test_checkpoints_record_the_wall(tmp_path):
    from flashmd.models.io import load_model, save_checkpoint
    from flashmd.models.model import FlashMDModel

    config = EnergyConfig.preset("tiny", species=SPECIES, cutoff=CUTOFF, repulsion="zbl")
    path = save_checkpoint(FlashMDModel(None, EnergyModel(config)), tmp_path / "walled.pt")
    loaded = load_model(str(path))
    assert loaded.energy_model is not None
    assert loaded.energy_model.config.repulsion == "zbl"
    assert loaded.energy_model.repulsion is not None
