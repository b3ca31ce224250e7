"""The Zarr store: round trips, lazy reads, validation, crash safety under SIGKILL, fsspec."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest
import zarr

from flashmd.data.store import SCHEMA_VERSION, StoreError, TrajectoryStore, frames_per_chunk

N_ATOMS = 64


def frame(i: int) -> dict:
    """A deterministic frame whose every value encodes its index."""
    base = np.arange(N_ATOMS * 3, dtype=float).reshape(N_ATOMS, 3)
    return {
        "positions": base + i,
        "momenta": -base - i,
        "forces": base * i,
        "cell": np.eye(3) * (10 + i),
        "energy": float(i),
        "time_fs": 2.0 * i,
    }


def write(store: TrajectoryStore, traj_id: str, n: int, complete: bool = True) -> None:
    writer = store.writer(
        traj_id,
        np.full(N_ATOMS, 13),
        np.full(N_ATOMS, 26.98),
        {"temperature_K": 300.0, "calculator": {"name": "test"}},
        True,
    )
    for i in range(writer.n_frames, n):
        writer.append(frame(i))
    writer.close(complete=complete)


@pytest.fixture(params=["local", "memory"])
def location(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store.zarr")
    return f"memory://flashmd-test-{uuid.uuid4().hex}"


def test_round_trip_local_and_fsspec(location):
    write(TrajectoryStore.create(location, {"name": "t"}), "a", 300)
    store = TrajectoryStore.open(location)
    reader = store["a"]
    assert store.ids() == ["a"] and reader.n_frames == 300 and reader.status == "complete"
    data = reader.read(17, 23)
    for offset, i in enumerate(range(17, 23)):
        for key, value in frame(i).items():
            np.testing.assert_array_equal(data[key][offset], value)
    assert reader.numbers.tolist() == [13] * N_ATOMS
    assert store.info()[0].n_frames == 300
    atoms = reader.to_atoms(-1)
    np.testing.assert_allclose(atoms.get_momenta(), frame(299)["momenta"])


def test_arrays_are_chunked_compressed_and_named(tmp_path):
    store = TrajectoryStore.create(tmp_path / "s.zarr")
    write(store, "a", 50)
    group = zarr.open_group(tmp_path / "s.zarr", mode="r")["trajectories/a"]
    positions = group["positions"]
    assert positions.chunks == (frames_per_chunk(N_ATOMS), N_ATOMS, 3)
    assert positions.metadata.dimension_names == ("frame", "atom", "xyz")
    assert positions.compressors and positions.shape == (50, N_ATOMS, 3)
    root = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert root.attrs["format"] == "flashmd.trajectories"
    assert root.attrs["schema_version"] == SCHEMA_VERSION
    assert root.attrs["units"]["positions"] == "angstrom"


def test_xarray_opens_a_trajectory(tmp_path):
    xr = pytest.importorskip("xarray")
    store = TrajectoryStore.create(tmp_path / "s.zarr")
    write(store, "a", 20)
    ds = xr.open_zarr(tmp_path / "s.zarr", group="trajectories/a", consolidated=False)
    assert ds["positions"].dims == ("frame", "atom", "xyz")
    assert ds["positions"].attrs == {"long_name": "Cartesian positions", "units": "angstrom"}
    assert all("units" in ds[name].attrs and "long_name" in ds[name].attrs for name in ds)
    np.testing.assert_array_equal(ds["energy"].values, np.arange(20.0))


class CountingStore(zarr.storage.WrapperStore):
    """Records the keys of every chunk read."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        self.reads.append(key)
        return await self._store.get(key, prototype, byte_range)


def test_reading_frames_touches_only_their_chunks(tmp_path):
    store = TrajectoryStore.create(tmp_path / "s.zarr")
    chunk = frames_per_chunk(N_ATOMS)
    write(store, "a", 5 * chunk)
    counting = CountingStore(zarr.storage.LocalStore(tmp_path / "s.zarr", read_only=True))
    reader = TrajectoryStore(zarr.open_group(counting, mode="r"), "counted", False)["a"]
    counting.reads.clear()
    reader.read(2 * chunk + 3, 2 * chunk + 10, keys=("positions",))
    chunk_reads = [k for k in counting.reads if not k.endswith("zarr.json")]
    assert chunk_reads == ["trajectories/a/positions/c/2/0/0"]


