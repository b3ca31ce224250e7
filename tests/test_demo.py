"""``flashmd demo`` end to end on a shortened Al recipe with the shipped al-emt model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flashmd.cli import main
from flashmd.data.recipes import load_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.demo import DEMO_STRIDE_FS, default_strides, demo_recipe, run_demo

REPO = Path(__file__).resolve().parents[1]


def test_shipped_demo_recipe_is_valid_and_one_temperature():
    recipe = demo_recipe()
    assert len(recipe.temperatures_K) == 1
    # a global thermostat in production: Langevin's half-strides would move the frequency row
    assert recipe.ensemble.equilibration == "langevin" and recipe.ensemble.production == "bussi"


def test_default_strides_cover_the_reference_production():
    recipe = demo_recipe()
    assert default_strides(recipe, DEMO_STRIDE_FS) * DEMO_STRIDE_FS == recipe.production_fs
    assert default_strides(recipe, 32.0) == 1000 and default_strides(recipe, 64.0) == 500
    assert default_strides(recipe, 30.0) == 1067  # a stride that does not divide it: covers it
    assert default_strides(recipe.model_copy(update={"production_fs": 10.0}), 64.0) == 1


def test_demo_writes_reference_rollout_and_report(tmp_path):
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={
            "temperatures_K": (600.0,),
            "systems": load_recipe(REPO / "data" / "al-emt-tiny.yaml").systems[:1],
            "equilibration_fs": 40.0,
            "production_fs": 400.0,
        }
    )
    result = run_demo(
        tmp_path, model="al-emt", strides=12, device="cpu", progress=False, recipe=recipe
    )
    reference, rollout = (
        TrajectoryStore.open(result.reference),
        TrajectoryStore.open(result.rollout),
    )
    (ref_id,), (run_id,) = reference.ids(), rollout.ids()
    assert rollout[run_id].n_frames == 13 and rollout[run_id].attrs["ensemble"] == "nve"
    np.testing.assert_array_equal(
        rollout[run_id].frame(0)["positions"], reference[ref_id].frame(0)["positions"]
    )
    assert (tmp_path / "report" / "report.md").is_file()
    assert set(result.seconds) == {"reference", "flashmd", "evaluate"}
    # a second run resumes: nothing is recomputed, the same frames stay
    again = run_demo(
        tmp_path, model="al-emt", strides=12, device="cpu", progress=False, recipe=recipe
    )
    np.testing.assert_array_equal(
        TrajectoryStore.open(again.rollout)[run_id].read()["positions"],
        rollout[run_id].read()["positions"],
    )


def test_demo_cli_refuses_a_model_without_the_demo_species(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--model", "al-emt", "--quiet"]) == 2
    assert "does not support Cu" in capsys.readouterr().err
    assert not (tmp_path / "reference.zarr").exists()  # refused before any reference MD
