"""Hybrid Monte Carlo proposals (flashmd.md.leapfrog): velocity-Verlet (or two-stage) steps
across the stride are exactly reversible and volume-preserving, a chain of them samples the exact
harmonic distribution, and it spends one force evaluation per step (two-stage: two)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from md_testkit import crystal, harmonic, thermal, tiny_model
from test_metropolis import T, chain_energies, z_scores

from flashmd.ase import FlashMDMetropolis
from flashmd.md.batch import MDSettings
from flashmd.md.leapfrog import KickPotential, LeapfrogProposal, leapfrog_potential
from flashmd.md.metropolis import MetropolisConfig, MetropolisStepper
from flashmd.md.propagators import ModelPotential
from flashmd.md.splitting import SPLITTINGS, TWO_STAGE, VELOCITY_VERLET
from flashmd.md.state import state_from_atoms
from flashmd.models.kick import KickConfig, KickField
from flashmd.models.model import FlashMDModel
from flashmd.units import FS


def test_the_command_line_offers_every_splitting():
    from flashmd.cli_parser import SPLITTING_NAMES

    assert sorted(SPLITTING_NAMES) == sorted(SPLITTINGS)


@pytest.mark.parametrize("splitting", sorted(SPLITTINGS))
def test_leapfrog_steps_retrace_their_path_and_keep_phase_space_volume(splitting):
    state = state_from_atoms([thermal(crystal(), 0, T)])
    proposal = LeapfrogProposal(harmonic([crystal()]), steps=3, splitting=splitting)
    positions, momenta = proposal.propagate(state, None, 48.0)
    end = state.replace(positions=positions, momenta=-momenta)
    back_positions, back_momenta = proposal.propagate(end, None, 48.0)
    torch.testing.assert_close(back_positions, state.positions, rtol=0, atol=1e-12)
    torch.testing.assert_close(-back_momenta, state.momenta, rtol=0, atol=1e-12)

    def flat_map(x: torch.Tensor) -> torch.Tensor:
        q, p = x[: x.numel() // 2].view(-1, 3), x[x.numel() // 2 :].view(-1, 3)
        moved = LeapfrogProposal(harmonic([crystal()]), steps=3, splitting=splitting)
        out = moved.propagate(state.replace(positions=q, momenta=p), None, 48.0)
        return torch.cat([o.reshape(-1) for o in out])

    x = torch.cat([state.positions.reshape(-1), state.momenta.reshape(-1)])
    jacobian = torch.autograd.functional.jacobian(flat_map, x)
    assert abs(float(torch.linalg.det(jacobian)) - 1.0) < 1e-9
    assert not torch.allclose(jacobian, torch.eye(len(x), dtype=x.dtype))


@pytest.mark.parametrize("splitting, stride_fs", [("verlet", 40.0), ("two-stage", 70.0)])
def test_a_hybrid_monte_carlo_chain_samples_the_exact_harmonic_distribution(splitting, stride_fs):
    systems = [thermal(crystal(), seed, T) for seed in range(8)]
    exact = harmonic([crystal()] * 8)
    # 2 steps of 20 fs: far from the exact flow, 40 % of the proposals rejected (25 fs: 93 %);
    # two-stage steps of 35 fs: 62 % rejected (of 20 fs: 2 %)
    proposal = LeapfrogProposal(exact, steps=2, splitting=splitting)
    stepper = MetropolisStepper(proposal, stride_fs, exact, MetropolisConfig(T))
    energies = chain_energies(stepper, state_from_atoms(systems, seed=3), 500, 50, exact)
    z = z_scores(energies, 3 * len(systems[0]) - 3)
    assert max(abs(score) for score in z) < 3, z
    assert 0.2 < stepper.acceptance_rate < 0.98


@pytest.mark.parametrize("splitting", [VELOCITY_VERLET, TWO_STAGE])
def test_a_chain_spends_its_force_evaluations_per_step_and_solves_nothing_back(splitting):
    exact = harmonic([crystal()] * 2)
    proposal = LeapfrogProposal(exact, steps=3, splitting=splitting)
    stepper = MetropolisStepper(proposal, 60.0, exact, MetropolisConfig(T))
    state = stepper.prepare(state_from_atoms([thermal(crystal(), s, T) for s in range(2)]))
    sampled_calls = []
    energy = exact.energy
    exact.energy = lambda *args: sampled_calls.append(1) or energy(*args)  # counts the chain's
    for _ in range(6):
        state, stats = stepper.step(state)
        # the chain's V is the proposal's: reused, and right
        torch.testing.assert_close(stats.potential_energy, energy(state, None))
    # the first start, then the steps only
    assert proposal.evaluations == 1 + 6 * 3 * splitting.evaluations
    assert not sampled_calls  # no energy evaluated beside the proposal's
    assert stepper.irreversible == 0 and stepper.proposals == 12


def test_leapfrog_proposals_from_the_command_settings_and_the_ase_class():
    model = tiny_model()
    model.predictor = None  # an energy model alone serves hybrid Monte Carlo
    atoms = thermal(crystal(), 0, T)
    dynamics = FlashMDMetropolis(
        atoms, 8 * FS, temperature_K=T, model=model, leapfrog_steps=2, seed=0
    )
    start = atoms.positions.copy()
    dynamics.run(4)
    assert isinstance(dynamics.stepper.propagator, LeapfrogProposal)
    assert dynamics.stepper.proposals == 4 and not np.allclose(atoms.positions, start)
    assert isinstance(dynamics.stepper.propagator.potential, ModelPotential)


def with_kick(model: FlashMDModel) -> FlashMDModel:
    """``model`` carrying an untrained kick: any field of the positions keeps the chain exact."""
    assert model.energy_model is not None
    torch.manual_seed(0)
    kick = KickField(KickConfig.for_energy_model(model.energy_model.config)).double()
    return FlashMDModel(model.predictor, model.energy_model, None, None, kick)


def test_steps_on_a_learned_kick_retrace_their_path_and_the_chain_accepts_on_the_exact_V():
    model = with_kick(tiny_model())
    state = state_from_atoms([thermal(crystal((2, 2, 1)), 0, T)])
    potential = KickPotential(model)
    proposal = LeapfrogProposal(potential, steps=2)
    positions, momenta = proposal.propagate(state, None, 16.0)
    end = state.replace(positions=positions, momenta=-momenta)
    back_positions, back_momenta = proposal.propagate(end, None, 16.0)
    torch.testing.assert_close(back_positions, state.positions, rtol=0, atol=1e-12)
    torch.testing.assert_close(-back_momenta, state.momenta, rtol=0, atol=1e-12)
    forces = LeapfrogProposal(ModelPotential(model), steps=2).propagate(state, None, 16.0)
    assert not torch.allclose(positions, forces[0], atol=1e-6)  # it moved on the kick

    stepper = MetropolisStepper(proposal, 16.0, potential, MetropolisConfig(T))
    state = stepper.prepare(state)
    exact = ModelPotential(model)
    for _ in range(4):
        state, stats = stepper.step(state)
        edges = stepper.edges(exact.cutoff, state)
        torch.testing.assert_close(stats.potential_energy, exact.energy(state, edges))
    assert stepper.accepted > 0


def test_the_learned_kick_from_the_settings_and_the_ase_class_or_a_clear_refusal():
    atoms = thermal(crystal(), 0, T)
    dynamics = FlashMDMetropolis(
        atoms,
        8 * FS,
        temperature_K=T,
        model=with_kick(tiny_model()),
        leapfrog_steps=1,
        learned_kick=True,
        seed=0,
    )
    dynamics.run(2)
    assert isinstance(dynamics.stepper.propagator.potential, KickPotential)
    with pytest.raises(ValueError, match="flashmd train-kick"):
        leapfrog_potential(tiny_model(), learned_kick=True)
    tuned = with_kick(tiny_model())
    tuned.kick.config = dataclasses.replace(tuned.kick.config, step_fs=12.0)
    state = state_from_atoms([atoms])
    LeapfrogProposal(KickPotential(tuned), steps=2).check(state, 24.0)  # 12 fs steps: quiet
    with pytest.warns(UserWarning, match="tuned for 12 fs verlet steps and these are 8 fs verlet"):
        LeapfrogProposal(KickPotential(tuned), steps=1).check(state, 8.0)
    with pytest.raises(ValueError, match="leapfrog_steps"):
        FlashMDMetropolis(atoms, 8 * FS, temperature_K=T, model=tiny_model(), learned_kick=True)
    for wrong, message in (
        ({"splitting": "two-stage"}, "leapfrog_steps"),
        ({"splitting": "yoshida", "leapfrog_steps": 1}, "verlet"),
    ):
        with pytest.raises(ValueError, match=message):
            FlashMDMetropolis(atoms, 8 * FS, temperature_K=T, model=tiny_model(), **wrong)
    with pytest.raises(ValueError, match="unknown splitting"):
        LeapfrogProposal(harmonic([crystal()]), splitting="yoshida")
    tuned.kick.config = dataclasses.replace(tuned.kick.config, splitting="two-stage")
    with pytest.warns(UserWarning, match="12 fs two-stage steps and these are 12 fs verlet"):
        LeapfrogProposal(KickPotential(tuned), steps=2).check(state, 24.0)
    with pytest.raises(ValueError, match="--leapfrog-steps"):
        MDSettings(
            model="m",
            structures=("a.xyz",),
            ensemble="metropolis",
            learned_kick=True,
            temperature_K=T,
        )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"ensemble": "langevin", "leapfrog_steps": 2}, "metropolis"),
        ({"ensemble": "metropolis", "leapfrog_steps": 2, "symplectic": True}, "without"),
        ({"ensemble": "metropolis", "leapfrog_steps": -1}, ">= 0"),
    ],
)
def test_leapfrog_settings_that_make_no_sense_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        MDSettings(model="m", structures=("a.xyz",), temperature_K=T, **settings)
    with pytest.raises(ValueError, match="steps"):
        LeapfrogProposal(harmonic([crystal()]), steps=0)
