"""``scripts/explicit_strides.py``: one velocity-Verlet step per stride on the modified
potential, with processed positions, checked on an Einstein crystal where everything is exact."""

from __future__ import annotations

from types import SimpleNamespace

import ase
import numpy as np
import pytest
import torch

from flashmd import keys
from flashmd.md.state import state_from_atoms
from flashmd.nn.scatter import scatter_sum
from flashmd.units import FS
from tests.conftest import load_script

load_script("nve_check")  # the script imports these two as sibling modules
load_script("profile_generating")
explicit_strides = load_script("explicit_strides")

SPRING = 2.0  # eV/Å²
MASS = 63.546  # amu (Cu)


class EinsteinCrystal(torch.nn.Module):
    """Every atom on its own spring to its site: ``V = (k/2) Σ |q - q₀|²`` (eV)."""

    def __init__(self, sites: torch.Tensor) -> None:
        super().__init__()
        self.sites = sites

    def compute(self, batch: dict[str, torch.Tensor], forces: bool = False) -> dict:
        assert not forces
        per_atom = 0.5 * SPRING * ((batch[keys.POSITIONS] - self.sites) ** 2).sum(1)
        n_systems = batch[keys.N_ATOMS].shape[0]
        return {keys.ENERGY: scatter_sum(per_atom, batch[keys.SYSTEM], n_systems)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.compute(batch)[keys.ENERGY]


def einstein(stride_fs: float, modification: float, processing: float, displacement: float):
    """Two Cu atoms 6 Å apart, the first displaced along x, at rest."""
    atoms = ase.Atoms("Cu2", positions=[[0, 0, 0], [6, 0, 0]], cell=[12, 12, 12], pbc=True)
    sites = torch.tensor(atoms.positions, dtype=torch.float64)
    atoms.positions[0, 0] += displacement
    model = SimpleNamespace(energy_model=EinsteinCrystal(sites), cutoff=3.0, dtype=torch.float64)
    state = state_from_atoms(atoms)
    return explicit_strides.ExplicitStrides(model, state, stride_fs, modification, processing)


def turn(stride: object) -> float:
    """Cosine of the angle one stride turns the Einstein oscillator by (from rest)."""
    q0 = stride.state.positions
    _, modified = stride.gradients(q0)
    q, _, _, _ = stride.step(q0, torch.zeros_like(q0), modified)
    return float(q[0, 0] / q0[0, 0])  # the first atom's site is the origin


@pytest.mark.parametrize("stride_fs", [16.0, 32.0])
def test_the_modified_potential_turns_a_mode_by_the_true_angle_to_fifth_order(stride_fs):
    h_omega = stride_fs * FS * np.sqrt(SPRING / MASS)  # 0.29 and 0.57 rad
    plain = abs(turn(einstein(stride_fs, 0.0, 0.0, 0.1)) - np.cos(h_omega))
    modified = abs(turn(einstein(stride_fs, 1.0, 1.0, 0.1)) - np.cos(h_omega))
    assert plain == pytest.approx(h_omega**4 / 24, rel=0.1)  # 1 - x²/2 against cos x
    assert modified < 0.02 * plain


def test_a_stride_run_back_with_flipped_momenta_returns_to_the_start():
    stride = einstein(32.0, 1.0, 1.0, 0.1)
    q, p = stride.state.positions, stride.state.momenta + 0.3
    _, modified = stride.gradients(q)
    q1, p1, _, modified1 = stride.step(q, p, modified)
    q2, p2, _, _ = stride.step(q1, -p1, modified1)
    assert float((q1 - q).abs().max()) > 0.01  # it moved
    torch.testing.assert_close(q2, q, rtol=0, atol=1e-12)
    torch.testing.assert_close(-p2, p, rtol=0, atol=1e-12)


def test_processing_keeps_the_true_energy_of_the_output_frames():
    """Internal positions swing too wide by ``hω / sin(hω)``; processed ones hold ``K + V``."""
    spreads = {}
    for processing in (0.0, 1.0):
        run = einstein(32.0, 1.0, processing, 0.1).run(200, energy_every=1)
        energies = run["energies"]
        assert run["momenta"].shape == (200, 2, 3)
        spreads[processing] = np.ptp(energies) / np.mean(energies)
    assert spreads[0.0] > 0.05
    assert spreads[1.0] < 0.05 * spreads[0.0]
