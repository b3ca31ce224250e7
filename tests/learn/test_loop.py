"""``flashmd learn`` end to end on the tiny Al recipe: explore, select, label, retrain, record;
resumed after a kill without labelling twice; bad recipes refused before any work."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from flashmd.cli import main
from flashmd.data.generate import generate
from flashmd.data.recipes import RecipeError, load_recipe
from flashmd.data.store import TrajectoryStore
from flashmd.learn import loop as loop_module
from flashmd.learn.loop import LearnLoop
from flashmd.learn.recipe import load_learn_recipe
from flashmd.train.config import load_train_config
from flashmd.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, str]:
    """A tiny Al store, a training recipe for it and a model trained on it for a few steps."""
    folder = tmp_path_factory.mktemp("learn")
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 200.0, "equilibration_fs": 20.0}
    )
    store = str(folder / "s.zarr")
    generate(recipe, store, progress=False)
    train = yaml.safe_load((REPO / "training" / "tiny.yaml").read_text())
    train.update(store=store, output=str(folder / "base"), steps=6, validate_every=6)
    (folder / "train.yaml").write_text(yaml.safe_dump(train))
    trainer = Trainer(load_train_config(folder / "train.yaml"), progress=False)
    trainer.run()
    trainer.close()
    return {
        "train": str(folder / "train.yaml"),
        "model": str(folder / "base" / "best.pt"),
        "store": store,
    }


def write_recipe(base: dict[str, str], folder: Path, **changes) -> Path:
    recipe = {
        "name": "tiny-learn",
        "model": base["model"],
        "train": base["train"],
        "output": str(folder / "run"),
        "iterations": 1,
        "explore": [{"temperature_K": 600, "stride_fs": 32, "strides": 8, "every": 2}],
        "select": {"reference_calls": 60, "min_gap_fs": 64, "tail_fs": 8},
        "retrain": {"steps": 2, "validate_every": 2, "warmup_steps": 1},
        "heldout": {
            "reference": base["store"],
            "conditions": [{"temperature_K": 900, "stride_fs": 32, "strides": 4}],
        },
        "device": "cpu",
        **changes,
    }
    path = folder / "learn.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_learn_runs_resumes_after_a_kill_and_labels_once(base, tmp_path, monkeypatch, capsys):
    path = write_recipe(base, tmp_path)
    recipe = load_learn_recipe(path)
    real_retrain = LearnLoop._retrain

    def killed(self, k):
        raise KeyboardInterrupt

    monkeypatch.setattr(LearnLoop, "_retrain", killed)
    with pytest.raises(KeyboardInterrupt):
        LearnLoop(recipe, progress=False).run()
    state = json.loads((tmp_path / "run" / "learn.json").read_text())
    assert state["phase"] == "retrain" and state["iteration"] == 1
    assert state["reference_calls"] == 2 * 21 and state["labelled_states"] == 2
    labels = TrajectoryStore.open(str(tmp_path / "run" / "labels.zarr"))
    assert all(labels[t].status == "complete" for t in labels.ids())
    first = {t: labels[t].read(0, labels[t].n_frames)["positions"].copy() for t in labels.ids()}

    def never(*args, **kwargs):
        raise AssertionError("labelled twice")

    monkeypatch.setattr(LearnLoop, "_retrain", real_retrain)
    monkeypatch.setattr(loop_module, "label_states", never)
    assert main(["learn", str(path), "--quiet"]) == 0
    assert "1 iterations, 42 reference calls on 2 states" in capsys.readouterr().out
    labels = TrajectoryStore.open(str(tmp_path / "run" / "labels.zarr"))
    for traj_id, positions in first.items():
        reader = labels[traj_id]
        assert (reader.read(0, reader.n_frames)["positions"] == positions).all()
        assert reader.attrs["origin"] == "learn" and reader.attrs["iteration"] == 1
        assert reader.attrs["start_from"]["frame"] > 0
    with open(tmp_path / "run" / "learning.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["iteration"] for row in rows] == ["0", "1"]
    assert float(rows[1]["reference_calls"]) == 42
    assert float(rows[1]["own_pos_rmse_32"]) > 0 and float(rows[1]["val_pos_rmse_32"]) > 0
    assert 0 < float(rows[1]["val_kinetic_ratio_32"]) < 2  # and the stride's energy split
    assert float(rows[1]["val_potential_shift_32"]) != 0  # meV/atom (a six-step model's: large)
    assert 0 <= float(rows[1]["explore_fallback_32"]) <= 1
    for row in rows:  # the starting model too
        assert 0 <= float(row["heldout_fallback_900K_32"]) <= 1
        assert int(row["heldout_failed_900K_32"]) >= 0
        assert not np.isnan(float(row["heldout_potential_900K_32"]))  # V - reference, meV/atom
    assert (tmp_path / "run" / "learning.png").stat().st_size > 0
    state = json.loads((tmp_path / "run" / "learn.json").read_text())
    assert state["iteration"] == 2 and state["checkpoint"].endswith("iter-01/train/last.pt")


def test_bad_recipes_are_refused_before_any_work(base, tmp_path):
    with pytest.raises(RecipeError, match="cannot label one state"):
        LearnLoop(load_learn_recipe(write_recipe(base, tmp_path, select={"reference_calls": 5})))
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="select.reference_calls"):
        load_learn_recipe(write_recipe(base, tmp_path, select={"reference_calls": 0}))
    train = yaml.safe_load(Path(base["train"]).read_text())
    train["strides_fs"] = [16]
    (tmp_path / "train16.yaml").write_text(yaml.safe_dump(train))
    with pytest.raises(RecipeError, match="serves strides"):
        LearnLoop(
            load_learn_recipe(write_recipe(base, tmp_path, train=str(tmp_path / "train16.yaml")))
        )
    hot = [{"temperature_K": 450, "stride_fs": 32}]
    with pytest.raises(RecipeError, match="no trajectory at 450 K"):
        LearnLoop(load_learn_recipe(write_recipe(base, tmp_path, explore=hot)))
    judged = {"reference": base["store"], "conditions": [{"temperature_K": 600, "stride_fs": 48}]}
    with pytest.raises(RecipeError, match="48"):
        LearnLoop(load_learn_recipe(write_recipe(base, tmp_path, heldout=judged)))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "learn.json").write_text(
        json.dumps(
            {
                "fingerprint": "another",
                "iteration": 1,
                "phase": "explore",
                "checkpoint": base["model"],
            }
        )
    )
    with pytest.raises(RecipeError, match="another recipe"):
        LearnLoop(load_learn_recipe(write_recipe(base, tmp_path)))


def test_retraining_takes_the_recipes_loss_weights_and_keeps_older_runs_resumable(base, tmp_path):
    plain = load_learn_recipe(write_recipe(base, tmp_path))
    assert "loss_weights" not in plain.learning()["retrain"]  # fingerprints of older runs hold
    energy_terms = {
        "steps": 2,
        "energy_model": "keep",
        "loss_weights": {"kinetic": 1.0, "potential": 4.0},
    }
    recipe = load_learn_recipe(write_recipe(base, tmp_path, retrain=energy_terms))
    assert recipe.fingerprint() != plain.fingerprint()
    # a weight added later is left out at the value older runs had, so they still resume
    assert "potential_bias" not in recipe.learning()["retrain"]["loss_weights"]
    biased = {**energy_terms, "loss_weights": {"kinetic": 1.0, "potential_bias": 2.0}}
    biased_recipe = load_learn_recipe(write_recipe(base, tmp_path, retrain=biased))
    assert biased_recipe.learning()["retrain"]["loss_weights"]["potential_bias"] == 2.0
    config = LearnLoop(recipe, progress=False)._train_config(1)
    assert (config.loss_weights.kinetic, config.loss_weights.potential) == (1.0, 4.0)
    assert config.energy_model.checkpoint == base["model"]
    with pytest.raises(RecipeError, match="energy_model: keep"):
        load_learn_recipe(
            write_recipe(base, tmp_path, retrain={**energy_terms, "energy_model": "train"})
        )


def test_learning_from_a_learning_curve_run_keeps_its_data_fraction_and_validation_store(
    base, tmp_path
):
    plain = load_learn_recipe(write_recipe(base, tmp_path))
    assert "data_fraction" not in plain.learning()  # fingerprints of older runs hold
    recipe = load_learn_recipe(write_recipe(base, tmp_path, data_fraction=0.25))
    assert recipe.fingerprint() != plain.fingerprint()
    loop = LearnLoop(recipe, progress=False)
    assert loop._train_config(1).data_fraction == 0.25
    # a training recipe validated on a held-out store: the loop's validation metrics come from
    # that store's trajectories, not from an empty split of the training store
    train = yaml.safe_load(Path(base["train"]).read_text())
    train.update(validation=0, validation_store=base["store"])
    (tmp_path / "train-heldout.yaml").write_text(yaml.safe_dump(train))
    (tmp_path / "h").mkdir()
    held = write_recipe(base, tmp_path / "h", train=str(tmp_path / "train-heldout.yaml"))
    metrics = LearnLoop(load_learn_recipe(held), progress=False)._split_metrics(None)
    assert metrics and all(np.isfinite(v) for v in metrics.values())


def test_runs_judged_before_the_potential_column_get_it_from_their_reports(tmp_path):
    from flashmd.learn.loop import _older_potentials

    report = tmp_path / "heldout-750K_64-report"
    report.mkdir()
    metrics = [{"key": "potential_energy", "difference": -9.9}, {"key": "rdf", "difference": 0.1}]
    (report / "summary.json").write_text(json.dumps({"conditions": [{"metrics": metrics}]}))
    values = {"heldout_failed_750K_64": 1, "heldout_failed_800K_64": 2, "reference_calls": 0}
    assert _older_potentials(tmp_path, values) == {"heldout_potential_750K_64": -9.9}
    values["heldout_potential_750K_64"] = 3.0  # recorded by the loop itself: kept
    assert _older_potentials(tmp_path, values) == {}
