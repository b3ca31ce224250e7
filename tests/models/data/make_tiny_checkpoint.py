"""Regenerate ``tiny.pt`` and ``tiny_reference.pt`` for ``test_frozen_checkpoint.py``.

Run only after a deliberate format or architecture change, together with a bump of
``flashmd.models.io.FORMAT_VERSION``::

    python tests/models/data/make_tiny_checkpoint.py

``tiny.pt`` is a float64 tiny predictor + energy model for Al and Cu with random weights and
random correction scales; ``tiny_reference.pt`` holds a fixed input (two systems) and the outputs
the checkpoint gave when it was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from flashmd import keys
from flashmd.models.energy import EnergyConfig, EnergyModel
from flashmd.models.io import save_checkpoint
from flashmd.models.model import FlashMDModel
from flashmd.models.predictor import Predictor, PredictorConfig

HERE = Path(__file__).resolve().parent
SPECIES = (13, 29)
STRIDES_FS = (16.0, 32.0)


def reference_systems() -> list[Atoms]:
    """A periodic Al/Cu crystal and an open Al/Cu cluster, rattled, with random momenta."""
    rng = np.random.default_rng(20250101)
    crystal = bulk("Al", "fcc", a=4.05).repeat((2, 2, 2))
    cluster = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)[:9]
    cluster.pbc, cluster.cell = False, np.zeros((3, 3))
    for atoms in (crystal, cluster):
        atoms.numbers = np.where(rng.random(len(atoms)) < 0.5, 13, 29)
        atoms.positions += rng.normal(scale=0.1, size=(len(atoms), 3))
        kT = 0.05
        atoms.set_momenta(
            rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses() * kT)[:, None]
        )
    return [crystal, cluster]


def build_model() -> FlashMDModel:
    torch.manual_seed(7)
    predictor = Predictor(
        PredictorConfig.preset("tiny", species=SPECIES, strides_fs=STRIDES_FS, cutoff=4.0)
    )
    energy = EnergyModel(EnergyConfig.preset("tiny", species=SPECIES, cutoff=4.0))
    with torch.no_grad():
        predictor.correction_scale.normal_()
        energy.energy_shift.normal_()
    return FlashMDModel(predictor, energy).double().eval()


def main() -> None:
    model = build_model()
    save_checkpoint(model, HERE / "tiny.pt", metadata={"made_by": "make_tiny_checkpoint.py"})
    systems = reference_systems()
    batch = model.make_batch(systems, [16.0, 32.0])
    with torch.no_grad():
        positions, momenta = model.predict(batch)
    out = model.compute_energy(batch)
    reference = {
        "inputs": [
            {
                "positions": torch.tensor(a.positions),
                "momenta": torch.tensor(a.get_momenta()),
                "numbers": torch.tensor(a.numbers),
                "cell": torch.tensor(np.asarray(a.cell[:])),
                "pbc": torch.tensor(a.pbc),
            }
            for a in systems
        ],
        "strides_fs": [16.0, 32.0],
        "positions": positions,
        "momenta": momenta,
        "energy": out[keys.ENERGY],
        "forces": out[keys.FORCES],
    }
    torch.save(reference, HERE / "tiny_reference.pt")


if __name__ == "__main__":
    main()
