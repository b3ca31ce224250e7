"""``scripts/learning_curve.py``: pretrained and from-scratch runs of a recipe at several data
fractions, evaluated on the held-out store, resumable, with the table and the claim."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

from flashmd.data.generate import generate
from flashmd.data.recipes import load_recipe
from flashmd.train.config import load_train_config
from flashmd.train.trainer import Trainer
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
learning_curve = load_script("learning_curve")


def test_the_curve_trains_both_starts_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    generate(recipe.model_copy(update={"production_fs": 240.0}), "target.zarr", progress=False)
    held_out = recipe.model_copy(update={"production_fs": 160.0, "seed": 3})
    generate(held_out, "held-out.zarr", progress=False)
    pretrain = load_train_config(
        REPO / "training" / "tiny.yaml", store="target.zarr", output="pre", steps=2
    )
    Trainer(pretrain, progress=False).run()
    base = yaml.safe_load((REPO / "training" / "tiny.yaml").read_text())
    base.update(
        store="target.zarr",
        validation=0,
        validation_store="held-out.zarr",
        predictor={"start_from": "pre/best.pt"},
        energy_model={"start_from": "pre/best.pt"},
        steps=2,
        validate_every=2,
    )
    Path("curve.yaml").write_text(yaml.safe_dump(base))
    argv = ["learning_curve", "curve.yaml", "--fractions", "0.5", "1", "--val-pairs", "8"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", "curve"])
    learning_curve.main()
    printed = capsys.readouterr().out
    assert "| pretrained | 50 % |" in printed and "| scratch | 100 % |" in printed
    assert "pretraining reaches the from-scratch accuracy on 100 % of the data with" in printed
    with open("curve/learning_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["start"], float(r["fraction"])) for r in rows] == [
        ("pretrained", 0.5),
        ("scratch", 0.5),
        ("pretrained", 1.0),
        ("scratch", 1.0),
    ]
    half, full = float(rows[0]["target_ps"]), float(rows[2]["target_ps"])
    assert 0.4 < half / full < 0.6
    scratch = yaml.safe_load(Path("curve/scratch-1/config.yaml").read_text())
    assert scratch["lr"] == 0.003 and scratch["predictor"]["start_from"] is None
    assert scratch["data_fraction"] == 1.0
    stamp = Path("curve/scratch-1/last.pt").stat().st_mtime_ns
    learning_curve.main()  # finished runs are evaluated again, not retrained
    assert Path("curve/scratch-1/last.pt").stat().st_mtime_ns == stamp
    # active learning from the half-data run: one row per iteration, its labels on top of the half
    learn = {
        "name": "curve-learn",
        "model": "curve/pretrained-0.5/last.pt",
        "train": "curve.yaml",
        "data_fraction": 0.5,
        "output": "learn",
        "iterations": 1,
        "explore": [{"temperature_K": 600, "stride_fs": 32, "strides": 8, "every": 2}],
        "select": {"reference_calls": 60, "min_gap_fs": 64, "tail_fs": 8},
        "retrain": {"steps": 2, "validate_every": 2, "warmup_steps": 1},
        "device": "cpu",
    }
    Path("learn.yaml").write_text(yaml.safe_dump(learn))
    from flashmd.learn.loop import LearnLoop
    from flashmd.learn.recipe import load_learn_recipe

    LearnLoop(load_learn_recipe("learn.yaml"), progress=False).run()
    monkeypatch.setattr(
        sys, "argv", [*argv, "--out", "curve", "--no-train", "--learned", "learn.yaml"]
    )
    learning_curve.main()
    assert "| learned-1 | 50 % |" in capsys.readouterr().out
    with open("curve/learning_curve.csv") as handle:
        learned = [r for r in csv.DictReader(handle) if r["start"] == "learned-1"]
    assert len(learned) == 1 and half < float(learned[0]["target_ps"]) < full + half
