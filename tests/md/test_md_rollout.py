"""Batched rollouts into a trajectory store: schema, filter statistics, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
from md_testkit import Biased, crystal, harmonic, thermal

from flashmd.data.store import TrajectoryStore
from flashmd.md.output import STAT_ARRAYS, RolloutWriter
from flashmd.md.rollout import rollout
from flashmd.md.state import state_from_atoms
from flashmd.md.stepper import Stepper
from flashmd.md.thermostats import Langevin
from flashmd.units import FS

IDS = ["a", "b", "c"]


def make(tmp_path, name):
    reference = crystal()
    model = harmonic([reference])
    stepper = Stepper(
        Biased(model, displacement=1.1), 16.0, potential=model, thermostat=Langevin(400, 0.02 / FS)
    )
    state = state_from_atoms([thermal(reference, seed=k) for k in range(3)], seed=5, ids=[0] * 3)
    store = TrajectoryStore.create(tmp_path / name, {"name": "rollout-test"})
    attrs = [{"ensemble": "langevin", "timestep_fs": 16.0} for _ in IDS]
    return stepper, state, store, attrs


def test_rollout_writes_reference_schema_and_statistics(tmp_path):
    stepper, state, store, attrs = make(tmp_path, "one.zarr")
    writer = RolloutWriter(store, IDS, attrs, state)
    _, report = rollout(stepper, state, n_frames=30, every=2, writer=writer)
    writer.close(complete=True)
    assert report.frames == 30 and report.strides == 58 and report.fallbacks > 0
    reopened = TrajectoryStore.open(tmp_path / "one.zarr")
    for traj_id in IDS:
        reader = reopened[traj_id]
        assert reader.n_frames == 30 and reader.status == "complete"
        frames = reader.read()
        np.testing.assert_allclose(frames["time_fs"], np.arange(30) * 32.0)
        for name in STAT_ARRAYS:
            assert reader.group[name].shape == (30,)
        fallback = reader.group["filter_fallback"][:]
        assert set(np.unique(fallback)) <= {0.0, 1.0} and fallback.sum() > 0
        assert np.isfinite(frames["energy"]).all()


def test_interrupted_rollout_resumes_exactly(tmp_path):
    stepper, state, store, attrs = make(tmp_path, "whole.zarr")
    writer = RolloutWriter(store, IDS, attrs, state)
    rollout(stepper, state, n_frames=40, writer=writer)
    writer.close(complete=True)

    stepper, state, store, attrs = make(tmp_path, "parts.zarr")
    writer = RolloutWriter(store, IDS, attrs, state)
    with pytest.raises(KeyboardInterrupt):

        def stop_at_frame(_, count=[0]):  # noqa: B006 - a counter across calls
            count[0] += 1
            if count[0] == 23:
                raise KeyboardInterrupt

        rollout(stepper, state, n_frames=40, writer=writer, on_frame=stop_at_frame)
    writer.close(complete=False)
    stepper, state, store, attrs = make(tmp_path, "parts.zarr")
    writer = RolloutWriter(store, IDS, attrs, state)
    resumed_from = writer.n_frames
    assert 0 < resumed_from < 40
    _, report = rollout(stepper, state, n_frames=40, writer=writer)
    writer.close(complete=True)
    assert report.frames == 40 - resumed_from
    whole, parts = (
        TrajectoryStore.open(tmp_path / "whole.zarr"),
        TrajectoryStore.open(tmp_path / "parts.zarr"),
    )
    for traj_id in IDS:
        a, b = whole[traj_id].read(), parts[traj_id].read()
        np.testing.assert_array_equal(a["positions"], b["positions"])
        np.testing.assert_array_equal(a["momenta"], b["momenta"])
        np.testing.assert_array_equal(
            whole[traj_id].group["target_energy"][:], parts[traj_id].group["target_energy"][:]
        )


def test_a_killed_rollout_keeps_what_it_committed_by_time(tmp_path, monkeypatch):
    """Frames are committed every ``commit_interval_s`` (here a fake clock ticking a second per
    reading), not only every full chunk: a run killed without closing its writer keeps them,
    with their statistics, and resumes from the last one."""
    from flashmd.data import store as store_module

    ticks = iter(range(10**6))
    monkeypatch.setattr(store_module.time, "monotonic", lambda: float(next(ticks)))
    stepper, state, store, attrs = make(tmp_path, "killed.zarr")
    writer = RolloutWriter(store, IDS, attrs, state, commit_interval_s=5.0)

    def die_at_frame(_, count=[0]):  # noqa: B006 - a counter across calls
        count[0] += 1
        if count[0] == 23:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the writer is never closed: the process died
        rollout(stepper, state, n_frames=30, writer=writer, on_frame=die_at_frame)
    reopened = TrajectoryStore.open(tmp_path / "killed.zarr")
    kept = [reopened[traj_id].n_frames for traj_id in IDS]
    assert 18 <= min(kept) and max(kept) <= 23  # at most the last interval lost
    for traj_id, n in zip(IDS, kept, strict=True):
        for name in STAT_ARRAYS:  # statistics are written before the count that trusts them
            assert np.isfinite(reopened[traj_id].group[name][:n]).all(), name
    stepper, state, store, attrs = make(tmp_path, "killed.zarr")
    writer = RolloutWriter(store, IDS, attrs, state, commit_interval_s=5.0)
    assert writer.n_frames == min(kept)
    _, report = rollout(stepper, writer.resume_state(state), n_frames=30, writer=writer)
    writer.close(complete=True)
    assert report.frames == 30 - min(kept)
    assert all(TrajectoryStore.open(tmp_path / "killed.zarr")[i].n_frames == 30 for i in IDS)


def test_a_recipe_that_melts_its_systems_warns_that_rollouts_start_crystalline(tmp_path):
    import yaml

    from flashmd.md.batch import MDSettings, load_systems

    recipe = tmp_path / "melt.yaml"
    system = {"builder": "crystal", "element": "Al", "supercell": [2, 2, 2]}
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "melt",
                "calculator": {"name": "asap3-emt"},
                "systems": [system, {**system, "melt_K": 3000.0, "melt_fs": 500.0}],
                "temperatures_K": [1200],
                "timestep_fs": 2.0,
                "sample_interval_fs": 8.0,
                "production_fs": 80.0,
            }
        )
    )
    with pytest.warns(UserWarning, match=r"systems.1 of .* ask to be melted first"):
        systems = load_systems(MDSettings(model="al-emt", recipe=str(recipe)))
    assert len(systems) == 2
