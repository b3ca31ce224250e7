"""The reference generator: determinism, workers, shards, resume after SIGKILL, bad input."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from flashmd.data.generate import generate, parse_shard, select_tasks
from flashmd.data.recipes import RecipeError, load_recipe
from flashmd.data.store import StoreError, TrajectoryStore

REPO = Path(__file__).resolve().parents[2]


def arrays(location) -> dict[str, dict[str, np.ndarray]]:
    store = TrajectoryStore.open(location)
    return {tid: store[tid].read() for tid in store.ids()}


def assert_same_arrays(a, b):
    assert a.keys() == b.keys()
    for tid in a:
        for key in a[tid]:
            np.testing.assert_array_equal(a[tid][key], b[tid][key], err_msg=f"{tid}/{key}")


@contextlib.contextmanager
def stopped_at_snapshot(monkeypatch, call: int) -> Iterator[None]:
    """Inside: the generator's ``call``-th frame snapshot raises KeyboardInterrupt (a Ctrl-C
    between two frames); the real snapshot is back afterwards."""
    from flashmd.data import reference

    snapshot, calls = reference.snapshot, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return snapshot(*args, **kwargs)

    monkeypatch.setattr(reference, "snapshot", stopping)
    try:
        yield
    finally:
        monkeypatch.setattr(reference, "snapshot", snapshot)


def test_same_recipe_and_seed_give_identical_arrays(tiny_recipe, tmp_path):
    generate(tiny_recipe, str(tmp_path / "a.zarr"), progress=False)
    generate(tiny_recipe, str(tmp_path / "b.zarr"), workers=2, progress=False)
    first, second = arrays(tmp_path / "a.zarr"), arrays(tmp_path / "b.zarr")
    assert_same_arrays(first, second)
    assert len(first) == 4 and all(len(t["energy"]) == 11 for t in first.values())
    other = generate(
        tiny_recipe.model_copy(update={"seed": 2}), str(tmp_path / "c.zarr"), progress=False
    )
    assert other.frames_written == 44
    assert not np.array_equal(
        arrays(tmp_path / "c.zarr")[next(iter(first))]["positions"],
        next(iter(first.values()))["positions"],
    )


def test_provenance_and_units_are_recorded(tiny_recipe, tmp_path):
    generate(tiny_recipe, str(tmp_path / "s.zarr"), progress=False)
    store = TrajectoryStore.open(tmp_path / "s.zarr")
    attrs = store[store.ids()[0]].attrs
    assert attrs["calculator"]["name"] == "asap3-emt"
    assert attrs["calculator"]["package"] == "asap3" and attrs["calculator"]["version"]
    assert attrs["timestep_fs"] == 2.0 and attrs["sample_interval_fs"] == 4.0
    assert attrs["status"] == "complete" and attrs["pbc"] == [True, True, True]
    assert store.recipe["name"] == "al-emt-tiny"
    data = store[store.ids()[0]].read()
    np.testing.assert_allclose(data["time_fs"], np.arange(11) * 4.0)


def test_stored_energies_and_forces_match_a_fresh_calculation(tiny_recipe, tmp_path):
    """Frames take the energy before the forces (cheaper with asap3); both must still be those
    of the stored positions, and the calculator is restored afterwards."""
    from asap3 import EMT

    generate(tiny_recipe, str(tmp_path / "s.zarr"), progress=False)
    store = TrajectoryStore.open(tmp_path / "s.zarr")
    for traj_id in store.ids()[:2]:
        reader = store[traj_id]
        for index in (0, 5, reader.n_frames - 1):
            atoms = reader.to_atoms(index)
            atoms.calc = EMT()
            frame = reader.frame(index)
            assert frame["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
            np.testing.assert_allclose(frame["forces"], atoms.get_forces(), atol=1e-9)


def test_shards_split_the_recipe_and_fill_one_store(tiny_recipe, tmp_path):
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError, match="I/N"):
        parse_shard("3")
    with pytest.raises(ValueError, match="0 <= I < N"):
        parse_shard("2/2")
    shards = [select_tasks(tiny_recipe, (i, 2)) for i in range(2)]
    assert sorted(t.index for s in shards for t in s) == [0, 1, 2, 3]
    for i in range(2):
        generate(tiny_recipe, str(tmp_path / "sharded.zarr"), shard=(i, 2), progress=False)
    generate(tiny_recipe, str(tmp_path / "whole.zarr"), progress=False)
    assert_same_arrays(arrays(tmp_path / "sharded.zarr"), arrays(tmp_path / "whole.zarr"))


def test_in_memory_store_works_in_process_and_refuses_workers(tiny_recipe):
    report = generate(tiny_recipe, "memory://generate-test", progress=False)
    assert report.frames_written == 44
    assert TrajectoryStore.open("memory://generate-test").info()[0].status == "complete"
    with pytest.raises(ValueError, match="in-memory store.*--workers 1"):
        generate(tiny_recipe, "memory://other", workers=2, progress=False)


def test_rerun_skips_complete_trajectories(tiny_recipe, tmp_path):
    generate(tiny_recipe, str(tmp_path / "s.zarr"), progress=False)
    report = generate(tiny_recipe, str(tmp_path / "s.zarr"), progress=False)
    assert report.skipped == 4 and report.frames_written == 0


@pytest.mark.parametrize(
    "ensemble",
    [
        {"production": "langevin", "friction_per_fs": 0.02},
        {"production": "npt", "pressure_GPa": 0.5, "barostat_every": 3},
    ],
    ids=["langevin", "npt"],
)
def test_interrupted_generation_resumes_bit_for_bit(tiny_recipe, tmp_path, monkeypatch, ensemble):
    """Stopped between restarts (frame 23 of 41, restarts every 16), the resumed trajectory
    recomputes frames 17-22 from the restart at 16 and equals the uninterrupted one exactly."""

    recipe = tiny_recipe.model_copy(
        update={
            "systems": tiny_recipe.systems[:1],
            "temperatures_K": (900.0,),
            "production_fs": 160.0,
            "ensemble": tiny_recipe.ensemble.model_copy(update=ensemble),
        }
    )
    generate(recipe, str(tmp_path / "whole.zarr"), progress=False)
    with stopped_at_snapshot(monkeypatch, 24), pytest.raises(KeyboardInterrupt):
        generate(recipe, str(tmp_path / "resumed.zarr"), progress=False, commit_interval_s=0.0)
    partial = TrajectoryStore.open(tmp_path / "resumed.zarr").info()[0]
    assert partial.status == "partial" and partial.n_frames == 23
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recomputed frames equal the stored ones
        generate(recipe, str(tmp_path / "resumed.zarr"), progress=False)
    assert_same_arrays(arrays(tmp_path / "resumed.zarr"), arrays(tmp_path / "whole.zarr"))


def test_progress_counts_every_md_step_once_equilibration_included(
    tiny_recipe, tmp_path, monkeypatch
):
    """The bar's unit is the reference's MD step: a whole trajectory reports exactly
    trajectory_steps of it, and a resumed one the steps after its committed frames."""
    from flashmd.data.reference import run_trajectory, trajectory_steps

    recipe = tiny_recipe.model_copy(update={"systems": tiny_recipe.systems[:1]})
    task = next(iter(recipe.tasks()))
    assert trajectory_steps(recipe, task, 0) == 0
    expected = round(recipe.equilibration_fs / recipe.timestep_fs) + 10 * recipe.steps_per_sample
    assert trajectory_steps(recipe, task) == expected
    reports: list[int] = []
    location = str(tmp_path / "s.zarr")
    TrajectoryStore.create(location, recipe.stored())
    run_trajectory(recipe, task, location, on_progress=reports.append)
    assert sum(reports) == expected and reports[-1] >= 0
    # stopped after 4 committed frames, the trajectory resumes and reports the rest only
    partial = str(tmp_path / "p.zarr")
    TrajectoryStore.create(partial, recipe.stored())
    with stopped_at_snapshot(monkeypatch, 5), pytest.raises(KeyboardInterrupt):
        run_trajectory(recipe, task, partial, commit_interval_s=0.0)
    assert TrajectoryStore.open(partial)[task.id].n_frames == 4
    reports.clear()
    run_trajectory(recipe, task, partial, on_progress=reports.append)
    assert sum(reports) == expected - trajectory_steps(recipe, task, 4)


def long_recipe(tmp_path, **changes) -> Path:
    """The tiny recipe with one system and ``changes``, written to ``tmp_path/long.yaml``."""
    data = yaml.safe_load((REPO / "data" / "al-emt-tiny.yaml").read_text())
    data.update(equilibration_fs=20, systems=data["systems"][:1], **changes)
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def generate_command(recipe_path: Path, store: Path, *options: str) -> list[str]:
    """``flashmd generate RECIPE -o STORE --quiet OPTIONS`` in this interpreter."""
    return [
        sys.executable,
        "-m",
        "flashmd.cli",
        "generate",
        str(recipe_path),
        "-o",
        str(store),
        "--quiet",
        *options,
    ]


def wait_for_a_committed_frame(store: Path, timeout_s: float = 60) -> None:
    """Return once the store's first trajectory holds a committed frame (or after the timeout)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(0.02)
        try:
            if 0 < TrajectoryStore.open(store).info()[0].n_frames:
                return
        except (StoreError, IndexError, KeyError):
            continue


