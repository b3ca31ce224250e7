"""Exact canonical sampling (flashmd.md.metropolis): a biased stride corrected to the exact
harmonic distribution, the bookkeeping of accepted and rejected strides, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from md_testkit import crystal, harmonic, thermal, tiny_model, tiny_symplectic_model

from flashmd.ase import FlashMDMetropolis
from flashmd.md.batch import MDSettings
from flashmd.md.harmonic import HarmonicCrystal
from flashmd.md.metropolis import MetropolisConfig, MetropolisStepper, chance_probability
from flashmd.md.propagators import ModelPotential, ModelPropagator
from flashmd.md.state import state_from_atoms
from flashmd.md.symplectic import SymplecticPropagator
from flashmd.units import FS, KB

T = 300.0


def chain_energies(stepper, state, strides, burn_in, exact):
    """(strides - burn_in, S) the exact potential energy of every system along the chain."""
    state = stepper.prepare(state)
    energies = []
    for k in range(strides):
        state, _ = stepper.step(state)
        if k >= burn_in:
            energies.append(exact.energy(state, None).numpy())
    return np.array(energies)


def z_scores(energies, dof):
    """(z of the mean of V, z of the mean of V²) against the canonical values of a harmonic
    crystal with ``dof`` non-zero modes (``V/kT`` is Gamma-distributed with shape ``dof/2``);
    standard errors from the independent chains' means, so the chains' autocorrelation does
    not enter (a variance around each chain's own mean would be biased low by it)."""
    kT, shape = KB * T, dof / 2
    exact = (shape * kT, shape * (shape + 1) * kT**2)
    scores = []
    for values, expected in zip((energies, energies**2), exact, strict=True):
        means = values.mean(axis=0)
        scores.append((means.mean() - expected) / (means.std(ddof=1) / np.sqrt(len(means))))
    return tuple(scores)


@pytest.mark.parametrize(
    ("persistence", "drift", "extra"), [(0.0, 0.0, 0), (0.5, 0.0, 0), (0.9, 0.05, 0), (0.9, 0, 2)]
)
def test_a_biased_stride_samples_the_exact_harmonic_distribution_only_when_corrected(
    persistence, drift, extra
):
    systems = [thermal(crystal(), seed, T) for seed in range(8)]
    exact = harmonic([crystal()] * 8)
    # the exact flow of springs 30 % too stiff: volume-preserving and reversible, but wrong
    biased = HarmonicCrystal([crystal()] * 8, spring=2.6, bond_cutoff=3.2)
    dof = 3 * len(systems[0]) - 3
    config = MetropolisConfig(T, persistence=persistence, uniform_drift=drift, extra_chances=extra)
    corrected = MetropolisStepper(biased, 64.0, exact, config)
    unadjusted = MetropolisStepper(biased, 64.0, biased, config)  # accepts every stride
    state = state_from_atoms(systems, seed=3)
    z_corrected = z_scores(chain_energies(corrected, state, 700, 50, exact), dof)
    z_unadjusted = z_scores(chain_energies(unadjusted, state, 700, 50, exact), dof)
    assert max(abs(z) for z in z_corrected) < 3, z_corrected
    assert min(abs(z) for z in z_unadjusted) > 10, z_unadjusted
    assert 0.3 < corrected.acceptance_rate < 0.95 and unadjusted.acceptance_rate == 1.0
    assert corrected.irreversible == 0 and corrected.unconverged == 0


def test_a_rejected_stride_keeps_positions_and_reverses_momenta():
    systems = [thermal(crystal(), seed, T) for seed in range(4)]
    exact = harmonic([crystal()] * 4)
    biased = HarmonicCrystal([crystal()] * 4, spring=8.0, bond_cutoff=3.2)
    stepper = MetropolisStepper(biased, 64.0, exact, MetropolisConfig(T, persistence=0.9))
    state = stepper.prepare(state_from_atoms(systems, seed=0))
    rejected_seen = accepted_seen = 0
    for _ in range(20):
        refreshed_before = state
        state, stats = stepper.step(state)
        total = state.kinetic_energy() + exact.energy(state, None)
        torch.testing.assert_close(state.target_energy, total)
        torch.testing.assert_close(stats.potential_energy, exact.energy(state, None))
        rejected = ~stats.accepted
        atoms = rejected[state.system]
        torch.testing.assert_close(state.positions[atoms], refreshed_before.positions[atoms])
        rejected_seen += int(rejected.sum())
        accepted_seen += int(stats.accepted.sum())
    assert rejected_seen > 0 and accepted_seen > 0
    assert stepper.accepted == accepted_seen and stepper.proposals == 80
    assert 0 < stepper.mean_acceptance_probability < 1


def rejection_runs(drift: float) -> tuple[float, float]:
    """(acceptance rate, chance that a rejection follows a rejection) of 8 harmonic chains
    with a biased stride, 400 strides, momenta kept 0.9."""
    systems = [thermal(crystal(), seed, T) for seed in range(8)]
    exact = harmonic([crystal()] * 8)
    biased = HarmonicCrystal([crystal()] * 8, spring=2.6, bond_cutoff=3.2)
    config = MetropolisConfig(T, persistence=0.9, uniform_drift=drift)
    stepper = MetropolisStepper(biased, 64.0, exact, config)
    state = stepper.prepare(state_from_atoms(systems, seed=5))
    accepted = []
    for _ in range(400):
        state, stats = stepper.step(state)
        accepted.append(stats.accepted.numpy())
    rejected = ~np.array(accepted)
    after_rejection = rejected[1:][rejected[:-1]]
    return stepper.acceptance_rate, float(after_rejection.mean())


def test_a_drifting_uniform_groups_rejections_without_changing_the_acceptance_rate():
    rate, repeat = rejection_runs(0.0)
    rate_drift, repeat_drift = rejection_runs(0.03)
    assert abs(rate_drift - rate) < 0.05, (rate, rate_drift)
    # independent uniforms: a rejection follows a rejection about as often as any stride is
    # rejected; a slowly moving uniform makes rejections come in runs
    assert repeat < (1 - rate) + 0.15 and repeat_drift > repeat + 0.1, (repeat, repeat_drift)


@pytest.mark.parametrize("chances", [1, 2, 3])
def test_extra_chance_probabilities_obey_detailed_balance_along_any_orbit(chances):
    generator = torch.Generator().manual_seed(chances)
    for _ in range(20):
        # log π along an orbit x_0..x_j; the reverse move starts at R x_j and sees them reversed
        values = 2.0 * torch.randn(chances + 1, 6, generator=generator, dtype=torch.float64)
        forward = [values[i] - values[0] for i in range(chances + 1)]
        for j in range(1, chances + 1):
            there = chance_probability(forward[: j + 1])
            back = chance_probability([values[j - i] - values[j] for i in range(j + 1)])
            torch.testing.assert_close(values[0].exp() * there, values[j].exp() * back)
        total = sum(chance_probability(forward[: j + 1]) for j in range(1, chances + 1))
        assert bool((total <= 1 + 1e-12).all())
    # one chance is the plain Metropolis rule
    log_ratio = torch.tensor([-1.0, 0.5, -torch.inf], dtype=torch.float64)
    plain = chance_probability([torch.zeros(3, dtype=torch.float64), log_ratio])
    torch.testing.assert_close(plain, log_ratio.clamp(max=0).exp())


def test_extra_chances_take_rejected_strides_further_instead_of_reversing_them():
    systems = [thermal(crystal(), seed, T) for seed in range(8)]
    exact = harmonic([crystal()] * 8)
    biased = HarmonicCrystal([crystal()] * 8, spring=2.6, bond_cutoff=3.2)
    rates = []
    for extra in (0, 2):
        config = MetropolisConfig(T, persistence=0.9, extra_chances=extra)
        stepper = MetropolisStepper(biased, 64.0, exact, config)
        state = stepper.prepare(state_from_atoms(systems, seed=5))
        for _ in range(150):
            state, _ = stepper.step(state)
            total = state.kinetic_energy() + exact.energy(state, None)
            torch.testing.assert_close(state.target_energy, total)
        rates.append(stepper.acceptance_rate)
        assert (stepper.extra_strides > 0) == bool(extra)
    assert rates[1] > rates[0] + 0.1, rates
    with pytest.raises(ValueError, match="pick one"):
        MetropolisConfig(T, uniform_drift=0.05, extra_chances=1)
    with pytest.raises(ValueError, match="extra_chances"):
        MetropolisConfig(T, extra_chances=-1)


def test_a_uniform_drift_reaches_the_ase_chain_and_is_refused_where_it_means_nothing():
    atoms = thermal(crystal(), 0, T)
    model = harmonic([crystal()])
    dynamics = FlashMDMetropolis(
        atoms, 64 * FS, temperature_K=T, model=model, persistence=0.9, uniform_drift=0.05
    )
    dynamics.run(5)
    assert dynamics.stepper.config.uniform_drift == 0.05
    assert dynamics.stepper.proposals == 5
    with pytest.raises(ValueError, match="uniform_drift"):
        MetropolisConfig(T, uniform_drift=1.5)
    with pytest.raises(ValueError, match="--ensemble metropolis"):
        MDSettings(model="m", structures=("a.xyz",), ensemble="langevin", uniform_drift=0.05)


def test_extra_chances_reach_the_ase_chain_and_are_refused_where_they_mean_nothing():
    atoms = thermal(crystal(), 0, T)
    biased = HarmonicCrystal([crystal()], spring=8.0, bond_cutoff=3.2)
    dynamics = FlashMDMetropolis(atoms, 64 * FS, temperature_K=T, model=biased, extra_chances=2)
    dynamics.run(10)
    assert dynamics.stepper.config.extra_chances == 2 and dynamics.stepper.proposals == 10
    with pytest.raises(ValueError, match="--ensemble metropolis"):
        MDSettings(model="m", structures=("a.xyz",), ensemble="langevin", extra_chances=1)


class Drifting:
    """The exact harmonic flow plus a shift of every atom by 0.01 Å along x: it claims to be
    volume-preserving (it is) but is not time-reversible."""

    volume_preserving = True

    def __init__(self, inner: HarmonicCrystal) -> None:
        self.inner, self.cutoff = inner, None

    def check(self, state, stride_fs):
        self.inner.check(state, stride_fs)

    def propagate(self, state, edges, stride_fs):
        positions, momenta = self.inner.propagate(state, edges, stride_fs)
        return positions + torch.tensor([0.01, 0.0, 0.0], dtype=positions.dtype), momenta


def test_a_proposal_that_does_not_solve_back_to_its_start_is_rejected():
    exact = harmonic([crystal()] * 2)
    stepper = MetropolisStepper(Drifting(exact), 32.0, exact, MetropolisConfig(T))
    state = stepper.prepare(state_from_atoms([thermal(crystal(), s, T) for s in range(2)]))
    start = state.positions.clone()
    for _ in range(3):
        state, stats = stepper.step(state)
        assert not bool(stats.accepted.any())
    torch.testing.assert_close(state.positions, start)
    assert stepper.irreversible == 6 and stepper.accepted == 0
    unchecked = MetropolisStepper(
        Drifting(exact), 32.0, exact, MetropolisConfig(T, check_reversibility=False)
    )
    unchecked.step(unchecked.prepare(state))
    assert unchecked.irreversible == 0


def test_a_collapsing_acceptance_rate_warns_with_the_fix():
    exact = harmonic([crystal()] * 4)
    far_off = HarmonicCrystal([crystal()] * 4, spring=40.0, bond_cutoff=3.2)
    config = MetropolisConfig(T, min_acceptance=0.5, warn_after=8)
    stepper = MetropolisStepper(far_off, 64.0, exact, config)
    state = stepper.prepare(state_from_atoms([thermal(crystal(), s, T) for s in range(4)]))
    with pytest.warns(RuntimeWarning, match="shorter stride"):
        for _ in range(4):
            state, _ = stepper.step(state)


def test_direct_strides_and_impossible_settings_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="symplectic=True"):
        MetropolisStepper(ModelPropagator(model), 16.0, ModelPotential(model), MetropolisConfig(T))
    with pytest.raises(ValueError, match="NVE"):
        MetropolisConfig(0.0)
    with pytest.raises(ValueError, match="persistence"):
        MetropolisConfig(T, persistence=1.0)


