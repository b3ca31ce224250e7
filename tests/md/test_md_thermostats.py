"""Thermostats on the exact harmonic crystal: mean temperature and the kinetic-energy law.

The internal kinetic energy of a free periodic system with N atoms has 3N - 3 degrees of freedom
and follows a gamma distribution with shape (3N - 3)/2 and scale kB T. Samples are 10 strides
(160 fs) apart, several relaxation times of both thermostats, so a Kolmogorov-Smirnov test at the
1 % level applies. A wrong count of degrees of freedom (3N) shifts the mean by 14 % and fails.
"""

from __future__ import annotations

import pytest
import torch
from md_testkit import crystal, harmonic, thermal

from flashmd.md import rigid
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.md.thermostats import Bussi, Langevin, kinetic_temperature
from flashmd.units import FS, KB

TEMPERATURE_K = 500.0
REPLICAS = 96


def sample_kinetic(thermostat, seed: int) -> tuple[torch.Tensor, torch.Tensor, Stepper]:
    reference = crystal()
    model = harmonic([reference])
    systems = [thermal(reference, seed=seed + k, temperature_K=100.0) for k in range(REPLICAS)]
    stepper = Stepper(model, 16.0, potential=model, thermostat=thermostat)
    state = stepper.prepare(state_from_atoms(systems, seed=seed, ids=[0] * REPLICAS))
    momentum0 = rigid.conserved(state).momentum
    samples = []
    for stride in range(400):
        state, _ = stepper.step(state)
        if stride >= 100 and stride % 10 == 0:
            samples.append(state.kinetic_energy(rigid.internal_momenta(state)))
    assert float((rigid.conserved(state).momentum - momentum0).abs().max()) < 1e-8
    return torch.cat(samples), rigid.degrees_of_freedom(state), stepper


def ks_statistic(samples: torch.Tensor, shape: float, scale: float) -> float:
    x = torch.sort(samples).values
    cdf = torch.special.gammainc(torch.tensor(shape, dtype=x.dtype), x / scale)
    n = len(x)
    upper = torch.arange(1, n + 1, dtype=x.dtype) / n - cdf
    lower = cdf - torch.arange(0, n, dtype=x.dtype) / n
    return float(torch.maximum(upper, lower).max())


@pytest.mark.parametrize(
    "thermostat",
    [Langevin(TEMPERATURE_K, friction=1 / (50 * FS)), Bussi(TEMPERATURE_K, taut=50 * FS)],
    ids=["langevin", "bussi"],
)
def test_temperature_and_kinetic_energy_distribution(thermostat):
    kinetic, dof, stepper = sample_kinetic(thermostat, seed=11)
    assert torch.all(dof == 3 * 8 - 3)
    n_dof = float(dof[0])
    temperature = 2 * kinetic.mean() / (n_dof * KB)
    assert abs(float(temperature) / TEMPERATURE_K - 1) < 0.02
    statistic = ks_statistic(kinetic, n_dof / 2, KB * TEMPERATURE_K)
    print(f"T/T0 = {float(temperature) / TEMPERATURE_K:.4f}, KS D = {statistic:.4f}")
    assert statistic < 1.63 / len(kinetic) ** 0.5  # 1 % level
    assert stepper.fallbacks == 0  # the flow is exact: only the thermostat changes the energy


def test_ks_statistic_rejects_wrong_degrees_of_freedom():
    generator = torch.Generator().manual_seed(0)
    normals = torch.randn((3000, 21), generator=generator, dtype=torch.float64)
    samples = 0.5 * (normals**2).sum(dim=1) * KB * 500  # gamma(21/2, kB T)
    assert ks_statistic(samples, 21 / 2, KB * 500) < 1.63 / 3000**0.5
    assert ks_statistic(samples, 24 / 2, KB * 500) > 1.63 / 3000**0.5


def test_thermostatted_filter_conserves_deterministic_energy():
    """The target moves only by the thermostat's kinetic-energy change: K + V - target is 0."""
    reference = crystal()
    model = harmonic([reference])
    stepper = Stepper(model, 32.0, potential=model, thermostat=Langevin(300.0, 1 / (100 * FS)))
    state = stepper.prepare(state_from_atoms(thermal(reference, seed=3)))
    for _ in range(50):
        state, _ = stepper.step(state)
    residual = state.kinetic_energy() + model.energy(state, None) - state.target_energy
    assert float(residual.abs().max()) < 1e-9
    assert float(kinetic_temperature(state)[0]) > 0
