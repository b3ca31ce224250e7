"""NVE with the exact harmonic propagator: energy, momenta, fallbacks, no NaN, batching."""

from __future__ import annotations

import torch
from md_testkit import Biased, cluster, crystal, harmonic, thermal

from flashmd.md import rigid
from flashmd.md.fallback import velocity_verlet
from flashmd.md.filters import FilterConfig
from flashmd.md.state import state_from_atoms, state_to_atoms
from flashmd.md.stepper import Stepper


def total_energy(stepper: Stepper, state) -> torch.Tensor:
    return state.kinetic_energy() + stepper.potential_energy(state)


def test_harmonic_flow_matches_fine_velocity_verlet():
    reference = crystal()
    model = harmonic([reference])
    state = state_from_atoms(thermal(reference, seed=1))
    positions, momenta = model.propagate(state, None, 16.0)
    fine, _ = velocity_verlet(state, model, 16.0, timestep_fs=0.02)
    assert torch.allclose(positions, fine.positions, atol=1e-6)
    assert torch.allclose(momenta, fine.momenta, atol=1e-5)


def test_nve_conserves_energy_and_momentum_over_1000_strides():
    reference = crystal()
    model = harmonic([reference])
    atoms = thermal(reference, seed=2)
    atoms.set_momenta(atoms.get_momenta() + 0.3 * atoms.get_masses()[:, None])  # drifting crystal
    stepper = Stepper(model, 32.0, potential=model)
    state = stepper.prepare(state_from_atoms(atoms))
    energy0, momentum0 = total_energy(stepper, state), rigid.conserved(state).momentum
    for _ in range(1000):
        state, _ = stepper.step(state)
        assert bool(torch.isfinite(state.positions).all())
    assert stepper.fallbacks == 0
    drift = (total_energy(stepper, state) - energy0) / len(atoms)
    assert float(drift.abs().max()) < 1e-5
    assert float((rigid.conserved(state).momentum - momentum0).abs().max()) < 1e-8


def test_biased_predictor_falls_back_and_conserves_energy():
    reference = crystal()
    model = harmonic([reference])
    stepper = Stepper(Biased(model, displacement=1.05), 32.0, potential=model)
    systems = [thermal(reference, seed=s) for s in (3, 4)]
    state = stepper.prepare(state_from_atoms(systems, ids=[0, 0]))
    energy0 = total_energy(stepper, state)
    fallbacks = torch.zeros(2, dtype=torch.long)
    for _ in range(200):
        state, stats = stepper.step(state)
        fallbacks += stats.fallback.long()
        assert bool(torch.isfinite(state.momenta).all())
    assert stepper.fallbacks == int(fallbacks.sum()) > 0
    drift = (total_energy(stepper, state) - energy0) / 8
    assert float(drift.abs().max()) < 1e-5


def test_far_off_and_nan_predictions_fall_back():
    """Momenta inflated by 30 % need alpha far below 1 (beyond max_cooling), and every 5th
    prediction is NaN: every stride falls back, nothing becomes NaN, energy is conserved."""
    reference = crystal()
    model = harmonic([reference])
    stepper = Stepper(
        Biased(model, momentum=1.3, nan_every=5),
        16.0,
        potential=model,
        filters=FilterConfig(max_cooling=0.1, fallback_timestep_fs=2.0),
    )
    state = stepper.prepare(state_from_atoms(thermal(reference, seed=5)))
    energy0 = total_energy(stepper, state)
    for _ in range(50):
        state, stats = stepper.step(state)
        assert bool(stats.fallback.all())
    assert stepper.fallbacks == 50
    assert bool(torch.isfinite(state.positions).all() & torch.isfinite(state.momenta).all())
    assert float((total_energy(stepper, state) - energy0).abs().max()) < 1e-8


def test_energy_band_sides_are_set_separately():
    """Momenta shrunk by 10 % (how an MSE-trained predictor loses energy) need alpha = 1.11:
    rejected by the default 5 % band, accepted and restored exactly with max_heating = 0.15.
    Momenta inflated by 10 % need alpha = 0.91 and are rejected by max_cooling either way."""
    reference = crystal()
    model = harmonic([reference])
    start = state_from_atoms(thermal(reference, seed=9))
    wide = FilterConfig(max_heating=0.15)
    cases = ((0.9, None, True), (0.9, wide, False), (1.1, None, True), (1.1, wide, True))
    for factor, filters, rejected in cases:
        stepper = Stepper(Biased(model, momentum=factor), 16.0, potential=model, filters=filters)
        state, stats = stepper.step(stepper.prepare(start))
        assert bool(stats.fallback.all()) is rejected
        if not rejected:
            assert abs(float(stats.scale[0]) - 1 / factor) < 1e-3
            exact, _ = Stepper(model, 16.0, potential=model).step(stepper.prepare(start))
            assert torch.allclose(state.momenta, exact.momenta, atol=1e-8)


class Colliding:
    """Wraps a propagator and puts atom 1 of each prediction 0.5 Å from atom 0."""

    def __init__(self, inner):
        self.inner, self.cutoff = inner, inner.cutoff

    def check(self, state, stride_fs):
        self.inner.check(state, stride_fs)

    def propagate(self, state, edges, stride_fs):
        positions, momenta = self.inner.propagate(state, edges, stride_fs)
        positions = positions.clone()
        positions[1] = positions[0] + torch.tensor([0.5, 0.0, 0.0], dtype=positions.dtype)
        return positions, momenta


