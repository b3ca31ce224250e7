"""Selection of uncertain rollout states and the measure of how well a signal ranks errors."""

from __future__ import annotations

import numpy as np
import pytest

from flashmd.data.store import TrajectoryStore
from flashmd.learn.calibration import signal_quality
from flashmd.learn.select import load_selection, save_selection, select_states


def test_a_perfect_signal_ranks_and_flags_everything_and_a_reversed_one_nothing():
    error = np.random.default_rng(0).random(200)
    best = signal_quality(2 * error + 1, error)
    assert best.spearman == pytest.approx(1.0) and best.recall == 1.0 and best.count == 200
    worst = signal_quality(-error, error)
    assert worst.spearman == pytest.approx(-1.0) and worst.recall == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        signal_quality(error[:10], error)
    with pytest.raises(ValueError, match="no worst"):
        signal_quality(error[:10], error[:10])


def _rollout(location, scores: dict[str, np.ndarray]) -> str:
    """A store whose trajectories carry per-atom uncertainty (2 atoms: the score and half)."""
    store = TrajectoryStore.create(str(location), {"name": "test"})
    for traj_id, values in scores.items():
        n = len(values)
        with store.writer(
            traj_id,
            np.array([13, 13]),
            np.ones(2) * 27.0,
            {"temperature_K": 600.0},
            with_forces=False,
            capacity=n,
        ) as writer:
            for t in range(n):
                frame = {
                    "positions": np.eye(3)[:2] * 3.0,
                    "momenta": np.zeros((2, 3)),
                    "cell": np.eye(3) * 10,
                    "energy": 0.0,
                    "time_fs": 8.0 * t,
                }
                writer.append(frame)
            writer.group.create_array("uncertainty", shape=(n, 2), dtype="float64")
            writer.group["uncertainty"][:] = np.stack([values, values / 2], axis=1)
            writer.close(complete=True)
    return str(location)


def test_selection_takes_the_highest_scores_apart_and_spread_over_trajectories(tmp_path):
    a = np.array([9.0, 1.0, 5.0, 4.9, 4.8, 0.5, 3.0, 0.1])  # frame 0 (9.0) is never taken
    b = np.array([9.0, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    location = _rollout(tmp_path / "r.zarr", {"a": a, "b": b})
    chosen = select_states([location], 4, min_gap_frames=2)
    assert [(s.trajectory, s.frame) for s in chosen] == [("a", 2), ("a", 4), ("a", 6), ("b", 7)]
    assert chosen[0].score == 5.0 and chosen[0].temperature_K == 600.0
    spread = select_states([location], 4, min_gap_frames=2, per_trajectory=2)
    assert [(s.trajectory, s.frame) for s in spread] == [("a", 2), ("a", 4), ("b", 7), ("b", 5)]
    everything = select_states([location], None, min_gap_frames=1)
    assert len(everything) == 14 and all(s.frame > 0 for s in everything)
    save_selection(chosen, tmp_path / "s.json")
    assert load_selection(tmp_path / "s.json") == chosen


def test_a_rollout_without_uncertainty_is_refused(tmp_path):
    location = _rollout(tmp_path / "r.zarr", {"a": np.ones(3)})
    group = TrajectoryStore.open(location, mode="a")["a"].group
    del group["uncertainty"]
    with pytest.raises(ValueError, match="--uncertainty"):
        select_states([location], 1)
    with pytest.raises(ValueError, match="at least one"):
        select_states([location], 0)
