"""Time-reversal error: exact for free flight, clearly nonzero for a perturbed map, within the
solver's tolerance for symplectic strides."""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from flashmd.analysis.time_reversal import time_reversal_error
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.generating import GeneratingConfig, GeneratingFunction
from flashmd.models.model import FlashMDModel
from flashmd.models.predictor import Predictor, PredictorConfig


def crystal(seed: int):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    rng = np.random.default_rng(seed)
    atoms.rattle(0.05, rng=rng)
    thermalize_momenta(atoms, temperature_K=600, rng=rng)
    Stationary(atoms)
    return atoms


def tiny_model() -> FlashMDModel:
    torch.manual_seed(0)
    predictor = Predictor(PredictorConfig.preset("tiny", species=(29,), strides_fs=(16.0, 32.0)))
    energy = EnergyModel(EnergyConfig.preset("tiny", species=(29,)))
    return FlashMDModel(predictor, energy).to(torch.float64)


def test_free_flight_is_exactly_reversible():
    result = time_reversal_error(tiny_model(), [crystal(0), crystal(1)], 32.0)
    assert result.position_rmse.shape == (2,)
    assert result.position_rmse.max() < 1e-12 and result.momentum_rmse.max() < 1e-12


def test_a_perturbed_map_is_not():
    model = tiny_model()
    with torch.no_grad():
        for parameter in model.predictor.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    result = time_reversal_error(model, crystal(0), 32.0)
    assert result.position_rmse[0] > 1e-4


def test_symplectic_strides_return_within_the_solver_tolerance():
    from flashmd.md.symplectic import SolverConfig

    model = tiny_model()
    with torch.no_grad():
        for parameter in model.predictor.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    config = GeneratingConfig.preset("tiny", species=(29,), strides_fs=(16.0, 32.0))
    generating = GeneratingFunction(config).to(torch.float64)
    with torch.no_grad():
        generating.stride_scale.fill_(1.0)
    model = FlashMDModel(model.predictor, model.energy_model, None, generating)
    direct = time_reversal_error(model, crystal(0), 32.0)
    exact = time_reversal_error(
        model, crystal(0), 32.0, symplectic=True, solver=SolverConfig(tolerance_A=1e-10)
    )
    assert direct.position_rmse[0] > 1e-4
    assert exact.position_rmse[0] < 1e-9 and exact.momentum_rmse[0] < 1e-8
