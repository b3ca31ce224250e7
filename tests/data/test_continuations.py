"""Reference continuations from given states: exact start, ASE-equal dynamics, resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from flashmd.data.continuations import (
    Continuation,
    ContinuationSettings,
    label_states,
    reference_settings,
    run_continuation,
)
from flashmd.data.recipes import CalculatorSpec, RecipeError
from flashmd.data.store import StoreError, TrajectoryStore
from flashmd.units import FS

SETTINGS = ContinuationSettings(
    CalculatorSpec(name="asap3-emt"), timestep_fs=2.0, sample_interval_fs=8.0, duration_fs=64.0
)
RECIPE = {"name": "learn-test", "iteration": 0}


def state(seed: int, temperature_K: float = 600.0) -> Atoms:
    """Cu fcc, 32 atoms, slightly rattled, Maxwell-Boltzmann momenta without drift."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", cubic=True).repeat(2)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    return atoms


def continuation(seed: int, **attrs) -> Continuation:
    provenance = {
        "origin": "learn",
        "iteration": 3,
        "start_from": {"store": "rollouts.zarr", "trajectory": "00000_Cu32_r0", "frame": seed},
    }
    return Continuation(f"learn003_{seed:03d}", state(seed), {**provenance, **attrs})


def arrays(location) -> dict[str, dict[str, np.ndarray]]:
    store = TrajectoryStore.open(location)
    return {tid: store[tid].read() for tid in store.ids()}


