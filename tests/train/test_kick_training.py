"""``flashmd train-kick``: a kick fitted to the energy model's forces on a store the project
generated, saved beside the model, and the chain of ``flashmd md --learned-kick`` on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from flashmd.cli import main
from flashmd.data.generate import generate
from flashmd.data.store import TrajectoryStore
from flashmd.models.io import load_checkpoint, read_checkpoint, save_checkpoint
from flashmd.train.kick import add_kick

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "md"))
from md_testkit import tiny_model


def test_train_kick_fits_the_forces_and_the_chain_steps_on_it(tmp_path, tiny_recipe, capsys):
    store = str(tmp_path / "ref.zarr")
    generate(tiny_recipe, store, progress=False)
    model = str(save_checkpoint(tiny_model(), tmp_path / "tiny.pt", {"recipe": "tiny"}))
    out = str(tmp_path / "kick.pt")
    train = ["train-kick", model, "-o", out, "--store", store, "--frames-per-trajectory", "4"]
    assert main([*train, "--steps", "400", "--step-fs", "8", "--tune-steps", "20", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "RMS of a + grad V" in printed and "tuned for 8 fs verlet steps" in printed
    loaded = load_checkpoint(out, "cpu")
    assert loaded.kick is not None and loaded.predictor is not None
    assert loaded.kick.config.step_fs == 8.0
    metadata = read_checkpoint(out)["metadata"]
    assert metadata["recipe"] == "tiny"  # the model's own metadata is kept
    report = metadata["kick"]
    ids = TrajectoryStore.open(store).ids()
    assert report["train_frames"] == 4 * len(ids)
    assert sorted(report["per_trajectory"]) == sorted(ids)  # validation: other frames of each
    assert all(f"  {name}: " in printed for name in ids)
    # the kick learned the forces (an untrained one is off by more than the forces themselves)
    assert report["validation_error"] < 0.3 * report["validation_force"]
    torch.testing.assert_close(  # the energy model is the same one
        loaded.energy_model.energy_shift, tiny_model().energy_model.energy_shift
    )

    chain = ["md", "--start-from", store, "--model", out, "--temperature-K", "600", "--quiet"]
    chain += ["--ensemble", "metropolis", "--leapfrog-steps", "1", "--stride-fs", "8"]
    chain += ["--strides", "4", "--device", "cpu"]
    assert main([*chain, "--learned-kick", "-o", str(tmp_path / "hmc.zarr")]) == 0
    assert "of strides accepted" in capsys.readouterr().out
    assert TrajectoryStore.open(str(tmp_path / "hmc.zarr")).recipe["learned_kick"] is True

    no_kick = [*chain, "--model", model, "--learned-kick", "-o", str(tmp_path / "no.zarr")]
    assert main(no_kick) != 0
    assert "flashmd train-kick" in capsys.readouterr().err
    assert not (tmp_path / "no.zarr").exists()
    assert main([*train, "--steps", "0"]) != 0

    # retuning starts from the kick the checkpoint carries: nothing fitted, a new step recorded
    retuned = str(tmp_path / "retuned.pt")
    again = ["train-kick", out, "-o", retuned, "--store", store, "--frames-per-trajectory", "4"]
    assert main([*again, "--retune", "--step-fs", "10", "--tune-steps", "10", "--quiet"]) == 0
    assert "kick retuned in" in capsys.readouterr().out
    assert load_checkpoint(retuned, "cpu").kick.config.step_fs == 10.0
    report = read_checkpoint(retuned)["metadata"]["kick"]
    assert report["train_frames"] == 0 and report["retuned_from"]["step_fs"] == 8.0
    assert main(["train-kick", model, *again[2:], "--retune", "--step-fs", "10"]) != 0
    assert "needs a model with a kick" in capsys.readouterr().err

    # a kick tuned for two-stage steps, and a chain that takes them
    split = str(tmp_path / "two-stage.pt")
    tune = ["--retune", "--step-fs", "16", "--splitting", "two-stage", "--tune-steps", "5"]
    assert main([*again[:3], split, *again[4:], *tune, "--quiet"]) == 0
    assert "16 fs two-stage steps" in capsys.readouterr().out
    config = load_checkpoint(split, "cpu").kick.config
    assert (config.step_fs, config.splitting) == (16.0, "two-stage")
    assert read_checkpoint(split)["metadata"]["kick"]["splitting"] == "two-stage"
    two_stage = [*chain, "--model", split, "--learned-kick", "--splitting", "two-stage"]
    assert main([*two_stage, "--stride-fs", "16", "-o", str(tmp_path / "two.zarr")]) == 0
    assert TrajectoryStore.open(str(tmp_path / "two.zarr")).recipe["splitting"] == "two-stage"
    assert main([*chain, "--splitting", "two-stage", "-o", str(tmp_path / "x.zarr")]) == 0
    no_steps = ["md", "--start-from", store, "--model", split, "--temperature-K", "600"]
    no_steps += ["--ensemble", "metropolis", "--splitting", "two-stage", "--quiet"]
    no_steps += ["--stride-fs", "16", "--strides", "2"]
    assert main([*no_steps, "-o", str(tmp_path / "y.zarr")]) != 0
    assert "--leapfrog-steps" in capsys.readouterr().err


@pytest.mark.parametrize("splitting, step_fs", [("verlet", 12.0), ("two-stage", 24.0)])
def test_tuning_the_kick_lowers_the_chains_energy_error_of_one_step(
    tmp_path, tiny_recipe, splitting, step_fs
):
    from flashmd.md.splitting import SPLITTINGS
    from flashmd.train.kick import sample_frames, step_energy_error, thermal_frames, tune_kick

    store = str(tmp_path / "ref.zarr")
    generate(tiny_recipe, store, progress=False)
    model, _ = add_kick(tiny_model(), store, frames_per_trajectory=3, steps=300)
    frames = thermal_frames(model, sample_frames(store, 3, seed=5))

    def error() -> float:
        with torch.no_grad():
            errors = step_energy_error(model, model.kick, frames, step_fs, seeded(), split)
            return float(errors.mean())

    split = SPLITTINGS[splitting]
    before = error()
    tune_kick(model, model.kick, frames, step_fs, steps=60, learning_rate=3e-3, splitting=split)
    assert error() < 0.7 * before
    assert (model.kick.config.step_fs, model.kick.config.splitting) == (step_fs, splitting)
    assert all(p.requires_grad for p in model.energy_model.parameters())  # left as it was
    with pytest.raises(ValueError, match="step_fs"):
        tune_kick(model, model.kick, frames, 0.0, steps=1)


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(11)
