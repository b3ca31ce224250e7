"""Claims: a trajectory another live writer holds is left to it; claims of dead writers expire."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from flashmd.data.claims import CLAIMS
from flashmd.data.generate import generate
from flashmd.data.store import TrajectoryStore


def hold(location, traj_id: str, owner: str, age_s: float = 0.0) -> None:
    """Write a claim as another writer would have."""
    folder = location / CLAIMS
    folder.mkdir(parents=True, exist_ok=True)
    claim = {"owner": owner, "heartbeat": time.time() - age_s}
    (folder / f"{traj_id}.json").write_text(json.dumps(claim))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_trajectory_held_by_a_live_writer_is_left_to_it(tiny_recipe, tmp_path):
    location = tmp_path / "s.zarr"
    ids = [task.id for task in tiny_recipe.tasks()]
    TrajectoryStore.create(location, tiny_recipe.stored())
    hold(location, ids[0], "another-machine:123:abcd")  # fresh: its writer is at work
    report = generate(tiny_recipe, str(location), progress=False)
    assert report.claimed_elsewhere == 1
    store = TrajectoryStore.open(location)
    assert ids[0] not in store
    assert all(store[i].status == "complete" for i in ids[1:])
    left = [p.name for p in (location / CLAIMS).glob("*.json")]
    assert left == [f"{ids[0]}.json"]  # ours released, theirs kept


def test_claims_of_dead_writers_expire(tiny_recipe, tmp_path):
    location = tmp_path / "s.zarr"
    ids = [task.id for task in tiny_recipe.tasks()]
    TrajectoryStore.create(location, tiny_recipe.stored())
    hold(location, ids[0], f"{socket.gethostname()}:{dead_pid()}:dead")  # killed on this host
    hold(location, ids[1], "another-machine:123:abcd", age_s=3600)  # silent for an hour
    report = generate(tiny_recipe, str(location), progress=False)
    assert report.claimed_elsewhere == 0
    store = TrajectoryStore.open(location)
    assert all(store[i].status == "complete" for i in ids)
    assert not list((location / CLAIMS).glob("*.json"))