def test_foreign_and_damaged_stores_get_clear_errors(tmp_path):
    foreign = zarr.open_group(tmp_path / "foreign.zarr", mode="w")
    foreign.attrs["something"] = 1
    with pytest.raises(StoreError, match="not a flashmd trajectory store"):
        TrajectoryStore.open(tmp_path / "foreign.zarr")
    with pytest.raises(StoreError, match="no Zarr store"):
        TrajectoryStore.open(tmp_path / "missing.zarr")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(StoreError, match="not a Zarr store"):
        TrajectoryStore.open(tmp_path / "notes")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        TrajectoryStore.create(tmp_path / "file.zarr")
    assert (tmp_path / "file.zarr").read_text() == "x"


def test_newer_schema_is_refused(tmp_path):
    TrajectoryStore.create(tmp_path / "s.zarr")
    root = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    root.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match="newer.*upgrade flashmd"):
        TrajectoryStore.open(tmp_path / "s.zarr")


def test_truncated_array_is_reported(tmp_path):
    write(TrajectoryStore.create(tmp_path / "s.zarr"), "a", 30)
    group = zarr.open_group(tmp_path / "s.zarr", mode="r+")["trajectories/a"]
    group["momenta"].resize((12, N_ATOMS, 3))
    with pytest.raises(StoreError, match="momenta is truncated: it holds 12 frames.*records 30"):
        TrajectoryStore.open(tmp_path / "s.zarr")["a"]


def test_store_from_another_recipe_is_left_untouched(tmp_path):
    store = TrajectoryStore.create(tmp_path / "s.zarr", {"name": "first"})
    write(store, "a", 10)
    with pytest.raises(StoreError, match="different recipe"):
        TrajectoryStore.create(tmp_path / "s.zarr", {"name": "second"})
    assert TrajectoryStore.open(tmp_path / "s.zarr")["a"].n_frames == 10


def test_partial_trajectory_resumes_without_gaps(location):
    store = TrajectoryStore.create(location)
    write(store, "a", 70, complete=False)
    assert TrajectoryStore.open(location)["a"].status == "partial"
    write(TrajectoryStore.open(location, mode="a"), "a", 150)
    reader = TrajectoryStore.open(location)["a"]
    assert reader.n_frames == 150 and reader.status == "complete"
    np.testing.assert_array_equal(reader.read()["energy"], np.arange(150.0))


@pytest.mark.parametrize("debris", ["group metadata", "an array"])
def test_interrupted_creation_without_frames_is_recreated(tmp_path, debris):
    """A kill while a trajectory's nodes are being created leaves debris and no trusted frame:
    the next writer starts it afresh instead of refusing (nothing is lost)."""
    import shutil

    location = tmp_path / "store.zarr"
    write(TrajectoryStore.create(location, {"name": "t"}), "a", 0, complete=False)
    node = location / "trajectories" / "a"
    if debris == "group metadata":
        (node / "zarr.json").unlink()
    else:
        shutil.rmtree(node / "positions")
    write(TrajectoryStore.open(location, mode="a"), "a", 12)
    reader = TrajectoryStore.open(location)["a"]
    assert reader.n_frames == 12 and reader.status == "complete"
    np.testing.assert_array_equal(reader.read()["positions"][11], frame(11)["positions"])


def test_damaged_trajectory_with_frames_is_not_overwritten(tmp_path):
    import shutil

    location = tmp_path / "store.zarr"
    write(TrajectoryStore.create(location, {"name": "t"}), "a", 5, complete=False)
    shutil.rmtree(location / "trajectories" / "a" / "cell")
    with pytest.raises(StoreError, match="'cell' is missing"):
        write(TrajectoryStore.open(location, mode="a"), "a", 12)
    assert (location / "trajectories" / "a" / "positions").is_dir()


def test_complete_trajectory_takes_no_frames(tmp_path):
    store = TrajectoryStore.create(tmp_path / "s.zarr")
    write(store, "a", 5)
    writer = store.writer("a", np.full(N_ATOMS, 13), np.full(N_ATOMS, 26.98), {}, True)
    with pytest.raises(StoreError, match="complete"):
        writer.append(frame(5))


