"""Checkpoint round trips and the errors bad checkpoints and names get."""

from __future__ import annotations

import pytest
import torch
from models_testkit import CUTOFF, make_atoms, tiny_energy, tiny_predictor

import flashmd
from flashmd import keys
from flashmd.models import io
from flashmd.models.io import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_dict,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from flashmd.models.model import FlashMDModel


def outputs(model: FlashMDModel):
    batch = model.make_batch(
        [make_atoms("periodic", seed=1), make_atoms("cluster", seed=2)], [16.0, 64.0]
    )
    with torch.no_grad():
        positions, momenta = model.predict(batch)
    out = model.compute_energy(batch, stress=False)
    return positions, momenta, out[keys.ENERGY], out[keys.FORCES]


@pytest.fixture
def model() -> FlashMDModel:
    return FlashMDModel(tiny_predictor(torch.float64), tiny_energy(torch.float64, seed=1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_reproduces_outputs_exactly(tmp_path, model, dtype):
    model = model.to(dtype)
    path = save_checkpoint(model, tmp_path / "model.pt", metadata={"note": "test"})
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.dtype == dtype and not loaded.training
    assert loaded.species == model.species and loaded.strides_fs == model.strides_fs
    assert loaded.cutoff == model.cutoff and loaded.masses == model.masses
    for before, after in zip(outputs(model), outputs(loaded), strict=True):
        assert torch.equal(before, after)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_round_trip_of_single_models(tmp_path):
    energy_only = FlashMDModel(energy_model=tiny_energy())
    loaded = load_checkpoint(save_checkpoint(energy_only, tmp_path / "e.pt"), device="cpu")
    assert loaded.predictor is None and loaded.strides_fs == ()
    predictor_only = FlashMDModel(predictor=tiny_predictor())
    loaded = load_checkpoint(save_checkpoint(predictor_only, tmp_path / "p.pt"), device="cpu")
    assert loaded.energy_model is None and loaded.strides_fs == (16.0, 32.0, 64.0)


def test_checkpoint_records_everything(model):
    data = checkpoint_dict(model)
    assert data["format_version"] == FORMAT_VERSION
    assert data["flashmd_version"] == flashmd.__version__
    assert data["species"] == [13, 29] and data["cutoff"] == CUTOFF
    assert data["strides_fs"] == [16.0, 32.0, 64.0]
    assert set(data["masses"]) == {13, 29} and data["units"] == flashmd.units.UNITS
    assert data["models"]["predictor"]["config"]["n_layers"] == 2


def test_failed_save_keeps_previous_file(tmp_path, model, monkeypatch):
    path = save_checkpoint(model, tmp_path / "model.pt")
    original = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def write(tmp_path, data, name="bad.pt"):
    path = tmp_path / name
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format_version=FORMAT_VERSION + 1), "upgrade flashmd"),
        (lambda d: d.update(format_version=0), "old format version 0"),
        (lambda d: d.pop("masses"), "missing fields \\['masses'\\]"),
        (lambda d: d.update(kind="optimizer"), "holds a 'optimizer' model"),
        (lambda d: d.update(units={"energy": "kcal/mol"}), "uses units"),
        (lambda d: d.update(dtype="float16"), "dtype"),
        (lambda d: d["models"].update(thermostat={}), "known kinds"),
        (lambda d: d.update(species=[13, 30]), "says"),
        (lambda d: d["models"]["energy"]["config"].update(n_layers=3), "architecture"),
        (lambda d: d["models"]["energy"]["config"].pop("cutoff"), "missing \\['cutoff'\\]"),
        (lambda d: d["models"]["energy"]["state_dict"].popitem(), "architecture"),
    ],
)
def test_bad_checkpoints_raise_clear_errors(tmp_path, model, change, message):
    data = checkpoint_dict(model)
    change(data)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(write(tmp_path, data), device="cpu")


def test_files_that_are_not_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a flashmd checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="not a flashmd checkpoint"):
        load_checkpoint(write(tmp_path, {"state_dict": {}}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "content, said",
    [
        (b"", "the file is empty"),
        (b"step,loss\n1,0.5\n", "a text file .* starting 'step,loss'"),
        (bytes(range(128, 256)), "a binary file .* not a PyTorch zip archive"),
        ("module", "holding Python objects beyond tensors"),
    ],
)
def test_unreadable_files_are_named_and_torchs_unsafe_advice_is_not_passed_on(
    tmp_path, content, said
):
    path = tmp_path / "model.pt"
    if content == "module":
        torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module, not a checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=said) as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value) and "save_checkpoint" in str(caught.value)


def test_load_model_by_path_and_by_shipped_name(tmp_path, model, monkeypatch):
    path = save_checkpoint(model, tmp_path / "mine.pt")
    assert flashmd.load_model(str(path), device="cpu").species == (13, 29)
    monkeypatch.setattr(io, "PRETRAINED_DIR", tmp_path)
    assert load_model("mine", device="cpu").strides_fs == (16.0, 32.0, 64.0)
    with pytest.raises(FileNotFoundError, match="shipped models: \\['mine'\\]"):
        load_model("emt-metals")


def test_unknown_name_lists_shipped_models():
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor a shipped model"):
        load_model("no-such-model")