def test_stride_leaving_atoms_in_contact_falls_back():
    """The contact check rejects the stride even without the energy filter (an energy model may
    have no repulsive wall to make alpha impossible); switched off, the overlap goes through."""
    reference = crystal()
    model = harmonic([reference])
    start = state_from_atoms(thermal(reference, seed=3))
    for fraction, rejected in ((0.6, True), (None, False)):
        filters = FilterConfig(energy=False, split_depth=0, contact_fraction=fraction)
        stepper = Stepper(Colliding(model), 16.0, potential=model, filters=filters)
        state, stats = stepper.step(stepper.prepare(start))
        assert bool(stats.fallback.all()) is rejected
        closest = float((state.positions[1] - state.positions[0]).norm())
        assert (closest > 2.0) is rejected


def test_rejected_stride_is_repaired_by_two_half_strides():
    """Only 32 fs strides are spoilt: each is rejected and redone as two exact 16 fs strides, so
    no velocity Verlet runs and the trajectory equals 2n exact 16 fs strides."""
    reference = crystal()
    model = harmonic([reference])
    spoilt = Biased(model, momentum=1.3, at_fs=32.0)
    stepper = Stepper(spoilt, 32.0, potential=model)
    exact = Stepper(model, 16.0, potential=model)
    state = stepper.prepare(state_from_atoms(thermal(reference, seed=8)))
    expected = state
    for _ in range(5):
        state, stats = stepper.step(state)
        assert bool(stats.fallback.all())
        for _ in range(2):
            expected, _ = exact.step(expected)
    assert (stepper.fallbacks, stepper.splits, stepper.verlet_fallbacks) == (5, 5, 0)
    assert spoilt.strides_fs == [32.0, 16.0, 16.0] * 5
    assert torch.allclose(state.positions, expected.positions, atol=1e-10)
    assert torch.allclose(state.momenta, expected.momenta, atol=1e-10)


def test_split_depth_zero_goes_straight_to_verlet():
    reference = crystal()
    model = harmonic([reference])
    spoilt = Biased(model, momentum=1.3, at_fs=32.0)
    stepper = Stepper(spoilt, 32.0, potential=model, filters=FilterConfig(split_depth=0))
    state = stepper.prepare(state_from_atoms(thermal(reference, seed=8)))
    energy0 = total_energy(stepper, state)
    state, stats = stepper.step(state)
    assert bool(stats.fallback.all()) and spoilt.strides_fs == [32.0]
    assert (stepper.fallbacks, stepper.splits, stepper.verlet_fallbacks) == (1, 0, 1)
    assert float((total_energy(stepper, state) - energy0).abs().max()) < 1e-8


def test_no_real_rescaling_factor_falls_back():
    """Positions displaced so far that V(q') exceeds the target energy: no alpha exists."""
    reference = crystal()
    model = harmonic([reference])
    stepper = Stepper(Biased(model, displacement=3.0), 16.0, potential=model)
    state = stepper.prepare(state_from_atoms(thermal(reference, seed=6, rattle=0.2)))
    state, stats = stepper.step(state)
    assert bool(stats.fallback.all()) and bool(torch.isfinite(state.momenta).all())


def test_open_cluster_keeps_angular_momentum():
    reference = cluster()
    model = harmonic([reference])
    atoms = thermal(reference, seed=7)
    spin = torch.tensor([0.0, 0.0, 0.02], dtype=torch.float64)  # rigid rotation, 1/ASE-time
    positions = torch.as_tensor(atoms.positions)
    rotation = torch.cross(spin.expand_as(positions), positions, dim=1)
    atoms.set_momenta(atoms.get_momenta() + atoms.get_masses()[:, None] * rotation.numpy())
    stepper = Stepper(model, 16.0, potential=model)
    state = stepper.prepare(state_from_atoms(atoms))
    start = rigid.conserved(state)
    assert float(start.angular.abs().max()) > 1.0
    energy0 = total_energy(stepper, state)
    for _ in range(300):
        state, _ = stepper.step(state)
    end = rigid.conserved(state)
    assert float((end.angular - start.angular).abs().max()) < 1e-8
    assert float((end.momentum - start.momentum).abs().max()) < 1e-8
    assert float((total_energy(stepper, state) - energy0).abs().max()) / 13 < 1e-5


def test_batch_equals_systems_one_by_one():
    references = [crystal(), crystal((1, 1, 2)), cluster()]
    systems = [thermal(r, seed=10 + k) for k, r in enumerate(references)]
    model = harmonic(references)
    batched = Stepper(Biased(model, displacement=1.02), 16.0, potential=model)
    state = batched.prepare(state_from_atoms(systems))
    for _ in range(40):
        state, _ = batched.step(state)
    for k, atoms in enumerate(systems):
        single = Stepper(Biased(model, displacement=1.02), 16.0, potential=model)
        alone = single.prepare(state_from_atoms(atoms, ids=[k]))
        for _ in range(40):
            alone, _ = single.step(alone)
        part = state.system == k
        assert torch.allclose(state.positions[part], alone.positions, atol=1e-10, rtol=0)
        assert torch.allclose(state.momenta[part], alone.momenta, atol=1e-10, rtol=0)


def test_state_round_trips_through_atoms():
    systems = [thermal(crystal(), seed=1), thermal(cluster(), seed=2)]
    back = state_to_atoms(state_from_atoms(systems))
    for a, b in zip(systems, back, strict=True):
        assert (a.positions == b.positions).all() and (a.get_momenta() == b.get_momenta()).all()
        assert (a.pbc == b.pbc).all() and (a.cell[:] == b.cell[:]).all()