def test_appending_other_atoms_is_refused(tmp_path):
    store = TrajectoryStore.create(tmp_path / "s.zarr")
    write(store, "a", 5, complete=False)
    with pytest.raises(StoreError, match="different atoms"):
        store.writer("a", np.full(N_ATOMS, 29), np.full(N_ATOMS, 63.5), {}, True)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import frame, N_ATOMS
    from flashmd.data.store import TrajectoryStore
    store = TrajectoryStore.create({path!r}) if {fresh} else TrajectoryStore.open({path!r}, "a")
    writer = store.writer("a", np.full(N_ATOMS, 13), np.full(N_ATOMS, 26.98), {{}}, True)
    for i in range(writer.n_frames, {total}):
        writer.append(frame(i))
        time.sleep({sleep})
    writer.close(complete=True)
    """
)


def run_writer(path, tests_dir, total, fresh, sleep):
    script = KILL_SCRIPT.format(
        tests=str(tests_dir), path=str(path), fresh=fresh, total=total, sleep=sleep
    )
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ})


def trusted_frames(path) -> int:
    try:
        attrs = json.loads((path / "trajectories" / "a" / "zarr.json").read_text())["attributes"]
        return int(attrs.get("n_frames", 0))
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_mid_write_leaves_a_resumable_store(tmp_path):
    path = tmp_path / "killed.zarr"
    tests_dir = os.path.dirname(__file__)
    chunk = frames_per_chunk(N_ATOMS)
    total = 6 * chunk
    process = run_writer(path, tests_dir, total, fresh=True, sleep=0.0005)
    deadline = time.time() + 60
    while trusted_frames(path) < 2 * chunk and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = TrajectoryStore.open(path)["a"].n_frames
    assert 2 * chunk <= killed_at < total
    reader = TrajectoryStore.open(path)["a"]
    np.testing.assert_array_equal(reader.read()["energy"], np.arange(killed_at, dtype=float))
    # resume in another process: no duplicated and no missing frames
    resumed = run_writer(path, tests_dir, total, fresh=False, sleep=0)
    assert resumed.wait(timeout=120) == 0
    reader = TrajectoryStore.open(path)["a"]
    assert reader.status == "complete" and reader.n_frames == total
    data = reader.read()
    np.testing.assert_array_equal(data["energy"], np.arange(total, dtype=float))
    np.testing.assert_array_equal(data["positions"][-1], frame(total - 1)["positions"])
    assert not list(path.rglob("*.partial"))


def test_frames_are_committed_by_time_as_well_as_by_chunk(tmp_path, monkeypatch):
    from flashmd.data import store as store_module

    clock = [0.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock[0])
    store = TrajectoryStore.create(tmp_path / "s.zarr")
    args = ("a", np.full(N_ATOMS, 13), np.full(N_ATOMS, 26.98), {}, True)
    writer = store.writer(*args, commit_interval_s=30.0)
    for i in range(5):
        writer.append(frame(i))
    assert TrajectoryStore.open(tmp_path / "s.zarr")["a"].n_frames == 0  # a chunk holds more
    clock[0] = 31.0
    writer.append(frame(5))  # the interval has passed: this append commits all six
    reader = TrajectoryStore.open(tmp_path / "s.zarr")["a"]
    assert reader.n_frames == 6
    np.testing.assert_array_equal(reader.read()["energy"], np.arange(6.0))
    writer.append(frame(6))  # the next interval starts at that commit
    assert TrajectoryStore.open(tmp_path / "s.zarr")["a"].n_frames == 6
    by_chunk_only = store.writer("b", *args[1:], commit_interval_s=None)
    clock[0] = 1e6
    by_chunk_only.append(frame(0))
    assert TrajectoryStore.open(tmp_path / "s.zarr")["b"].n_frames == 0


def test_open_trajectory_by_store_and_id_substring(tmp_path, tiny_recipe):
    from flashmd.data.generate import generate
    from flashmd.data.store import StoreError, open_trajectory

    location = str(tmp_path / "ref.zarr")
    generate(tiny_recipe, location, progress=False)
    ids = TrajectoryStore.open(location).ids()
    wanted = next(i for i in ids if "vacancy" in i)
    assert open_trajectory(f"{location}:vacancy").group.basename == wanted
    with pytest.raises(StoreError, match="its ids"):
        open_trajectory(f"{location}:no-such-system")
    with pytest.raises(StoreError, match="STORE:ID_SUBSTRING"):
        open_trajectory("no-colon")
