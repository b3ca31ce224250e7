"""Neighbour lists with a skin: exact zero beyond the cutoff, same rollouts as rebuilding."""

from __future__ import annotations

import torch
from md_testkit import crystal, thermal, tiny_model

from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import ModelPotential, ModelPropagator
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper


def test_edges_are_exactly_the_pairs_within_the_cutoff_whatever_the_lists_history():
    """A list kept with a skin hands out the same edges, in the same order, as a list built at
    the current positions (so a resumed run, which builds afresh, repeats an uninterrupted one),
    and the skin's pairs, had they been used, would have contributed exactly zero."""
    model = tiny_model()
    state = state_from_atoms(thermal(crystal((2, 2, 1)), seed=1, temperature_K=600))
    cache = NeighborCache(model.cutoff, skin=1.5)
    cache.edges(state)
    noise = torch.randn(state.positions.shape, generator=torch.Generator().manual_seed(0))
    moved = state.replace(positions=state.positions + 0.05 * noise.to(state.positions.dtype))
    kept, fresh = cache.edges(moved), NeighborCache(model.cutoff, skin=0.0).edges(moved)
    assert cache.builds == 1
    assert torch.equal(kept[0], fresh[0]) and torch.equal(kept[1], fresh[1])
    padded = cache._build(moved)  # the whole list, skin included
    assert padded[0].shape[1] > fresh[0].shape[1]
    potential, propagator = ModelPotential(model), ModelPropagator(model)
    energy_exact, forces_exact = potential.energy_and_forces(moved, fresh)
    energy_padded, forces_padded = potential.energy_and_forces(moved, padded)
    assert torch.allclose(energy_exact, energy_padded, rtol=0, atol=1e-12)
    assert torch.allclose(forces_exact, forces_padded, rtol=0, atol=1e-12)
    q_exact, p_exact = propagator.propagate(moved, fresh, 16.0)
    q_padded, p_padded = propagator.propagate(moved, padded, 16.0)
    assert torch.allclose(q_exact, q_padded, rtol=0, atol=1e-12)
    assert torch.allclose(p_exact, p_padded, rtol=0, atol=1e-12)


def test_reuse_with_skin_matches_rebuilding_every_stride():
    model = tiny_model()
    systems = [thermal(crystal((2, 2, 1)), seed=s, temperature_K=900) for s in (2, 3)]
    results = []
    for skin in (0.0, 0.6):
        stepper = Stepper(ModelPropagator(model), 16.0, potential=ModelPotential(model), skin=skin)
        state = stepper.prepare(state_from_atoms(systems))
        for _ in range(12):
            state, _ = stepper.step(state)
        results.append((state, stepper.rebuilds))
    (rebuilt, rebuilds_always), (reused, rebuilds_skin) = results
    assert rebuilds_skin < rebuilds_always
    assert rebuilds_skin > 1  # atoms did move beyond skin/2: the rebuild path is exercised
    assert torch.allclose(rebuilt.positions, reused.positions, rtol=0, atol=1e-10)
    assert torch.allclose(rebuilt.momenta, reused.momenta, rtol=0, atol=1e-10)


def test_cache_rebuilds_only_past_half_the_skin():
    state = state_from_atoms(crystal())
    cache = NeighborCache(3.0, skin=1.0)
    cache.edges(state)
    moved = state.positions.clone()
    moved[0, 0] += 0.49
    cache.edges(state.replace(positions=moved))
    assert cache.builds == 1
    moved[0, 0] += 0.02
    cache.edges(state.replace(positions=moved))
    assert cache.builds == 2
