"""NVE of symplectic strides at a chosen float precision and solver tolerance (issue #21): is a
rise of ``K + V`` the map's own, or float32 and the midpoint solver's? Prints, every 50 strides,
the block's mean kinetic temperature (centre-of-mass motion removed) and total energy against
the start, from the first frame of a store's first trajectory, filter off::

    python scripts/symplectic_precision.py runs/train/emt-metals-modified/last.pt \\
        runs/heldout/reference.zarr --kind learned --dtype float64 --tolerance-A 1e-9 --strides 300
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase import Atoms, units

import flashmd
from flashmd.ase import FlashMD
from flashmd.data.store import TrajectoryStore
from flashmd.md.symplectic import GENERATING_KINDS, SolverConfig


def nve_blocks(
    model: torch.nn.Module,
    atoms: Atoms,
    kind: str,
    tolerance_A: float,
    stride_fs: float,
    strides: int,
    block: int = 50,
) -> list[tuple[int, float, float]]:
    """NVE of ``atoms`` (moved in place) under ``kind`` strides of ``model`` in its own dtype, the
    filter off; one row per ``block`` strides: (strides so far, the block's mean kinetic
    temperature in K with the centre of mass removed, its mean K + V against the start in
    meV/atom)."""
    solver = SolverConfig(tolerance_A=tolerance_A, max_iterations=60)
    dyn = FlashMD(
        atoms,
        stride_fs * units.fs,
        model=model,
        energy_filter=False,
        symplectic=kind,
        solver=solver,
    )
    dof = (3 * len(atoms) - 3) / (3 * len(atoms))
    start = atoms.get_total_energy() / len(atoms)
    temperatures, energies, rows = [], [], []
    for k in range(strides):
        dyn.run(1)
        temperatures.append(atoms.get_temperature() / dof)
        energies.append(atoms.get_total_energy() / len(atoms))
        if (k + 1) % block == 0:
            shift = 1e3 * (np.mean(energies[-block:]) - start)
            rows.append((k + 1, float(np.mean(temperatures[-block:])), float(shift)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint or shipped name")
    parser.add_argument("store", help="trajectory store; its first trajectory's first frame")
    parser.add_argument("--kind", choices=GENERATING_KINDS, default="learned")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--tolerance-A", type=float, default=1e-9)
    parser.add_argument("--stride-fs", type=float, default=32.0)
    parser.add_argument("--strides", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = flashmd.load_model(args.model, device="cpu").to(getattr(torch, args.dtype))
    store = TrajectoryStore.open(args.store)
    atoms = store[store.ids()[0]].to_atoms(0)
    for done, temperature, shift in nve_blocks(
        model, atoms, args.kind, args.tolerance_A, args.stride_fs, args.strides
    ):
        print(f"{done} T {temperature:.0f} K  K+V {shift:+.2f} meV/atom")


if __name__ == "__main__":
    main()
