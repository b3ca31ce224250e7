"""The engine on a (randomised, untrained) FlashMDModel: the filter makes any model conserve
energy, falls back when it must, and works in float32 and float64."""

from __future__ import annotations

import pytest
import torch
from ase.calculators.emt import EMT
from md_testkit import cluster, crystal, thermal, tiny_model

from flashmd.md import rigid
from flashmd.md.filters import FilterConfig
from flashmd.md.propagators import CalculatorPotential, ModelPotential, ModelPropagator
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.models import FlashMDModel, Predictor, PredictorConfig


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_filter_conserves_model_energy_with_fallbacks(dtype):
    model = tiny_model(dtype)
    systems = [thermal(crystal((2, 2, 1)), seed=1, temperature_K=600), thermal(cluster(), seed=2)]
    stepper = Stepper(
        ModelPropagator(model),
        16.0,
        potential=ModelPotential(model),
        # this random model needs alpha up to ~2 % from 1 either way
        filters=FilterConfig(max_cooling=0.01, max_heating=0.01),
    )
    state = stepper.prepare(state_from_atoms(systems))
    rescaled = False
    target, start = state.target_energy.clone(), rigid.conserved(state)
    for _ in range(30):
        state, stats = stepper.step(state)
        assert bool(torch.isfinite(state.positions).all() & torch.isfinite(state.momenta).all())
        assert bool(torch.isfinite(stats.scale).all())
        rescaled |= bool(((stats.scale - 1).abs() > 1e-3).any())
    energy = state.kinetic_energy() + stepper.potential_energy(state)
    per_atom = (energy - target) / state.n_atoms
    assert float(per_atom.abs().max()) < 1e-5
    end = rigid.conserved(state)
    assert float((end.momentum - start.momentum).abs().max()) < 1e-8
    assert float((end.angular - start.angular).abs().max()) < 1e-8
    assert rescaled and stepper.fallbacks > 0


def test_unsupported_stride_and_species_are_refused():
    model = tiny_model()
    stepper = Stepper(ModelPropagator(model), 20.0, potential=ModelPotential(model))
    with pytest.raises(ValueError, match="20 fs is not supported"):
        stepper.prepare(state_from_atoms(thermal(crystal(), seed=1)))
    copper = thermal(crystal(), seed=1)
    copper.symbols[0] = "Cu"
    stepper = Stepper(ModelPropagator(model), 16.0, potential=ModelPotential(model))
    with pytest.raises(ValueError, match="Cu"):
        stepper.prepare(state_from_atoms(copper))


def test_ase_calculator_as_potential_with_free_flight():
    """An untrained predictor is free flight; with EMT as V the filter and its Verlet fallback
    (on EMT forces) keep the EMT total energy."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = PredictorConfig.preset("tiny", species=(13,), strides_fs=(16.0,), cutoff=4.0)
        model = FlashMDModel(Predictor(config).double())
    potential = CalculatorPotential(EMT())
    stepper = Stepper(ModelPropagator(model), 16.0, potential=potential)
    state = stepper.prepare(state_from_atoms(thermal(crystal(), seed=4, temperature_K=300)))
    target = state.target_energy.clone()
    for _ in range(10):
        state, _ = stepper.step(state)
    energy = state.kinetic_energy() + potential.energy(state, None)
    assert float((energy - target).abs().max()) / 8 < 1e-8
    assert stepper.fallbacks > 0  # free flight in a crystal: V rises beyond any rescaling
