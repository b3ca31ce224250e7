"""A checkpoint committed to the repository must keep loading and giving the same outputs.

If this fails after a change to the checkpoint layout or to any architecture, bump
``flashmd.models.io.FORMAT_VERSION`` and regenerate the files with
``python tests/models/data/make_tiny_checkpoint.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from ase import Atoms

from flashmd import keys, load_model
from flashmd.models.io import FORMAT_VERSION, read_checkpoint

DATA = Path(__file__).resolve().parent / "data"
HINT = "bump FORMAT_VERSION and rerun tests/models/data/make_tiny_checkpoint.py"


def test_frozen_checkpoint_has_current_format_version():
    assert read_checkpoint(DATA / "tiny.pt")["format_version"] == FORMAT_VERSION, HINT


def test_frozen_checkpoint_reproduces_its_outputs():
    model = load_model(DATA / "tiny.pt", device="cpu")
    reference = torch.load(DATA / "tiny_reference.pt", weights_only=True)
    systems = [
        Atoms(
            numbers=s["numbers"].numpy(),
            positions=s["positions"].numpy(),
            momenta=s["momenta"].numpy(),
            cell=s["cell"].numpy(),
            pbc=s["pbc"].numpy(),
        )
        for s in reference["inputs"]
    ]
    assert model.dtype == torch.float64 and model.species == (13, 29)
    batch = model.make_batch(systems, reference["strides_fs"])
    with torch.no_grad():
        positions, momenta = model.predict(batch)
    out = model.compute_energy(batch)
    for name, value in [
        ("positions", positions),
        ("momenta", momenta),
        ("energy", out[keys.ENERGY]),
        ("forces", out[keys.FORCES]),
    ]:
        torch.testing.assert_close(
            value,
            reference[name],
            rtol=1e-10,
            atol=1e-10,
            msg=lambda m, n=name: f"{n}: {m}\n{HINT}",
        )