def test_killed_generation_resumes_to_the_uninterrupted_result(tmp_path):
    recipe_path = long_recipe(tmp_path, production_fs=8000, temperatures_K=[600])
    store = tmp_path / "killed.zarr"
    command = generate_command(recipe_path, store)
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_for_a_committed_frame(store)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = TrajectoryStore.open(store).info()[0]
    assert partial.status == "partial" and 0 < partial.n_frames < 2001
    before = TrajectoryStore.open(store)[partial.id].read()
    assert subprocess.run(command, env={**os.environ}).returncode == 0
    resumed = TrajectoryStore.open(store)[partial.id]
    assert resumed.status == "complete" and resumed.n_frames == 2001
    after = resumed.read()
    for key, value in before.items():  # trusted frames are untouched
        np.testing.assert_array_equal(after[key][: partial.n_frames], value)
    generate(load_recipe(recipe_path), str(tmp_path / "clean.zarr"), progress=False)
    clean = TrajectoryStore.open(tmp_path / "clean.zarr")[partial.id].read()
    np.testing.assert_array_equal(after["time_fs"], clean["time_fs"])  # no gap, no duplicate
    for key, value in clean.items():  # the resumed trajectory is the uninterrupted one
        np.testing.assert_array_equal(after[key], value, err_msg=key)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_terminated_generation_stops_cleanly_and_resumes(tmp_path, workers):
    """SIGTERM (a scheduler's time limit, ``kill``) stops it like Ctrl-C: the frames it holds are
    committed, it says how to resume and exits with the interrupted status; with workers the
    signal goes to the whole process group, as a scheduler sends it, and every worker stops."""
    from flashmd.cli import EXIT_INTERRUPTED

    recipe_path = long_recipe(tmp_path, production_fs=8000, temperatures_K=[600, 900])
    store = tmp_path / "terminated.zarr"
    command = generate_command(recipe_path, store, "--workers", workers)
    process = subprocess.Popen(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_a_committed_frame(store)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    partial = TrajectoryStore.open(store).info()
    assert any(t.status == "partial" for t in partial)  # (a fast worker may have finished one)
    assert subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode == 0
    assert all(t.status == "complete" for t in TrajectoryStore.open(store).info())


def test_element_the_calculator_cannot_handle_writes_nothing(tiny_recipe, tmp_path):
    bad = tiny_recipe.model_copy(
        update={"systems": [tiny_recipe.systems[0].model_copy(update={"element": "Fe"})]}
    )
    with pytest.raises(RecipeError, match="asap3-emt has no parameters for Fe"):
        generate(bad, str(tmp_path / "s.zarr"), progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_failing_calculator_is_named(tiny_recipe, tmp_path, monkeypatch):
    from flashmd.data.recipes import CalculatorSpec

    bad = tiny_recipe.model_copy(
        update={"calculator": CalculatorSpec(name="lj", params={"sigma": -1})}
    )
    monkeypatch.setattr(
        "ase.calculators.lj.LennardJones.calculate",
        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")),
    )
    with pytest.raises(RecipeError, match="systems.0.*lj failed on it.*boom"):
        generate(bad, str(tmp_path / "s.zarr"), progress=False)


def test_store_path_holding_something_else_is_untouched(tiny_recipe, tmp_path):
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a Zarr store"):
        generate(tiny_recipe, str(target), progress=False)
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_missing_asap3_gets_an_install_hint(tiny_recipe, monkeypatch):
    from flashmd.data.calculators import make_calculator

    monkeypatch.setitem(sys.modules, "asap3", None)
    with pytest.raises(RecipeError, match=r"pip install 'flashmd\[fast\]'.*not substituted"):
        make_calculator(tiny_recipe.calculator)


def _terminal_sigint() -> None:
    """In the child: Ctrl-C handling as in a terminal. A shell starts background jobs with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(command: list[str]) -> subprocess.Popen:
    """The command in its own session, with a terminal's Ctrl-C handling, stderr captured."""
    return subprocess.Popen(
        command,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_terminal_sigint,
    )


def test_ctrl_c_with_workers_keeps_the_store_consistent(tmp_path):
    # long enough that the interrupt always comes first, even on a loaded machine
    recipe_path = long_recipe(tmp_path, production_fs=400000)
    store = tmp_path / "interrupted.zarr"
    command = generate_command(recipe_path, store, "--workers", "2")
    process = _start(command)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            if sum(row.n_frames for row in TrajectoryStore.open(store).info()) > 600:
                break
        except (StoreError, KeyError):
            continue
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "run the same command again to resume" in err
    rows = TrajectoryStore.open(store).info()
    assert rows and all(row.status == "partial" for row in rows)
    before = {row.id: row.n_frames for row in rows}
    # resume for a moment and interrupt again: frames only ever grow, without gaps
    process = _start(command)
    time.sleep(3)
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=60)
    final = TrajectoryStore.open(store)
    for traj_id in final.ids():
        reader = final[traj_id]
        assert reader.n_frames >= before.get(traj_id, 0)
        np.testing.assert_array_equal(reader.read()["time_fs"], np.arange(reader.n_frames) * 4.0)


def test_npt_reference_rescales_the_cell_and_reruns_identically(tmp_path):
    """Production at constant pressure (Langevin and the long strides' stochastic cell
    rescaling): the cell moves once every ``barostat_every`` (10) steps, i.e. every fifth 4 fs
    frame, and at no other frame; the same recipe gives the same arrays, and a
    store written before the barostat's fields existed keeps its recipe hash."""
    from flashmd.data.recipes import parse_recipe

    data = yaml.safe_load((REPO / "data" / "al-emt-tiny.yaml").read_text())
    data.update(
        production_fs=200.0,
        equilibration_fs=40.0,
        temperatures_K=[600],
        ensemble={"equilibration": "npt", "production": "npt", "pressure_GPa": 1.0},
    )
    data["systems"] = data["systems"][:1]
    recipe = parse_recipe(data)
    for name in ("a.zarr", "b.zarr"):
        generate(recipe, str(tmp_path / name), progress=False)
    first, second = (TrajectoryStore.open(str(tmp_path / n)) for n in ("a.zarr", "b.zarr"))
    cells = first[first.ids()[0]].read()["cell"]
    moved = np.flatnonzero(np.diff(cells[:, 0, 0]))
    np.testing.assert_array_equal(moved % 5, 0)
    assert len(moved) == (len(cells) - 1) // 5
    np.testing.assert_array_equal(cells, second[second.ids()[0]].read()["cell"])
    assert first[first.ids()[0]].attrs["ensemble"]["pressure_GPa"] == 1.0
    plain = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    assert "pressure_GPa" not in plain.stored()["ensemble"]
    # nor do systems carry fields added later at their defaults (stores from before resume)
    assert not {"melt_K", "melt_fs"} & set(plain.stored()["systems"][0])
    data["ensemble"] = {"production": "npt"}
    with pytest.raises(RecipeError, match="needs pressure_GPa"):
        parse_recipe(data)
