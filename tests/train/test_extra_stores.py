"""Training from several stores: extra stores' trajectories all train, validation stays on the
base store, and recipes naming extra stores resolve and fail clearly."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from flashmd.catalog import describe
from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.train.config import TrainConfig, load_train_config
from flashmd.train.errors import TrainingError
from flashmd.train.trainer import Trainer, species_and_masses
from flashmd.train.validation import validate_run

REPO = Path(__file__).resolve().parents[2]


def _store(path: Path, **changes) -> str:
    """The tiny Al EMT recipe with ``changes``, 60 fs of production, generated at ``path``."""
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    update = {"production_fs": 60.0, "equilibration_fs": 20.0, **changes}
    generate(recipe.model_validate({**recipe.model_dump(), **update}), str(path), progress=False)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[str, str]:
    """(base store, extra store); the extra one holds a Cu crystal the base store lacks."""
    directory = tmp_path_factory.mktemp("extra")
    base = _store(directory / "base.zarr")
    extra = _store(
        directory / "extra.zarr",
        seed=5,
        temperatures_K=[700.0],
        systems=[
            {"name": "al", "builder": "crystal", "element": "Al", "supercell": [2, 2, 2]},
            {"name": "cu", "builder": "crystal", "element": "Cu", "supercell": [2, 2, 2]},
        ],
    )
    return base, extra


def tiny_config(store: str, output: Path, **changes) -> TrainConfig:
    config = load_train_config(REPO / "training" / "tiny.yaml")
    return config.model_copy(update={"store": store, "output": str(output), **changes})


def test_extra_stores_train_and_validation_stays_on_the_base_store(stores, tmp_path):
    base, extra = stores
    plain_config = tiny_config(
        base, tmp_path / "plain", steps=4, validate_every=4, val_pairs=4, stats_pairs=16
    )
    config = plain_config.model_copy(
        update={"output": str(tmp_path / "run"), "extra_stores": (extra,)}
    )
    plain, trainer = Trainer(plain_config, progress=False), Trainer(config, progress=False)
    try:
        assert trainer.val_ids == plain.val_ids and trainer.train_ids == plain.train_ids
        for a, b in zip(trainer.val_batches, plain.val_batches, strict=True):
            assert torch.equal(a["positions"], b["positions"])  # the same held-out pairs
        extra_ids = TrajectoryStore.open(extra).ids()
        assert trainer.train_data.traj_ids == plain.train_ids + extra_ids
        assert len(trainer.train_data) > len(plain.train_data)
        assert trainer.model.species == (13, 29) and plain.model.species == (13,)
        assert bool((trainer.norm.momentum_ms != 1.0).all())  # Cu measured in the extra store
        metrics = trainer.run()
    finally:
        plain.close()
        trainer.close()
    assert metrics["forces_rmse_meV_A"] > 0
    recorded = describe(tmp_path / "run" / "last.pt")  # the reference, from the checkpoint
    assert (recorded.reference, recorded.reference_source) == ("asap3-emt", "checkpoint")
    with open(tmp_path / "run" / "train.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    again = validate_run(config, pairs_per_stride=4)  # held-out pairs of the base store only
    assert again["pos_rmse_16"] > 0


def test_a_run_saved_before_extra_stores_and_unrolled_strides_resumes(stores, tmp_path):
    config = tiny_config(stores[0], tmp_path / "run", steps=2, checkpoint_every=1, val_pairs=2)
    Trainer(config, progress=False).run(until=1)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    del state["config"]["extra_stores"]  # as written by a flashmd without these fields
    del state["config"]["unroll_strides"]
    del state["config"]["loss_weights"]["unroll"]
    torch.save(state, tmp_path / "run" / "state.pt")
    resumed = Trainer(config, resume=True, progress=False)
    assert resumed.step == 1
    resumed.close()


def test_extra_stores_resolve_and_bad_ones_fail_clearly(stores, tmp_path, monkeypatch):
    base, extra = stores
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nstore: base.zarr\noutput: out\n"
        "extra_stores: [more/cont.zarr, 's3://bucket/cont.zarr']\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_train_config(recipe)
    assert config.extra_stores == (str(tmp_path / "more" / "cont.zarr"), "s3://bucket/cont.zarr")
    assert TrainConfig(name="n", store="s", output="o").extra_stores == ()

    def trainer(*extra_stores: str, name: str) -> None:
        changes = {"extra_stores": extra_stores}
        Trainer(tiny_config(base, tmp_path / name, **changes), progress=False)

    missing = str(tmp_path / "missing.zarr")
    with pytest.raises(TrainingError, match=r"extra_stores: cannot open .*missing\.zarr"):
        trainer(missing, name="a")
    empty = str(tmp_path / "empty.zarr")
    TrajectoryStore.create(empty)
    with pytest.raises(TrainingError, match="empty.zarr holds no complete trajectory"):
        trainer(empty, name="b")
    with pytest.raises(TrainingError, match="never the base store"):
        trainer(str(Path(base).parent / "." / Path(base).name), name="c")
    with pytest.raises(TrainingError, match="list each extra store once"):
        trainer(extra, extra, name="d")
    known = species_and_masses(TrajectoryStore.open(base), TrajectoryStore.open(base).ids())
    store = TrajectoryStore.open(extra)
    with pytest.raises(TrainingError, match=r"species 13 has masses 1.0 and 26.98.* in .*extra"):
        species_and_masses(store, store.ids(), known={**known, 13: 1.0})
    assert species_and_masses(store, store.ids(), known=known) == {13: known[13], 29: 63.546}


def test_stores_of_different_reference_calculators_are_not_mixed(stores, tmp_path):
    base, _ = stores
    other = _store(tmp_path / "ase-emt.zarr", calculator={"name": "emt"}, production_fs=20.0)
    config = tiny_config(base, tmp_path / "run", extra_stores=(other,))
    with pytest.raises(TrainingError, match="one model learns one reference"):
        Trainer(config, progress=False)
