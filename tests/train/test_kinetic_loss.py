"""The kinetic-energy loss term and the validation's kinetic ratio: what a predictor that keeps
only a fraction of the true momenta is told, per species and per system."""

from __future__ import annotations

import pytest
import torch

from flashmd.data.dataset import collate
from flashmd.train.losses import (
    Normalisation,
    expected_kinetic_energies,
    kinetic_energies,
    kinetic_loss,
)


def _two_systems() -> dict[str, torch.Tensor]:
    """Two systems: Al2Cu (3 atoms) and Al (2 atoms), with target momenta, float64."""
    generator = torch.Generator().manual_seed(3)
    items = []
    for numbers, masses in (([13, 13, 29], [26.98, 26.98, 63.55]), ([13, 13], [26.98, 26.98])):
        n = len(numbers)
        items.append(
            {
                "numbers": torch.tensor(numbers),
                "masses": torch.tensor(masses, dtype=torch.float64),
                "positions": torch.randn(n, 3, generator=generator, dtype=torch.float64),
                "momenta": torch.randn(n, 3, generator=generator, dtype=torch.float64),
                "target_momenta": torch.randn(n, 3, generator=generator, dtype=torch.float64),
                "cell": torch.eye(3, dtype=torch.float64)[None] * 10,
                "pbc": torch.ones(1, 3, dtype=torch.bool),
                "stride": torch.tensor([32.0], dtype=torch.float64),
                "system": torch.zeros(n, dtype=torch.long),
                "n_atoms": torch.tensor([n]),
            }
        )
    return collate(items)


def _norm() -> Normalisation:
    ones = torch.ones(2, 1, dtype=torch.float64)
    return Normalisation((13, 29), (32.0,), ones, ones * 0.5, torch.zeros(2), 1.0, 1.0)


def test_kinetic_energies_are_summed_per_species_of_each_system():
    batch, norm = _two_systems(), _norm()
    kinetic = kinetic_energies(batch, norm, batch["target_momenta"])
    expected = expected_kinetic_energies(batch, norm)
    per_atom = (batch["target_momenta"] ** 2).sum(1) / (2 * batch["masses"])
    # groups: (system 0, Al), (system 0, Cu), (system 1, Al), (system 1, Cu: empty)
    want = torch.stack([per_atom[:2].sum(), per_atom[2], per_atom[3:].sum(), per_atom[:0].sum()])
    torch.testing.assert_close(kinetic, want)
    torch.testing.assert_close(expected, torch.tensor([1.5, 0.75, 1.5, 0.0], dtype=torch.float64))


def test_kinetic_loss_is_zero_at_the_truth_and_asks_for_the_missing_energy():
    batch, norm = _two_systems(), _norm()
    assert float(kinetic_loss(batch, norm, batch["target_momenta"])) == 0.0
    # a conditional mean keeps a fraction c of the momenta: K falls to c² K in every group
    c = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    loss = kinetic_loss(batch, norm, c * batch["target_momenta"])
    kinetic = kinetic_energies(batch, norm, batch["target_momenta"])
    expected = expected_kinetic_energies(batch, norm)
    present = expected > 0
    want = (((0.81 - 1) * kinetic / expected)[present] ** 2).mean()
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-12)
    loss.backward()
    assert float(c.grad) < 0  # descending the loss raises c: the momenta grow back
    # the empty group (no Cu in system 1) does not count
    assert int(present.sum()) == 3
