"""A model's pressure error against the reference calculator on stored frames (issue #17).

For every trajectory of a store and every model, the energy model's stress and the store's own
reference calculator (as recorded in the trajectory) are evaluated on ``--frames`` frames evenly
spread over the last 90 %; prints the mean pressure error (model minus reference, GPa, ``-trace/3``
of the stress difference) with its standard error. A barostat driven by the model settles at a
volume off by about that error over the bulk modulus::

    python scripts/pressure_error.py runs/heldout/npt-reference.zarr \\
        emt-metals runs/train/emt-metals-stress/best.pt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase.units import GPa

from flashmd import keys
from flashmd.data.calculators import make_calculator
from flashmd.data.graph import atoms_to_batch, with_neighbors
from flashmd.data.recipes import CalculatorSpec
from flashmd.data.store import TrajectoryReader, TrajectoryStore
from flashmd.models.io import load_model


def pressure_errors(model, reader: TrajectoryReader, frames: int) -> np.ndarray:
    """(frames,) GPa the model's pressure minus the reference calculator's."""
    recorded = reader.attrs["calculator"]
    calculator = make_calculator(CalculatorSpec(name=recorded["name"], params=recorded["params"]))
    energy = model.energy_model.double()
    errors = []
    for index in np.linspace(reader.n_frames // 10, reader.n_frames - 1, frames).astype(int):
        atoms = reader.to_atoms(int(index))
        atoms.calc = calculator
        batch = with_neighbors(atoms_to_batch(atoms), model.cutoff)
        stress = energy.compute(batch, forces=False, stress=True)[keys.STRESS][0]
        difference = stress.detach().numpy() - atoms.get_stress(voigt=False)
        errors.append(-np.trace(difference) / 3 / GPa)
    return np.array(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="a store of fully periodic trajectories")
    parser.add_argument("models", nargs="+", help="checkpoint paths or shipped names")
    parser.add_argument("--frames", type=int, default=12, help="frames per trajectory")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    store = TrajectoryStore.open(args.store)
    print("| model | trajectory | pressure error GPa |")
    print("|---|---|---|")
    for name in args.models:
        model = load_model(name, device="cpu")
        for traj_id in store.ids():
            errors = pressure_errors(model, store[traj_id], args.frames)
            stderr = errors.std(ddof=1) / np.sqrt(len(errors))
            print(f"| {name} | {traj_id} | {errors.mean():+.3f} ± {stderr:.3f} |")


if __name__ == "__main__":
    main()
