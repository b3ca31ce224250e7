"""Recipes: validation errors name the field; builders make the structures they promise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flashmd.data.recipes import AlloySystem, RecipeError, load_recipe, parse_recipe
from flashmd.data.systems import build_system, check_overlaps

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "data" / "al-emt-tiny.yaml").read_text())


def with_changes(**changes) -> dict:
    return {**BASE, **changes}


@pytest.mark.parametrize("name", ["al-emt-tiny.yaml", "al-emt.yaml", "emt-metals.yaml"])
def test_shipped_recipes_validate_and_build(name):
    recipe = load_recipe(REPO / "data" / name)
    rng = np.random.default_rng(0)
    for index, system in enumerate(recipe.systems):
        atoms = build_system(system, rng, label=f"systems.{index}")
        assert len(atoms) > 0
    assert len(list(recipe.tasks())) >= len(recipe.systems)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timestep_fs": 0}, r"timestep_fs: Input should be greater than 0"),
        ({"timestep_fs": -1.0}, r"timestep_fs: Input should be greater than 0"),
        ({"sample_interval_fs": 3.0}, r"sample_interval_fs \(3.0\) must be a whole multiple"),
        ({"production_fs": 41.0}, r"production_fs \(41.0\) must be a whole multiple"),
        ({"temprature_K": [300]}, r"temprature_K: unknown key"),
        ({"temperatures_K": []}, r"temperatures_K: .*at least 1"),
        (
            {"systems": [{"builder": "crystal", "element": "Al", "supercel": [2, 2, 2]}]},
            r"systems.0.supercel: unknown key",
        ),
        (
            {"systems": [{"builder": "crystal", "element": "Al", "supercell": [2, 2]}]},
            r"systems.0.supercell",
        ),
        ({"systems": [{"builder": "sphere", "element": "Al"}]}, r"systems.0.*builder|tag"),
        ({"systems": [{"builder": "alloy", "elements": {"Cu": 1}}]}, r"at least two elements"),
        ({"ensemble": {"production": "nvt"}}, r"ensemble.production"),
        ({"ensemble": {"production": "npt"}}, r"needs pressure_GPa"),
        (
            {"systems": [{"builder": "crystal", "element": "Cu", "melt_K": 3000}]},
            r"melt_K and melt_fs go together",
        ),
    ],
)
def test_bad_fields_are_named(changes, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(with_changes(**changes))


def test_malformed_yaml_and_missing_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="mapping at the top level"):
        load_recipe(tmp_path / "list.yaml")


def test_unknown_element_is_refused():
    recipe = parse_recipe(with_changes(systems=[{"builder": "crystal", "element": "Xx"}]))
    with pytest.raises(RecipeError, match="unknown element 'Xx'"):
        build_system(recipe.systems[0], np.random.default_rng(0))


def test_tasks_have_stable_ids():
    recipe = parse_recipe(with_changes(replicas=2))
    ids = [task.id for task in recipe.tasks()]
    assert ids[0] == "00000_al-fcc_600K_r0" and ids[1] == "00001_al-fcc_600K_r1"
    assert len(ids) == len(set(ids)) == 8


def build(spec: dict, seed: int = 0):
    recipe = parse_recipe(with_changes(systems=[spec]))
    return build_system(recipe.systems[0], np.random.default_rng(seed))


def test_builders():
    crystal = build(
        {
            "builder": "crystal",
            "element": "Cu",
            "supercell": [2, 2, 2],
            "vacancies": 2,
            "strain": 0.01,
            "rattle": 0.02,
        }
    )
    assert len(crystal) == 30
    np.testing.assert_allclose(crystal.cell.lengths(), 2 * 3.61 * 1.01)
    random_alloy = build(
        {"builder": "alloy", "elements": {"Cu": 0.75, "Au": 0.25}, "supercell": [2, 2, 2]}
    )
    assert random_alloy.get_chemical_formula("metal") == "Au8Cu24"
    assert (
        build(
            {"builder": "alloy", "elements": {"Cu": 0.75, "Au": 0.25}, "supercell": [2, 2, 2]},
            seed=1,
        ).get_chemical_symbols()
        != random_alloy.get_chemical_symbols()
    )
    l12 = build({"builder": "alloy", "elements": {"Cu": 3, "Au": 1}, "ordered": "L12"})
    assert l12.get_chemical_symbols() == ["Au", "Cu", "Cu", "Cu"]
    a_vegard = l12.cell.lengths()[0]
    assert 3.61 < a_vegard < 4.08
    slab = build(
        {"builder": "surface", "element": "Pt", "facet": "111", "size": [2, 2, 3], "vacuum": 8.0}
    )
    assert len(slab) == 12 and slab.pbc.tolist() == [True, True, False]
    assert slab.positions[:, 2].min() == pytest.approx(8.0)
    hcp = build({"builder": "crystal", "element": "Mg", "lattice": "hcp"})
    assert len(hcp) == 4
    with pytest.raises(RecipeError, match="L10 is an fcc ordering|lattice: fcc"):
        parse_recipe(
            with_changes(
                systems=[
                    {
                        "builder": "alloy",
                        "elements": {"Cu": 1, "Au": 1},
                        "ordered": "L10",
                        "lattice": "bcc",
                    }
                ]
            )
        )
    assert isinstance(
        parse_recipe(
            with_changes(systems=[{"builder": "alloy", "elements": {"Cu": 1, "Au": 1}}])
        ).systems[0],
        AlloySystem,
    )


def test_file_systems_resolve_paths_and_reject_overlaps(tmp_path):
    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Al", cubic=True)
    write(tmp_path / "al.xyz", atoms)
    overlapping = atoms.copy()
    overlapping.positions[1] = overlapping.positions[0] + [0.1, 0, 0]
    write(tmp_path / "bad.xyz", overlapping)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        yaml.safe_dump(
            with_changes(
                systems=[
                    {"builder": "file", "path": "al.xyz", "supercell": [2, 1, 1]},
                    {"builder": "file", "path": "bad.xyz"},
                    {"builder": "file", "path": "nothing.xyz"},
                ]
            )
        )
    )
    recipe = load_recipe(recipe_file)
    assert len(build_system(recipe.systems[0], np.random.default_rng(0))) == 8
    with pytest.raises(RecipeError, match=r"atoms 0 and 1 are 0.100 Å apart"):
        build_system(recipe.systems[1], np.random.default_rng(0), label="systems.1")
    with pytest.raises(RecipeError, match="does not exist"):
        build_system(recipe.systems[2], np.random.default_rng(0))
    check_overlaps(atoms, "ok")
