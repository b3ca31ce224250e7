"""A flashmd checkpoint's energy model as a recipe's reference calculator (``name: flashmd``):
a short generation records the checkpoint's SHA-256 and the model's energies; a changed checkpoint,
a species the model lacks and bad parameters are refused before any work."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import zarr

from flashmd.ase.calculator import EnergyCalculator
from flashmd.data.calculators import make_calculator
from flashmd.data.generate import generate
from flashmd.data.mlip import file_sha256
from flashmd.data.recipes import CalculatorSpec, RecipeError, parse_recipe
from flashmd.data.store import StoreError, TrajectoryStore
from flashmd.models.io import PRETRAINED_DIR, load_model


@pytest.fixture
def recipe(tiny_recipe):
    """``recipe(element)``: the tiny recipe with al-emt's energy model as the reference, one
    2-atom cell at 600 K, 8 fs of equilibration and of production (3 frames)."""

    def build(element: str = "Al"):
        raw = tiny_recipe.model_dump(mode="json", exclude_none=True)
        system = {**raw["systems"][0], "element": element, "supercell": [2, 1, 1]}
        raw.update(
            name="al-teacher-tiny",
            calculator={"name": "flashmd", "params": {"model": "al-emt"}},
            systems=[system],
            temperatures_K=[600],
            equilibration_fs=8,
            production_fs=8,
        )
        return parse_recipe(raw)

    return build


def test_a_store_of_the_teacher_records_its_checkpoint(tmp_path, recipe):
    location = str(tmp_path / "teacher.zarr")
    generate(recipe(), location, progress=False)
    store = TrajectoryStore.open(location)
    (traj_id,) = store.ids()
    reader = store[traj_id]
    calculator = reader.attrs["calculator"]
    checkpoint = PRETRAINED_DIR / "al-emt.pt"
    assert calculator["name"] == "flashmd" and calculator["weights_file"] == "al-emt.pt"
    assert calculator["weights_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert reader.n_frames == 3
    # the stored energies and forces are the energy model's
    atoms = reader.to_atoms(-1)
    atoms.calc = EnergyCalculator(load_model("al-emt", device="cpu"))
    frame = reader.frame(-1)
    np.testing.assert_allclose(frame["energy"], atoms.get_potential_energy(), rtol=1e-6)
    np.testing.assert_allclose(frame["forces"], atoms.get_forces(), atol=1e-5)
    # a store written with another checkpoint under that name is not resumed
    group = zarr.open_group(location, mode="r+")[f"trajectories/{traj_id}"]
    group.attrs["calculator"] = {**calculator, "weights_sha256": "0" * 64}
    group.attrs["status"] = "partial"
    with pytest.raises(StoreError, match=r"the checkpoint 'al-emt' is now al-emt.pt .*Restore"):
        generate(recipe(), location, progress=False)
    assert TrajectoryStore.open(location)[traj_id].n_frames == 3


def test_a_species_the_teacher_lacks_is_refused_before_any_work(tmp_path, recipe):
    location = tmp_path / "cu.zarr"
    with pytest.raises(RecipeError, match=r"calculator flashmd: the model does not support Cu"):
        generate(recipe("Cu"), str(location), progress=False)
    assert not (location / "trajectories").exists() or not TrajectoryStore.open(location).ids()


def test_bad_parameters_say_what_to_do():
    with pytest.raises(RecipeError, match=r"takes params: \{model: NAME_OR_PATH\}"):
        make_calculator(CalculatorSpec(name="flashmd", params={"modle": "al-emt"}))
    with pytest.raises(RecipeError, match="neither a checkpoint file nor a shipped model"):
        make_calculator(CalculatorSpec(name="flashmd", params={"model": "no-such-model"}))


def test_a_rewritten_checkpoint_gets_its_new_hash(tmp_path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"first")
    first = file_sha256(path)
    path.write_bytes(b"second, longer")
    assert file_sha256(path) == hashlib.sha256(b"second, longer").hexdigest() != first
