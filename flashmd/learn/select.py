"""Select: the most uncertain states of rollouts, decorrelated, within a budget.

A rollout run with ``flashmd md --uncertainty`` stores per atom and frame the stride
self-consistency (:mod:`flashmd.md.consistency`); a frame's score is its largest atom value (one
unsure atom makes an unsure stride). Frames are taken greedily by score, skipping any frame
within ``min_gap_frames`` of one already taken from the same trajectory (not fifty neighbouring
frames of one event) and at most ``per_trajectory`` from each trajectory (every condition of the
exploration gets its share, not only the liquids whose strides are inherently the least sure).
Frame 0 is never taken: it is the reference state the rollout started from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flashmd.data.store import TrajectoryStore
from flashmd.learn.files import read_json, write_json


@dataclass(frozen=True)
class SelectedState:
    """One selected rollout frame.

    Attributes:
        store: the rollout store's location; trajectory: its trajectory id; frame: the frame.
        score: Å, the frame's largest atom uncertainty.
        temperature_K: the rollout's temperature (its thermostat's, or the start's in NVE).
    """

    store: str
    trajectory: str
    frame: int
    score: float
    temperature_K: float | None


def frame_scores(store: TrajectoryStore, traj_id: str) -> np.ndarray:
    """(n_frames,) Å each frame's largest atom uncertainty (NaN at frame 0, never selected).

    Raises:
        ValueError: the trajectory has no ``uncertainty`` (not run with ``--uncertainty``).
    """
    reader = store[traj_id]
    if "uncertainty" not in reader.group:
        raise ValueError(
            f"{store.location}:{traj_id} has no per-atom uncertainty; run the rollout with "
            "flashmd md --uncertainty"
        )
    values = np.asarray(reader.group["uncertainty"][: reader.n_frames], dtype=np.float64)
    scores = values.max(axis=1) if values.size else np.zeros(0)
    if scores.size:
        scores[0] = np.nan
    return scores


def select_states(
    locations: Sequence[str],
    count: int | None,
    min_gap_frames: int = 1,
    per_trajectory: int | None = None,
) -> list[SelectedState]:
    """The ``count`` most uncertain frames of the rollout stores at ``locations``, decorrelated.

    Args:
        locations: rollout stores written with uncertainty.
        count: frames to select (fewer when the rollouts do not hold enough; None: every
            frame the spacing rules allow, in the order they would be taken).
        min_gap_frames: frames of one trajectory taken are at least this far apart.
        per_trajectory: at most this many frames from one trajectory (None: no limit).

    Returns:
        The frames in the order taken (highest score first).
    """
    if count is not None and count < 1:
        raise ValueError(f"need to select at least one state, got {count}")
    if min_gap_frames < 1:
        raise ValueError(f"min_gap_frames must be at least 1, got {min_gap_frames}")
    candidates = []
    for location in locations:
        store = TrajectoryStore.open(location)
        for traj_id in store.ids():
            scores = frame_scores(store, traj_id)
            temperature = store[traj_id].attrs.get("temperature_K")
            candidates += [
                (float(scores[frame]), str(location), traj_id, frame, temperature)
                for frame in np.flatnonzero(np.isfinite(scores)).tolist()
            ]
    candidates.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))  # ties: a fixed order
    taken: dict[tuple[str, str], list[int]] = {}
    chosen: list[SelectedState] = []
    for score, location, traj_id, frame, temperature in candidates:
        frames = taken.setdefault((location, traj_id), [])
        if per_trajectory is not None and len(frames) >= per_trajectory:
            continue
        if any(abs(frame - f) < min_gap_frames for f in frames):
            continue
        frames.append(frame)
        chosen.append(SelectedState(location, traj_id, frame, score, temperature))
        if len(chosen) == count:
            break
    return chosen


def save_selection(states: Sequence[SelectedState], path: str | Path) -> None:
    """Write ``states`` as JSON (atomically)."""
    write_json(path, [asdict(s) for s in states])


def load_selection(path: str | Path) -> list[SelectedState]:
    """Inverse of :func:`save_selection`."""
    return [SelectedState(**item) for item in read_json(path)]