def test_frame_zero_is_the_state_and_frames_follow_ase_velocity_verlet(tmp_path):
    from asap3 import EMT

    given = continuation(1)
    report = label_states(SETTINGS, [given], str(tmp_path / "s.zarr"), RECIPE, progress=False)
    assert (report.trajectories, report.skipped, report.frames_written) == (1, 0, 9)
    reader = TrajectoryStore.open(tmp_path / "s.zarr")[given.id]
    data = reader.read()
    assert reader.status == "complete" and reader.n_frames == SETTINGS.frames_per_trajectory == 9
    np.testing.assert_array_equal(data["positions"][0], given.atoms.get_positions())
    np.testing.assert_array_equal(data["momenta"][0], given.atoms.get_momenta())
    np.testing.assert_array_equal(data["cell"][0], given.atoms.cell.array)
    np.testing.assert_array_equal(reader.masses, given.atoms.get_masses())
    np.testing.assert_array_equal(reader.numbers, given.atoms.numbers)
    np.testing.assert_allclose(data["time_fs"], np.arange(9) * 8.0)

    atoms = given.atoms.copy()
    atoms.calc = EMT()
    dynamics = VelocityVerlet(atoms, 2.0 * FS)
    for index in range(9):
        if index:
            dynamics.run(4)
        np.testing.assert_allclose(data["positions"][index], atoms.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(data["momenta"][index], atoms.get_momenta(), rtol=0, atol=1e-10)
        assert data["energy"][index] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(data["forces"][index], atoms.get_forces(), rtol=0, atol=1e-10)

    attrs = reader.attrs
    assert attrs["origin"] == "learn" and attrs["iteration"] == 3
    assert attrs["start_from"] == {
        "store": "rollouts.zarr",
        "trajectory": "00000_Cu32_r0",
        "frame": 1,
    }
    assert attrs["calculator"]["name"] == "asap3-emt" and attrs["calculator"]["package"] == "asap3"
    assert attrs["ensemble"] == {"production": "nve"} and attrs["equilibration_fs"] == 0.0
    assert attrs["timestep_fs"] == 2.0 and attrs["sample_interval_fs"] == 8.0
    assert attrs["pbc"] == [True, True, True] and attrs["system"] == {"formula": "Cu32"}
    assert attrs["temperature_K"] == pytest.approx(given.atoms.get_temperature())
    assert TrajectoryStore.open(tmp_path / "s.zarr").recipe == RECIPE


def test_attrs_are_made_json_and_temperature_can_be_given():
    given = continuation(2, temperature_K=np.float64(600.0), frame_index=np.int64(7))
    assert given.attrs["temperature_K"] == 600.0 and type(given.attrs["frame_index"]) is int
    with pytest.raises(ValueError, match="learn003_002.*not JSON"):
        continuation(2, bad=object())


def test_rerun_skips_complete_and_a_partial_continuation_resumes(tmp_path):
    location = str(tmp_path / "s.zarr")
    settings = ContinuationSettings(
        CalculatorSpec(name="asap3-emt"),
        timestep_fs=2.0,
        sample_interval_fs=8.0,
        duration_fs=256.0,
    )
    given = [continuation(3), continuation(4)]
    label_states(settings, given[:1], location, RECIPE, progress=False)

    reported = []

    def stop_after_first_report(frames: int) -> None:
        reported.append(frames)
        if len(reported) == 2:  # after frame 0 and one report of 16 more
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_continuation(settings, given[1], location, stop_after_first_report)
    partial = TrajectoryStore.open(location)[given[1].id]
    assert partial.status == "partial" and partial.n_frames == 17
    before = partial.read()

    report = label_states(settings, given, location, RECIPE, progress=False)
    assert (report.skipped, report.frames_written) == (1, 33 - 17)
    resumed = TrajectoryStore.open(location)[given[1].id]
    assert resumed.status == "complete" and resumed.n_frames == 33
    after = resumed.read()
    for key, value in before.items():  # committed frames are untouched
        np.testing.assert_array_equal(after[key][:17], value)

    label_states(settings, given[1:], str(tmp_path / "clean.zarr"), RECIPE, progress=False)
    clean = TrajectoryStore.open(tmp_path / "clean.zarr")[given[1].id].read()
    np.testing.assert_array_equal(after["time_fs"], clean["time_fs"])
    for key in ("positions", "momenta", "energy", "forces"):  # bit for bit
        np.testing.assert_array_equal(after[key], clean[key], err_msg=key)

    again = label_states(settings, given, location, RECIPE, progress=False)
    assert (again.skipped, again.frames_written) == (2, 0)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda a: a.positions.__setitem__(1, a.positions[0] + [0.2, 0, 0]), "0.200 Å apart"),
        (lambda a: a.positions.__setitem__(5, a.positions[0] + a.cell[2] - 0.2), "overlap"),
        (lambda a: a.arrays["momenta"].__setitem__((4, 1), np.nan), "momenta hold 1 NaN"),
        (lambda a: a.positions.__setitem__((0, 0), np.inf), "positions"),
        (lambda a: a.set_cell(np.zeros((3, 3))), "degenerate"),
    ],
)
def test_bad_states_are_refused_before_anything_is_written(tmp_path, spoil, message):
    good, bad = continuation(5), continuation(6)
    spoil(bad.atoms)
    with pytest.raises(ValueError, match=f"learn003_006.*{message}"):
        label_states(SETTINGS, [good, bad], str(tmp_path / "s.zarr"), RECIPE, progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_bad_settings_ids_attrs_and_elements_are_refused(tmp_path):
    spec = CalculatorSpec(name="asap3-emt")
    with pytest.raises(ValueError, match=r"sample_interval_fs \(5.0\).*multiple of timestep_fs"):
        ContinuationSettings(spec, timestep_fs=2.0, sample_interval_fs=5.0)
    with pytest.raises(ValueError, match=r"duration_fs \(20.0\).*multiple of sample_interval"):
        ContinuationSettings(spec, sample_interval_fs=8.0, duration_fs=20.0)
    with pytest.raises(ValueError, match="duration_fs must be a positive"):
        ContinuationSettings(spec, duration_fs=0.0)
    with pytest.raises(ValueError, match="sample_interval_fs must be a positive"):
        ContinuationSettings(spec, sample_interval_fs=-8.0)

    location = str(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="unique; repeated: learn003_007"):
        label_states(SETTINGS, [continuation(7), continuation(7)], location, RECIPE)
    with pytest.raises(ValueError, match="attrs may not set status"):
        label_states(SETTINGS, [continuation(7, status="complete")], location, RECIPE)
    iron = Continuation("fe", state(8))
    iron.atoms.set_chemical_symbols(["Fe"] * 32)
    with pytest.raises(RecipeError, match="continuation 'fe'.*no parameters for Fe"):
        label_states(SETTINGS, [iron], location, RECIPE)
    with pytest.raises(ValueError, match="in-memory store.*--workers 1"):
        label_states(SETTINGS, [continuation(7)], "memory://continuations-2", RECIPE, workers=2)
    assert not (tmp_path / "s.zarr").exists()


def test_a_stored_id_from_another_start_or_store_recipe_is_refused(tmp_path):
    location = str(tmp_path / "s.zarr")
    label_states(SETTINGS, [continuation(9)], location, RECIPE, progress=False)
    before = arrays(location)
    other = Continuation(continuation(9).id, state(10), continuation(9).attrs)
    with pytest.raises(ValueError, match="already holds trajectory 'learn003_009'"):
        label_states(SETTINGS, [other], location, RECIPE, progress=False)
    with pytest.raises(StoreError, match="different recipe"):
        label_states(SETTINGS, [continuation(9)], location, {"name": "other"}, progress=False)
    after = arrays(location)
    for key, value in before[other.id].items():
        np.testing.assert_array_equal(after[other.id][key], value)


def test_in_memory_store_in_process():
    report = label_states(
        SETTINGS, [continuation(11)], "memory://continuations-1", RECIPE, progress=False
    )
    assert report.frames_written == 9
    assert TrajectoryStore.open("memory://continuations-1").info()[0].status == "complete"


def test_two_workers_give_the_same_frames_as_one(tmp_path):
    given = [continuation(12), continuation(13)]
    one = label_states(SETTINGS, given, str(tmp_path / "one.zarr"), RECIPE, progress=False)
    two = label_states(
        SETTINGS, given, str(tmp_path / "two.zarr"), RECIPE, workers=2, progress=False
    )
    assert one.frames_written == two.frames_written == 18
    first, second = arrays(tmp_path / "one.zarr"), arrays(tmp_path / "two.zarr")
    assert first.keys() == second.keys() == {c.id for c in given}
    for tid in first:
        for key in first[tid]:
            np.testing.assert_array_equal(first[tid][key], second[tid][key], err_msg=key)


def test_reference_settings_take_the_stores_calculator_and_timestep(tmp_path):
    from flashmd.data.generate import generate
    from flashmd.data.recipes import load_recipe
    from tests.conftest import REPO

    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 8.0, "equilibration_fs": 4.0}
    )
    location = str(tmp_path / "ref.zarr")
    generate(recipe, location, progress=False)
    settings = reference_settings(TrajectoryStore.open(location), duration_fs=10.0)
    assert settings.calculator.name == "asap3-emt" and settings.timestep_fs == 2.0
    assert settings.sample_interval_fs == 4.0 and settings.duration_fs == 12.0  # whole intervals
    assert settings.store_forces
    other = reference_settings(TrajectoryStore.open(location), 16.0, 8.0, store_forces=False)
    assert (other.sample_interval_fs, other.duration_fs, other.store_forces) == (8.0, 16.0, False)
    foreign = TrajectoryStore.create(str(tmp_path / "foreign.zarr"), {"name": "hand-made"})
    with pytest.raises(RecipeError, match="was not made by flashmd generate"):
        reference_settings(foreign, 16.0)