def test_symplectic_model_strides_are_proposals_and_keep_the_energy_bookkeeping():
    model = tiny_symplectic_model()
    systems = [thermal(crystal(), seed, T) for seed in range(2)]
    stepper = MetropolisStepper(
        SymplecticPropagator(model), 16.0, ModelPotential(model), MetropolisConfig(T)
    )
    state = stepper.prepare(state_from_atoms(systems, seed=1))
    for _ in range(3):
        state, stats = stepper.step(state)
        assert stats.iterations is not None and bool((stats.iterations > 0).all())
        energy = ModelPotential(model).energy(state, stepper.edges(model.cutoff, state))
        torch.testing.assert_close(state.target_energy, state.kinetic_energy() + energy)
    assert stepper.irreversible == 0 and stepper.proposals == 6
    assert np.isfinite(stepper.last_delta_H.numpy()).all()


def test_ase_metropolis_runs_the_harmonic_chain_and_refuses_a_direct_model():
    atoms = thermal(crystal(), 0, T)
    dynamics = FlashMDMetropolis(
        atoms, 64 * FS, temperature_K=T, model=harmonic([crystal()]), seed=0
    )
    start = atoms.positions.copy()
    dynamics.run(10)
    assert 0 < dynamics.acceptance_rate <= 1 and not np.allclose(atoms.positions, start)
    with pytest.raises(ValueError, match="generating function"):
        FlashMDMetropolis(thermal(crystal(), 0, T), 16 * FS, temperature_K=T, model=tiny_model())


def test_ase_metropolis_samples_the_attached_calculator_when_asked():
    atoms = thermal(crystal(), 0, T)
    atoms.calc = EMT()
    dynamics = FlashMDMetropolis(
        atoms, 16 * FS, temperature_K=T, model=tiny_symplectic_model(), sample="calculator", seed=0
    )
    dynamics.run(2)
    assert dynamics.stepper.proposals == 2
    assert np.isfinite(dynamics.stepper.last_delta_H.numpy()).all()
    with pytest.raises(ValueError, match="calculator attached"):
        FlashMDMetropolis(
            thermal(crystal(), 0, T),
            16 * FS,
            temperature_K=T,
            model=tiny_symplectic_model(),
            sample="calculator",
        )
