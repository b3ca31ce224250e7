"""Symmetries of the generating function of symplectic strides, and its checkpoints."""

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
    randomized,
    relative_error,
    tiny_energy,
    tiny_generating,
    tiny_predictor,
    transformed,
)

from flashmd import keys
from flashmd.data.graph import batch_from_atoms
from flashmd.models.generating import GeneratingConfig, GeneratingFunction, stride_gradients
from flashmd.models.io import CheckpointError, load_checkpoint, save_checkpoint
from flashmd.models.model import FlashMDModel

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def gradients(atoms, dtype=torch.float64, stride_fs=32.0, momenta=None):
    """(W (S,), ∂S/∂p̄ (A, 3), -∂S/∂q̄ (A, 3)) of the tiny models at ``atoms``."""
    generating, energy = tiny_generating(dtype), tiny_energy(dtype)
    batch = batch_from_atoms(atoms, CUTOFF, stride_fs, dtype=dtype)
    if momenta is not None:
        batch[keys.MOMENTA] = momenta
    with torch.no_grad():
        w = generating(batch)
    dq, dp = stride_gradients(generating, energy, batch)
    return w, dq, dp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["periodic", "cluster", "slab"])
@pytest.mark.parametrize("reflect", [False, True])
def test_invariant_and_gradients_equivariant(dtype, kind, reflect):
    atoms = make_atoms(kind, seed=1)
    matrix = random_orthogonal(np.random.default_rng(2), reflect)
    shift = np.array([0.3, -1.1, 0.7])
    w, dq, dp = gradients(atoms, dtype)
    w_r, dq_r, dp_r = gradients(transformed(atoms, matrix, shift), dtype)
    rotation = torch.tensor(matrix, dtype=dtype)
    assert float(w.abs().max()) > 0  # the correction is on (randomised scales)
    assert relative_error(w_r, w) < TOLERANCE[dtype]
    assert relative_error(dq_r, dq @ rotation.T) < TOLERANCE[dtype]
    assert relative_error(dp_r, dp @ rotation.T) < TOLERANCE[dtype]


def test_even_in_momenta_so_displacement_odd_and_kick_even():
    atoms = make_atoms("periodic", seed=4)
    w, dq, dp = gradients(atoms)
    flipped = torch.tensor(-atoms.get_momenta())
    w_f, dq_f, dp_f = gradients(atoms, momenta=flipped)
    assert relative_error(w_f, w) < 1e-12
    assert relative_error(dq_f, -dq) < 1e-12
    assert relative_error(dp_f, dp) < 1e-12


def test_galilean_invariance_moves_the_centre_of_mass_by_free_flight():
    atoms = make_atoms("periodic", seed=5)
    masses = torch.tensor(atoms.get_masses())
    boost = masses[:, None] * torch.tensor([[0.02, -0.01, 0.015]], dtype=torch.float64)
    w, dq, dp = gradients(atoms)
    w_b, _, _ = gradients(atoms, momenta=torch.tensor(atoms.get_momenta()) + boost)
    assert relative_error(w_b, w) < 1e-10
    # Σ m_i ∂W/∂p_i = 0: the mass-weighted displacement is exactly h P
    momenta = torch.tensor(atoms.get_momenta())
    from flashmd.units import FS

    h = 32.0 * FS
    assert torch.allclose((masses[:, None] * dq).sum(0), h * momenta.sum(0), atol=1e-10)
    assert torch.allclose(dp.sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-10)


def test_checkpoint_round_trip_keeps_the_generating_function(tmp_path):
    model = FlashMDModel(tiny_predictor(), tiny_energy(), None, tiny_generating())
    path = save_checkpoint(model, tmp_path / "m.pt")
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.generating is not None
    assert loaded.symplectic_strides_fs == model.symplectic_strides_fs
    for name, value in model.generating.state_dict().items():
        assert torch.equal(loaded.generating.state_dict()[name], value)


def test_a_generating_function_needs_an_energy_model(tmp_path):
    with pytest.raises(ValueError, match="needs the energy model"):
        FlashMDModel(tiny_predictor(), None, None, tiny_generating())
    data = torch.load(
        save_checkpoint(
            FlashMDModel(tiny_predictor(), tiny_energy(), None, tiny_generating()),
            tmp_path / "m.pt",
        ),
        weights_only=True,
    )
    del data["models"]["energy"]
    torch.save(data, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="needs the energy model"):
        load_checkpoint(tmp_path / "broken.pt", device="cpu")


def test_symplectic_strides_without_a_generating_function_say_how_to_train_one():
    model = FlashMDModel(tiny_predictor(), tiny_energy())
    with pytest.raises(ValueError, match="generating: \\{preset"):
        model.check_strides([32.0], symplectic=True)


def _short_generating(cutoff: float) -> GeneratingFunction:
    torch.manual_seed(3)
    config = GeneratingConfig.preset("tiny", species=SPECIES, strides_fs=STRIDES_FS, cutoff=cutoff)
    return randomized(GeneratingFunction(config), 3).to(torch.float64)


def test_a_shorter_cutoff_keeps_only_its_own_edges():
    # W at 3 Å inside a model whose neighbour list reaches 4 Å: the same W and gradients as
    # from a neighbour list built at 3 Å, and not those of the 4 Å edges
    atoms = make_atoms("periodic", seed=6)
    generating, energy = _short_generating(3.0), tiny_energy()
    long = batch_from_atoms(atoms, CUTOFF, 32.0, dtype=torch.float64)
    short = batch_from_atoms(atoms, 3.0, 32.0, dtype=torch.float64)
    assert long[keys.EDGE_INDEX].shape[1] > short[keys.EDGE_INDEX].shape[1]
    with torch.no_grad():
        w_long, w_short = generating(long), generating(short)
    assert float(w_short.abs().max()) > 0
    assert relative_error(w_long, w_short) < 1e-12
    # the gradients' W part: subtract the energy model's (same at both, its own 4 Å edges)
    dq_long, dp_long = stride_gradients(generating, energy, long)
    dq_free, dp_free = stride_gradients(None, energy, long)
    displacement, kick = _w_stride_gradients(generating, short)
    assert relative_error(dq_long - dq_free, displacement) < 1e-10
    assert relative_error(dp_long - dp_free, kick) < 1e-10


def _w_stride_gradients(generating, batch, stride_fs=32.0):
    """``(h ∂W/∂p̄, -h ∂W/∂q̄)`` (A, 3) each: W's part of the stride's gradients."""
    from flashmd.units import FS

    q = batch[keys.POSITIONS].clone().requires_grad_(True)
    p = batch[keys.MOMENTA].clone().requires_grad_(True)
    w = generating({**batch, keys.POSITIONS: q, keys.MOMENTA: p})
    dq, dp = torch.autograd.grad(w.sum(), (q, p))
    return stride_fs * FS * dp, -stride_fs * FS * dq


def test_a_generating_function_may_reach_less_far_than_the_model_not_further(tmp_path):
    model = FlashMDModel(tiny_predictor(), tiny_energy(), None, _short_generating(3.0))
    assert model.cutoff == CUTOFF
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt"), device="cpu")
    assert loaded.generating.config.cutoff == 3.0
    with pytest.raises(ValueError, match="may be shorter, not longer"):
        FlashMDModel(tiny_predictor(), tiny_energy(), None, _short_generating(4.5))
